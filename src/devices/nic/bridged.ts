// nictype=bridged (and network=NAME of a bridge network): a veth pair with the host end on
// a Linux bridge (liblxc creates it) or an Open vSwitch bridge (we create it and hand the
// instance end to liblxc as a phys interface, since liblxc can't see userspace OVS bridges).
import { interfaceMtu, isBridge } from "../../network/host/sysfs.js";
import * as ovs from "../../network/host/ovs.js";
import { contains, parseCidr, parseIp } from "../../network/ipnet.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "../types.js";
import {
  applyLimits,
  clearLimits,
  deleteHostLink,
  deleteInsideInstance,
  generateHostName,
  ip,
  moveIntoInstance,
  removeLimits,
  stableHwaddr,
  validateNicConfig,
  withRevert,
} from "./common.js";

/** What LXD changes on a running bridged NIC without re-plugging it (UpdatableFields). */
const UPDATABLE_KEYS = new Set(["limits.ingress", "limits.egress", "limits.max", "ipv4.address", "ipv6.address"]);

export const BRIDGED_KEYS = ["name", "parent", "hwaddr", "mtu", "host_name", "vlan", "boot.priority", "ipv4.address", "ipv6.address", "ipv4.routes", "ipv6.routes", "limits.ingress", "limits.egress", "limits.max", "queue.tx.length"];

