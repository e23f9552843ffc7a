// Open vSwitch through ovs-vsctl. Bridges use the userspace datapath (datapath_type=netdev),
// so no kernel module is needed. The database is found the usual way (OVS_RUNDIR or the default).
import { run } from "../../os/exec.js";

async function vsctl(...args: string[]): Promise<string> {
  return (await run("ovs-vsctl", ["--timeout=10", ...args])).stdout;
}

export async function bridgeExists(name: string): Promise<boolean> {
  const r = await run("ovs-vsctl", ["--timeout=10", "br-exists", name], { reject: false });
  if (r.exitCode === 0) return true;
  if (r.exitCode === 2) return false;
  throw new Error(`ovs-vsctl br-exists ${name} failed: ${r.stderr.trim()}`);
}

export async function addBridge(name: string, hwaddr?: string): Promise<void> {
  const extra = hwaddr ? ["--", "set", "bridge", name, `other-config:hwaddr="${hwaddr}"`] : [];
  await vsctl("--may-exist", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", ...extra);
}

export async function deleteBridge(name: string): Promise<void> {
  await vsctl("--if-exists", "del-br", name);
}

export async function addPort(bridge: string, port: string): Promise<void> {
  await vsctl("--may-exist", "add-port", bridge, port);
}

export async function deletePort(bridge: string, port: string): Promise<void> {
  await vsctl("--if-exists", "del-port", bridge, port);
}

export async function listPorts(bridge: string): Promise<string[]> {
  const out = await vsctl("list-ports", bridge);
  return out.split("\n").filter(Boolean);
}

export async function portBridge(port: string): Promise<string | undefined> {
  const r = await run("ovs-vsctl", ["--timeout=10", "port-to-br", port], { reject: false });
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}
