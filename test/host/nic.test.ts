// NIC hot-plug against a real network namespace held by a process (`unshare -n sleep`) in
// place of a container, with a real managed bridge and dnsmasq from an in-process
// NetworkService (the service the daemon runs), and the rules that need instance users.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Core } from "../../src/daemon/feature.js";
import { pathsFor } from "../../src/daemon/paths.js";
import type { Ports } from "../../src/ports.js";
import { openDatabase, type Db } from "../../src/db/database.js";
import { deviceFactory } from "../../src/devices/registry.js";
import type { DeviceContext } from "../../src/devices/types.js";
import { NetworksFeature } from "../../src/daemon/features/networks.js";
import type { NetworkService } from "../../src/network/service.js";
import { EventHub } from "../../src/operations/events.js";
import { dnsmasqPids, freeSubnet, linkExists, must, runId, sh, startOvs, waitFor } from "../helpers/net.js";

const id = runId();
const br = `nt${id}n`;
let dir: string;
let db: Db;
let svc: NetworkService;
let holder: ChildProcess;
let pid: number;
// The other features' ports as the network service sees them on a standalone daemon with no
// instances or profiles using its networks (a test swaps in users where it needs them).
const noInstances = { usedBy: () => [], nicsOn: () => [], exportForPublish: async () => Promise.reject(new Error("unused")) } as unknown as Ports["instances"];
const noProfiles = { get: () => Promise.reject(new Error("unused")) as never, referencing: () => [] } as unknown as Ports["profiles"];
const ports = {
  cluster: { clustered: () => false },
  projects: { effectiveProject: (project: string) => project, projectConfig: () => undefined },
  instances: noInstances,
  profiles: noProfiles,
} as unknown as Ports;
let subnet: number;
const volatile = new Map<string, string>();

const inside = (...args: string[]) => sh("nsenter", ["-t", String(pid), "-n", ...args]);
const insideLink = (name: string) => {
  const r = inside("ip", "-j", "-d", "link", "show", "dev", name);
  return r.code === 0 ? JSON.parse(r.stdout)[0] : undefined;
};

function ctx(): DeviceContext {
  return {
    project: "default",
    instance: "c1",
    instanceConfig: {},
    volatile: { get: (k) => volatile.get(k), set: async (c) => Object.entries(c).forEach(([k, v]) => (v === "" ? volatile.delete(k) : volatile.set(k, v))) },
    devicesDir: join(dir, "devices"),
    rootfs: "/nonexistent",
    hostRootId: { uid: 0, gid: 0 },
    idmap: [],
    ports,
    log: pino({ level: "silent" }),
  };
}
const nic = (name: string, config: Record<string, string>) => deviceFactory(config)(ctx(), name, config);

beforeAll(async () => {
  dir = mkdtempSync("/tmp/nodelxd-test-");
  // As the daemon lays it out: dnsmasq (dropped to nobody) must reach its files.
  chmodSync(dir, 0o711);
  const paths = pathsFor(dir);
  must("mkdir", ["-p", paths.networks, paths.globalDatabaseDir]);
  db = openDatabase(paths.databaseFile, undefined, { localFile: paths.localDatabaseFile });
  const core = { paths, db, log: pino({ level: "silent" }), events: new EventHub() } as unknown as Core;
  svc = new NetworksFeature(core, ports).service;
  ports.networks = svc.port;
  subnet = freeSubnet();
  await svc.create("default", { name: br, config: { "ipv4.address": `10.97.${subnet}.1/24`, "ipv4.nat": "false", "ipv6.address": "none" } });
  holder = spawn("unshare", ["-n", "sleep", "600"], { stdio: "ignore" });
  pid = holder.pid!;
  await waitFor(() => readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("sleep"));
});

afterAll(async () => {
  holder?.kill("SIGKILL");
  ports.instances = noInstances;
  await svc?.delete("default", br).catch(() => {});
  await svc?.stopAll({ stopInstances: true }).catch(() => {});
  // Even when the service could not stop it (a failed test), no dnsmasq of ours outlives the file.
  for (const p of dnsmasqPids(br)) process.kill(p, "SIGKILL");
  db?.close();
  for (const l of sh("ip", ["-j", "link"]).stdout.match(new RegExp(`"nt${id}[^"]*"`, "g")) ?? []) sh("ip", ["link", "del", JSON.parse(l)]);
  rmSync(dir, { recursive: true, force: true });
});