export class BridgedNic implements Device {
  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    /** Set when the NIC comes from network=NAME (a managed bridge). */
    private readonly network?: string,
  ) {}

  private get parent(): string {
    return this.network ? this.ctx.ports.networks!.get(this.ctx.project, this.network).name : this.config.parent;
  }

  /** The managed network behind the parent, if any (for static leases and subnet checks). */
  private managedNetwork(): { name: string; config: Record<string, string> } | undefined {
    const nets = this.ctx.ports.networks;
    const name = this.network ?? this.config.parent;
    if (!nets || !name) return undefined;
    try {
      const n = nets.get(this.ctx.project, name);
      return n.type === "bridge" ? { name, config: n.config } : undefined;
    } catch {
      return undefined;
    }
  }

  validate(): void {
    if (this.network) {
      if (this.config.nictype) throw new Error('Cannot use "nictype" property in conjunction with "network" property');
      if (this.config.parent) throw new Error('Cannot use "parent" property in conjunction with "network" property');
      validateNicConfig(this.config, BRIDGED_KEYS.filter((k) => k !== "parent"));
    } else validateNicConfig(this.config, BRIDGED_KEYS, ["parent"]);
    const managed = this.managedNetwork();
    if (!managed) return;
    for (const fam of [4, 6] as const) {
      const addr = this.config[`ipv${fam}.address`];
      if (!addr) continue;
      const subnet = parseCidr(managed.config[`ipv${fam}.address`] ?? "");
      const a = parseIp(addr);
      if (!subnet || !a || !contains(subnet, a.family, a.ip)) throw new Error(`Device IP address "${addr}" not within network "${managed.name}" subnet`);
    }
  }

  private async isOvs(bridge: string): Promise<boolean> {
    const managed = this.managedNetwork();
    if (managed) return this.ctx.ports.networks?.isOvs?.(this.ctx.project, managed.name) ?? false;
    if (isBridge(bridge)) return false;
    return ovs.bridgeExists(bridge);
  }

  private async registerLease(hwaddr: string): Promise<void> {
    const managed = this.managedNetwork();
    const set = this.ctx.ports.networks?.setStaticLease;
    if (!managed || !set) return;
    await set.call(this.ctx.ports.networks, managed.name, this.ctx.instance, hwaddr, this.config["ipv4.address"] || undefined, this.config["ipv6.address"] || undefined, this.name);
  }

  /** The MTU of a veth we create: the NIC's mtu, else the bridge's (what liblxc does for its own veths). */
  private vethMtu(bridge: string): string | undefined {
    return this.config.mtu || interfaceMtu(bridge)?.toString();
  }

  private ifaceName(): string {
    return this.config.name || this.name;
  }

  async start(): Promise<RunConfig> {
    const bridge = this.parent;
    const hwaddr = await stableHwaddr(this.ctx, this.name, this.config);
    const hostName = this.config.host_name || generateHostName();
    await this.registerLease(hwaddr);
    await this.ctx.volatile.set({ [`volatile.${this.name}.host_name`]: hostName });
    const postStart = async () => {
      await applyLimits(hostName, this.config);
    };
    if (await this.isOvs(bridge)) {
      const peer = `${hostName.slice(0, 13)}p`;
      const mtu = this.vethMtu(bridge);
      await withRevert(async (undo) => {
        await ip("link", "add", "dev", hostName, "type", "veth", "peer", "name", peer);
        undo(() => deleteHostLink(hostName));
        if (mtu) await ip("link", "set", "dev", hostName, "mtu", mtu);
        await ovs.addPort(bridge, hostName);
        undo(() => ovs.deletePort(bridge, hostName));
        await ip("link", "set", "dev", hostName, "up");
      });
      const nic: Record<string, string> = { type: "phys", link: peer, name: this.ifaceName(), hwaddr, flags: "up" };
      if (mtu) nic.mtu = mtu;
      return { networkInterfaces: [nic], postStart };
    }
    const nic: Record<string, string> = { type: "veth", name: this.ifaceName(), "veth.pair": hostName, link: bridge, hwaddr, flags: "up" };
    if (this.config.mtu) nic.mtu = this.config.mtu;
    if (this.config.vlan) nic["veth.vlan.id"] = this.config.vlan;
    return { networkInterfaces: [nic], postStart };
  }

  async stop(): Promise<void> {
    const hostName = this.ctx.volatile.get(`volatile.${this.name}.host_name`);
    if (hostName) {
      const bridge = this.parent;
      if (await this.isOvs(bridge).catch(() => false)) await ovs.deletePort(bridge, hostName);
      await deleteHostLink(hostName);
      await removeLimits(hostName);
    }
    await this.ctx.volatile.set({ [`volatile.${this.name}.host_name`]: "" });
  }

  async attach(pid: number): Promise<void> {
    const bridge = this.parent;
    const hwaddr = await stableHwaddr(this.ctx, this.name, this.config);
    const hostName = this.config.host_name || generateHostName();
    const peer = `${hostName.slice(0, 13)}p`;
    const useOvs = await this.isOvs(bridge);
    const mtu = this.vethMtu(bridge);
    await withRevert(async (undo) => {
      await ip("link", "add", "dev", hostName, "type", "veth", "peer", "name", peer);
      undo(() => deleteHostLink(hostName));
      if (mtu) await ip("link", "set", "dev", hostName, "mtu", mtu);
      if (useOvs) {
        await ovs.addPort(bridge, hostName);
        undo(() => ovs.deletePort(bridge, hostName));
      } else await ip("link", "set", "dev", hostName, "master", bridge);
      await ip("link", "set", "dev", hostName, "up");
      undo(() => removeLimits(hostName));
      await this.registerLease(hwaddr);
      await moveIntoInstance(peer, pid, this.ifaceName(), { hwaddr, mtu });
      await applyLimits(hostName, this.config);
      await this.ctx.volatile.set({ [`volatile.${this.name}.host_name`]: hostName });
    });
  }

  async detach(pid: number): Promise<void> {
    await deleteInsideInstance(pid, this.ifaceName());
    await this.stop();
  }

  /** liblxc made a new veth under the same name (or moved the OVS peer back in): limits again. */
  async rebooted(): Promise<void> {
    const hostName = this.ctx.volatile.get(`volatile.${this.name}.host_name`);
    if (hostName) await applyLimits(hostName, this.config);
  }

  /**
   * Static addresses and limits change in place: the instance keeps its interface (and the
   * address its DHCP client holds; dnsmasq hands out the new static one at the next renewal).
   */
  async update(_pid: number, previous: DeviceConfig): Promise<boolean> {
    const keys = new Set([...Object.keys(previous), ...Object.keys(this.config)]);
    const changed = [...keys].filter((k) => (previous[k] ?? "") !== (this.config[k] ?? ""));
    if (changed.some((k) => !UPDATABLE_KEYS.has(k))) return false;
    const hostName = this.ctx.volatile.get(`volatile.${this.name}.host_name`);
    if (!hostName) return false;
    if (changed.some((k) => k.endsWith(".address"))) await this.registerLease(await stableHwaddr(this.ctx, this.name, this.config));
    if (changed.some((k) => k.startsWith("limits."))) {
      await clearLimits(hostName);
      await applyLimits(hostName, this.config);
    }
    return true;
  }

  async remove(): Promise<void> {
    const managed = this.managedNetwork();
    if (managed) await this.ctx.ports.networks?.removeStaticLease?.(managed.name, this.ctx.instance, this.name);
  }
}

export const bridgedNic = (ctx: DeviceContext, name: string, config: DeviceConfig): Device => new BridgedNic(ctx, name, config);
