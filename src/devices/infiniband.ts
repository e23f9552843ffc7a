// infiniband devices (nictype physical and sriov) for containers, as LXD 5.0.2. The port is
// found the way LXD's resources find network cards (readNetwork over the hardware roots' sysfs:
// the parent port itself for physical; for sriov, a free virtual function of the parent's card
// on the parent's port that no instance on this member names as parent or volatile host_name
// and no managed network names as parent, picked under a per-parent lock: src/devices/sriov.ts).
// Its MTU and MAC are recorded in volatile (last_state.*), hwaddr (8-byte form: the last 8 bytes
// of the 20) and mtu applied, its issm/umad/uverbs nodes passed in as unix-char devices (host
// nodes devices/<instance>/infiniband.unix.<device>.<path>, cgroup rule, bind mount; mode from
// the /dev node), and the netdev moved into the container as liblxc `phys` interface `name`
// (at start) or by a netns move (hot-plug). Stopping gives the netdev back to the host (liblxc
// does at stop; a hot-unplug moves it back under its host name), removes the nodes and restores
// the recorded MTU and MAC. The netdev itself is always the host's (ip link); only what sysfs
// says about the hardware is read under the hardware roots, so tests can name a real interface
// in a tree they build.
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { readNetwork, type NetworkCard, type NetworkPort } from "../daemon/resources/devices.js";
import { SysFs } from "../daemon/resources/sysfs.js";
import { run } from "../os/exec.js";
import { NodeSet, hostNodeMode, type NodeSpec } from "./node-set.js";
import { isNotEmpty, optional, validateKeys, type Rule } from "./rules.js";
import { hostDevicesInUse, withVfLock } from "./sriov.js";
import { hardwareRoots, type HardwareRoots } from "./sysfs.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "./types.js";

/** LXD's IBDevPrefix: host node files are infiniband.unix.<device>.<path>. */
export const IB_DEV_PREFIX = "infiniband.unix";

/** LXD's validate.IsInterfaceName. */
const isInterfaceName: Rule = (v) => {
  if (v.length < 2) throw new Error("Network interface is too short (minimum 2 characters)");
  if (v.length > 15) throw new Error("Network interface is too long (maximum 15 characters)");
  if (!/^[-_a-zA-Z0-9.]+$/.test(v)) throw new Error("Network interface contains invalid characters");
};

/** LXD's validate.IsNetworkMTU. */
const isNetworkMtu: Rule = (v) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 0xffffffff) throw new Error(`Invalid MTU ${JSON.stringify(v)}`);
  if (Number(v) < 1280 || Number(v) > 16384) throw new Error(`Out of MTU range (1280-16384) ${JSON.stringify(v)}`);
};

/** LXD's infinibandValidMAC: 8 or 20 bytes of hex separated by colons. */
export const isInfinibandMac: Rule = (v) => {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){7}$/.test(v) && !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){19}$/.test(v)) {
    throw new Error("Invalid value, must be either 8 or 20 bytes of hex separated by colons");
  }
};

export const IB_NICTYPES = ["physical", "sriov"];

/** LXD's infinibandDevices: the parent port and its card's VFs on the same port (or named like the parent). */
export function infinibandDevices(cards: NetworkCard[], parent: string): Map<string, NetworkPort> {
  const out = new Map<string, NetworkPort>();
  for (const card of cards) {
    for (const port of card.ports) if (port.protocol === "infiniband" && port.id === parent) out.set(port.id, port);
    if (!card.sriov) continue;
    const pf = out.get(parent);
    for (const vf of card.sriov.vfs ?? []) {
      for (const port of vf.ports) {
        if (port.protocol !== "infiniband") continue;
        if (pf ? pf.port !== port.port : port.id !== parent) continue;
        out.set(port.id, port);
      }
    }
  }
  return out;
}

/** The host's live view of a netdev (the one `ip` changes), not the hardware tree's. */
function liveNet(dev: string, file: string): string {
  const path = join("/sys/class/net", dev, file);
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    // Go's os.ReadFile wording, as LXD reports it.
    throw new Error(`open ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file or directory" : (e as Error).message}`);
  }
}

/** `ip` with LXD's error wording (shared.RunCommand). */
async function ip(...args: string[]): Promise<void> {
  const r = await run("ip", args, { reject: false });
  if (r.exitCode !== 0) throw new Error(`Failed to run: ip ${args.join(" ")}: exit status ${r.exitCode} (${r.stderr.trim()})`);
}

async function setMtuIfDifferent(dev: string, mtu: string): Promise<void> {
  if (liveNet(dev, "mtu") !== mtu) await ip("link", "set", "dev", dev, "mtu", mtu);
}

async function setMacIfDifferent(dev: string, mac: string): Promise<void> {
  if (liveNet(dev, "address") !== mac) await ip("link", "set", "dev", dev, "address", mac);
}

/** A SysFs whose "/sys/..." paths are under `dir` (the hardware roots' sysfs, wherever it is). */
class SysDir extends SysFs {
  override path(p: string): string {
    return join(this.root, p.replace(/^\/sys(?=\/|$)/, ""));
  }