describe("hot-plug into a running namespace", () => {
  it("network=BRIDGE: attach gives the instance a NIC on the bridge, DHCP hands out its static address; detach removes it", async () => {
    const d = nic("eth1", { type: "nic", network: br, name: "eth1", "ipv4.address": `10.97.${subnet}.77`, "limits.ingress": "10Mbit", "limits.egress": "5Mbit" });
    d.validate();
    await d.attach!(pid);
    const link = insideLink("eth1");
    expect(link.operstate === "UP" || link.flags.includes("UP")).toBe(true);
    expect(link.address).toBe(volatile.get("volatile.eth1.hwaddr"));
    expect(link.address).toMatch(/^00:16:3e:/);
    const hostName = volatile.get("volatile.eth1.host_name")!;
    expect(readFileSync(`/sys/class/net/${hostName}/master/uevent`, "utf8")).toContain(`INTERFACE=${br}`);
    // The static lease is in dnsmasq's hosts directory, and dnsmasq answers with it.
    const hostsFile = join(dir, "networks", br, "dnsmasq.hosts", "c1.eth1");
    expect(readFileSync(hostsFile, "utf8").trim()).toBe(`${link.address},10.97.${subnet}.77,c1`);
    await new Promise((r) => setTimeout(r, 300)); // dnsmasq re-reads its hosts on SIGHUP
    const dhcp = inside("busybox", "udhcpc", "-i", "eth1", "-n", "-q", "-f", "-t", "6", "-T", "2", "-s", "/bin/true");
    expect(dhcp.stdout + dhcp.stderr).toContain(`10.97.${subnet}.77`);
    const leases = await svc.leases("default", br);
    expect(leases).toContainEqual({ hostname: "c1", hwaddr: link.address, address: `10.97.${subnet}.77`, type: "static", location: "none" });
    // Bandwidth limits on the host end.
    const qdisc = sh("tc", ["qdisc", "show", "dev", hostName]).stdout;
    expect(qdisc).toContain("htb");
    expect(qdisc).toContain("ingress");
    expect(sh("tc", ["class", "show", "dev", hostName]).stdout).toContain("rate 10Mbit");
    const ifb = `ifb${hostName.slice(4)}`;
    expect(sh("tc", ["class", "show", "dev", ifb]).stdout).toContain("rate 5Mbit");

    await d.detach!(pid);
    expect(insideLink("eth1")).toBeUndefined();
    expect(linkExists(hostName)).toBe(false);
    expect(linkExists(ifb)).toBe(false);
    expect(volatile.get("volatile.eth1.host_name")).toBeUndefined();
    await d.remove!();
    expect(existsSync(hostsFile)).toBe(false);
  });

  it("p2p: a veth whose host end routes to the instance", async () => {
    const d = nic("eth2", { type: "nic", nictype: "p2p", name: "eth2", host_name: `nt${id}p2`, "ipv4.routes": `10.97.${subnet}.128/25` });
    d.validate();
    await d.attach!(pid);
    expect(insideLink("eth2")).toBeDefined();
    const route = sh("ip", ["-j", "route", "show", `10.97.${subnet}.128/25`]).stdout;
    expect(JSON.parse(route)[0].dev).toBe(`nt${id}p2`);
    await d.detach!(pid);
    expect(linkExists(`nt${id}p2`)).toBe(false);
    expect(insideLink("eth2")).toBeUndefined();
  });

  it("routed: /32 inside, host route and 169.254.0.1 next hop, traffic flows", async () => {
    const addr = `10.97.${freeSubnet(new Set([subnet]))}.9`;
    const d = nic("eth3", { type: "nic", nictype: "routed", name: "eth3", host_name: `nt${id}rt`, "ipv4.address": addr });
    d.validate();
    await d.attach!(pid);
    expect(inside("ip", "-4", "addr", "show", "dev", "eth3").stdout).toContain(`inet ${addr}/32`);
    expect(inside("ip", "route", "show", "default").stdout).toContain("via 169.254.0.1 dev eth3");
    expect(JSON.parse(sh("ip", ["-j", "route", "show", `${addr}/32`]).stdout)[0].dev).toBe(`nt${id}rt`);
    // From the host to the instance over the routed veth (traffic stays on this machine).
    expect(sh("busybox", ["ping", "-c", "1", "-W", "2", addr]).code).toBe(0);
    await d.detach!(pid);
    expect(linkExists(`nt${id}rt`)).toBe(false);
  });

  it("macvlan: created on the parent and moved in; detach removes it", async () => {
    const parent = `nt${id}mp`;
    must("ip", ["link", "add", parent, "type", "veth", "peer", "name", `nt${id}mq`]);
    must("ip", ["link", "set", parent, "up"]);
    const d = nic("eth4", { type: "nic", nictype: "macvlan", parent, name: "eth4" });
    d.validate();
    await d.attach!(pid);
    const link = insideLink("eth4");
    expect(link.linkinfo.info_kind).toBe("macvlan");
    expect(link.address).toBe(volatile.get("volatile.eth4.hwaddr"));
    await d.detach!(pid);
    expect(insideLink("eth4")).toBeUndefined();
    sh("ip", ["link", "del", parent]);
  });

  it("a failed attach leaves nothing behind", async () => {
    const d = nic("eth5", { type: "nic", nictype: "bridged", parent: br, name: "eth5", host_name: `nt${id}f` });
    await expect(d.attach!(999_999_999)).rejects.toThrow();
    expect(linkExists(`nt${id}f`)).toBe(false);
  });
});