  override resolve(p: string): string {
    const r = super.resolve(p);
    return r === "" ? "" : r === "/" ? "/sys" : `/sys${r}`;
  }
}

export class InfinibandDevice implements Device {
  private readonly nodes: NodeSet;

  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    private readonly roots: HardwareRoots = hardwareRoots(),
  ) {
    this.nodes = new NodeSet(ctx, name, {}, IB_DEV_PREFIX);
  }

  private vol(key: string): string {
    return this.ctx.volatile.get(`volatile.${this.name}.${key}`) ?? "";
  }

  private async setVol(values: Record<string, string>): Promise<void> {
    await this.ctx.volatile.set(Object.fromEntries(Object.entries(values).map(([k, v]) => [`volatile.${this.name}.${k}`, v])));
  }

  validate(): void {
    validateKeys(this.config, { parent: isNotEmpty, name: optional(isInterfaceName), mtu: optional(isNetworkMtu), hwaddr: optional(isInfinibandMac) }, ["nictype"]);
  }

  /**
   * The interface name in the container, as LXD's FillNetworkDevice: `name`, else the one
   * chosen before (volatile.<device>.name), else the first ibN no other device or volatile
   * name (nor, when running, an interface in the container) has, stored in volatile.
   */
  private async ifName(pid?: number): Promise<string> {
    if (this.config.name) return this.config.name;
    const stored = this.vol("name");
    if (stored) return stored;
    const taken = new Set<string>();
    for (const d of Object.values(this.ctx.expandedDevices?.() ?? {})) if (d.name) taken.add(d.name);
    for (const [k, v] of Object.entries(this.ctx.instanceConfig)) if (k.startsWith("volatile.") && k.split(".").slice(2).join(".") === "name") taken.add(v);
    if (pid !== undefined) {
      try {
        for (const line of readFileSync(`/proc/${pid}/net/dev`, "utf8").split("\n").slice(2)) if (line.includes(":")) taken.add(line.split(":")[0].trim());
      } catch {
        /* gone: nothing to avoid */
      }
    }
    let i = 0;
    while (taken.has(`ib${i}`)) i++;
    await this.setVol({ name: `ib${i}` });
    return `ib${i}`;
  }

  /** LXD's validateEnvironment (`name` filled in before, as LXD's device load does). */
  private checkEnvironment(name: string): void {
    if (!name) throw new Error("Requires name property to start");
    const parent = this.config.parent;
    if (parent.includes("/") || parent === "." || parent === ".." || !this.sys().exists(`/sys/class/net/${parent}`)) throw new Error(`Parent device '${parent}' doesn't exist`);
  }

  /** The hardware roots' sysfs as the resources readers see it ("/sys/..." paths). */
  private sys(): SysFs {
    return new SysDir(this.roots.sys);
  }

  /** The port this device takes: the parent (physical) or a free VF of it (sriov). */
  private pickPort(): NetworkPort {
    const parent = this.config.parent;
    const ports = infinibandDevices(readNetwork(this.sys(), "").cards, parent);
    if (this.config.nictype === "physical") {
      const port = ports.get(parent);
      if (!port) throw new Error(`Specified infiniband device "${parent}" not found`);
      return port;
    }
    ports.delete(parent);
    for (const used of hostDevicesInUse(this.ctx.ports)) ports.delete(used);
    const vf = [...ports.values()][0];
    if (!vf) throw new Error("All virtual functions on parent device are already in use");
    return vf;
  }

  /** LXD's infinibandAddDevices: the port's issm, umad and uverbs nodes as unix-char devices. */
  private nodeSpecs(port: NetworkPort): NodeSpec[] {
    const ib = port.infiniband;
    if (!ib) throw new Error("No infiniband devices supplied");
    const out: NodeSpec[] = [];
    for (const node of [ib.issm_name, ib.mad_name, ib.verb_name]) {
      if (!node) continue;
      const host = join(this.roots.dev, "infiniband", node);
      const path = `/dev/infiniband/${node}`;
      let st;
      try {
        st = statSync(host);
      } catch (e) {
        throw new Error(`Failed to get device attributes for ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file or directory" : (e as Error).message}`);
      }
      out.push({ path, kind: st.isBlockDevice() ? "b" : "c", major: Math.floor(st.rdev / 256) & 0xfff, minor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00), mode: hostNodeMode(host) });
    }
    return out;
  }

  /**
   * Everything up to handing the netdev over: port chosen, MTU/MAC recorded then set, nodes
   * made (and plugged when `pid` is given), volatile written. On failure, whatever was done is
   * undone (the MTU/MAC restored, nodes removed) before the error goes up.
   */
  private async prepare(pid?: number): Promise<{ hostName: string; ifName: string; lxc: [string, string][] }> {
    // A VF is taken once its host_name is in volatile (at the end): one pick per parent at a time.
    if (this.config.nictype === "sriov") return withVfLock(this.config.parent, () => this.preparePort(pid));
    return this.preparePort(pid);
  }

  private async preparePort(pid?: number): Promise<{ hostName: string; ifName: string; lxc: [string, string][] }> {
    const ifName = await this.ifName(pid);
    this.checkEnvironment(ifName);
    const port = this.pickPort();
    const hostName = port.id;
    const saved = { host_name: hostName, "last_state.mtu": liveNet(hostName, "mtu"), "last_state.hwaddr": liveNet(hostName, "address") };
    const lxc: [string, string][] = [];
    let changed = false;
    try {
      const hwaddr = this.config.hwaddr;
      if (hwaddr) {
        changed = true;
        // The 8-byte form replaces the last 8 of the port's 20 bytes.
        const mac = hwaddr.length === 59 ? hwaddr : `${saved["last_state.hwaddr"].slice(0, 36)}${hwaddr}`;
        await setMacIfDifferent(hostName, mac).catch((e: Error) => {
          throw new Error(`Failed to set the MAC address: ${e.message}`);
        });
      }
      if (this.config.mtu) {
        changed = true;
        await ip("link", "set", "dev", hostName, "mtu", this.config.mtu).catch((e: Error) => {
          throw new Error(`Failed setting MTU ${JSON.stringify(this.config.mtu)} on ${JSON.stringify(hostName)}: ${e.message}`);
        });
      }
      for (const n of this.nodeSpecs(port)) {
        if (pid === undefined) lxc.push(...(await this.nodes.setup(n)));
        else await this.nodes.plug(pid, n);
      }
      await this.setVol(saved);
    } catch (e) {
      if (pid !== undefined) await this.nodes.unplugAll(pid).catch(() => {});
      this.nodes.removeAll();
      if (changed) await this.restoreNic(hostName, saved).catch(() => {});
      throw e;
    }
    return { hostName, ifName, lxc };
  }

  async start(): Promise<RunConfig> {
    try {
      const { hostName, ifName, lxc } = await this.prepare();
      return { lxc, networkInterfaces: [{ type: "phys", name: ifName, flags: "up", link: hostName }] };
    } catch (e) {
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  /** Hot-plug: as a start, then the netdev moves into the container's namespace under `name` (LXD's AttachInterface). */
  async attach(pid: number): Promise<void> {
    try {
      const { hostName, ifName } = await this.prepare(pid);
      try {
        await ip("link", "set", "dev", hostName, "netns", String(pid), "name", ifName);
      } catch (e) {
        await this.nodes.unplugAll(pid).catch(() => {});
        await this.stop();
        throw e;
      }
    } catch (e) {
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  /** Hot-unplug: the netdev goes back to the host under its host name (LXD's DetachInterfaceRename), the nodes out. */
  async detach(pid: number): Promise<void> {
    const hostName = this.vol("host_name");
    const name = this.config.name || this.vol("name");
    if (hostName && name) {
      const r = await run("nsenter", ["-t", String(pid), "-n", "ip", "link", "set", "dev", name, "netns", "1", "name", hostName], { reject: false });
      if (r.exitCode !== 0 && !/Cannot find device/.test(r.stderr)) throw new Error(`Failed to detach interface: ${JSON.stringify(name)} to ${JSON.stringify(hostName)}: ${r.stderr.trim()}`);
    }
    await this.nodes.unplugAll(pid);
  }

  /** LXD's postStop: node files gone, MTU and MAC restored, volatile cleared. */
  async stop(): Promise<void> {
    this.nodes.removeAll();
    const hostName = this.vol("host_name");
    try {
      if (hostName) await this.restoreNic(hostName, { "last_state.mtu": this.vol("last_state.mtu"), "last_state.hwaddr": this.vol("last_state.hwaddr") });
    } finally {
      if (hostName || this.vol("last_state.mtu") || this.vol("last_state.hwaddr")) {
        await this.setVol({ host_name: "", "last_state.hwaddr": "", "last_state.mtu": "", "last_state.pci.slot.name": "", "last_state.pci.driver": "" });
      }
    }
  }

  /** LXD's networkRestorePhysicalNIC: down, then the recorded MTU and MAC. */
  private async restoreNic(hostName: string, saved: Record<string, string>): Promise<void> {
    await ip("link", "set", "dev", hostName, "down").catch((e: Error) => {
      throw new Error(`Failed to bring down "${hostName}": ${e.message}`);
    });
    const mtu = saved["last_state.mtu"];
    if (mtu) {
      await setMtuIfDifferent(hostName, mtu).catch((e: Error) => {
        throw new Error(`Failed to restore physical dev "${hostName}" mtu to "${mtu}": ${e.message}`);
      });
    }
    const mac = saved["last_state.hwaddr"];
    if (mac) {
      await setMacIfDifferent(hostName, mac).catch((e: Error) => {
        throw new Error(`Failed to restore physical dev "${hostName}" mac to "${mac}": ${e.message}`);
      });
    }
  }
}

/** LXD's device loader: infiniband with another (or no) nictype has no implementation. */
export function infinibandDevice(ctx: DeviceContext, name: string, config: DeviceConfig): Device {
  if (!IB_NICTYPES.includes(config.nictype ?? "")) throw new Error("Unsupported device type");
  return new InfinibandDevice(ctx, name, config);
}