describe("NIC on an Open vSwitch network", () => {
  it("start creates the veth and an OVS port (phys for liblxc); attach/detach hot-plug through ovs-vsctl", async () => {
    const ovs = startOvs();
    process.env.OVS_RUNDIR = ovs.dir;
    const obr = `nt${id}o`;
    try {
      const n = freeSubnet(new Set([subnet]));
      await svc.create("default", { name: obr, config: { "bridge.driver": "openvswitch", "ipv4.address": `10.97.${n}.1/24`, "ipv4.nat": "false", "ipv6.address": "none" } });
      const d = nic("eth6", { type: "nic", network: obr, name: "eth6" });
      d.validate();
      const rc = await d.start();
      const iface = rc.networkInterfaces![0];
      const hostName = volatile.get("volatile.eth6.host_name")!;
      expect(iface).toMatchObject({ type: "phys", name: "eth6", link: `${hostName.slice(0, 13)}p`, flags: "up" });
      expect(ovs.vsctl("list-ports", obr).stdout.split("\n")).toContain(hostName);
      await d.stop();
      expect(ovs.vsctl("list-ports", obr).stdout.trim()).toBe("");
      expect(linkExists(hostName)).toBe(false);

      await d.attach!(pid);
      expect(insideLink("eth6")).toBeDefined();
      const dhcp = inside("busybox", "udhcpc", "-i", "eth6", "-n", "-q", "-f", "-t", "6", "-T", "2", "-s", "/bin/true");
      expect(dhcp.stdout + dhcp.stderr).toContain(`lease of 10.97.${n}.`);
      await d.detach!(pid);
      expect(insideLink("eth6")).toBeUndefined();
      expect(ovs.vsctl("list-ports", obr).stdout.trim()).toBe("");
      await d.remove!();
    } finally {
      await svc.delete("default", obr).catch(() => {});
      delete process.env.OVS_RUNDIR;
      await ovs.stop();
    }
    expect(linkExists(obr)).toBe(false);
  });
});

describe("rules that depend on instance users", () => {
  it("refuses to delete or rename a network in use and lists its users", async () => {
    ports.instances = { usedBy: (ref) => (ref.network === br ? ["/1.0/instances/c1"] : []), nicsOn: () => [], exportForPublish: async () => Promise.reject(new Error("unused")) } as unknown as Ports["instances"];
    ports.profiles = { get: () => Promise.reject(new Error("unused")) as never, referencing: (ref) => (ref.network === br ? ["/1.0/profiles/default"] : []) } as unknown as Ports["profiles"];
    expect(svc.view("default", br).used_by).toEqual(["/1.0/profiles/default", "/1.0/instances/c1"]);
    await expect(svc.delete("default", br)).rejects.toThrow("The network is currently in use");
    await expect(svc.rename("default", br, `nt${id}z`)).rejects.toThrow("The network is currently in use");
    // A plain (SIGTERM) stop keeps networks instances use; dnsmasq keeps serving them.
    await svc.stopAll({ stopInstances: false });
    expect(linkExists(br)).toBe(true);
    expect(dnsmasqPids(br)).toHaveLength(1);
    await svc.startAll();
    expect(dnsmasqPids(br)).toHaveLength(1);
    ports.instances = noInstances;
    ports.profiles = noProfiles;
    expect(svc.view("default", br).used_by).toBeNull();
  });
});
