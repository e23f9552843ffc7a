// nictype=bridged (and network=NAME of a bridge network): a veth pair with the host end on
// a Linux bridge (liblxc creates it) or an Open vSwitch bridge (we create it and hand the
// instance end to liblxc as a phys interface, since liblxc can't see userspace OVS bridges).
import { readFileSync } from "node:fs";
import { interfaceMtu, isBridge } from "../../network/host/sysfs.js";
import { applyBridgeFilter, clearBridgeFilter } from "../../network/host/bridge-filter.js";
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
const UPDATABLE_KEYS = new Set([
  "limits.ingress",
  "limits.egress",
  "limits.max",
  "ipv4.routes",
  "ipv6.routes",
  "ipv4.routes.external",
  "ipv6.routes.external",
  "ipv4.address",
  "ipv6.address",
  "security.mac_filtering",
  "security.ipv4_filtering",
  "security.ipv6_filtering",
]);

export const BRIDGED_KEYS = [
  "name",
  "parent",
  "hwaddr",
  "mtu",
  "host_name",
  "vlan",
  "boot.priority",
  "ipv4.address",
  "ipv6.address",
  "ipv4.routes",
  "ipv6.routes",
  "ipv4.routes.external",
  "ipv6.routes.external",
  "limits.ingress",
  "limits.egress",
  "limits.max",
  "queue.tx.length",
  "security.mac_filtering",
  "security.ipv4_filtering",
  "security.ipv6_filtering",
];

const isTrue = (v: string | undefined) => ["true", "1", "yes", "on"].includes((v ?? "").toLowerCase());
const filtered = (c: DeviceConfig) => isTrue(c["security.mac_filtering"]) || isTrue(c["security.ipv4_filtering"]) || isTrue(c["security.ipv6_filtering"]);
const list = (v: string | undefined) => (v ?? "").split(",").map((x) => x.trim()).filter(Boolean);
const hostRoutes = (c: DeviceConfig) => ["ipv4.routes", "ipv6.routes", "ipv4.routes.external", "ipv6.routes.external"].flatMap((k) => list(c[k]));
/** A static address key: "none" means "no address of this family" (with IP filtering). */
const address = (v: string | undefined) => (v && v !== "none" ? v : undefined);

export class BridgedNic implements Device {
  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    /** Set when the NIC comes from network=NAME (a managed bridge). */
    private readonly network?: string,
  ) {}

  private get parent(): string {
    return this.network ? this.ctx.ports.networks.get(this.ctx.project, this.network).name : this.config.parent;
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
      validateNicConfig(this.checkable(), BRIDGED_KEYS.filter((k) => k !== "parent"));
    } else validateNicConfig(this.checkable(), BRIDGED_KEYS, ["parent"]);
    const managed = this.managedNetwork();
    if (!managed) {
      // An unmanaged bridge has no allocator: a static address is only a filter's allow list.
      for (const fam of [4, 6] as const) {
        const addr = this.config[`ipv${fam}.address`];
        if (isTrue(this.config[`security.ipv${fam}_filtering`])) {
          if (!addr) throw new Error(`IPv${fam} filtering requires a manually specified ipv${fam}.address when using an unmanaged parent bridge`);
        } else if (addr) throw new Error(`Cannot use manually specified ipv${fam}.address when using unmanaged parent bridge`);
      }
      return;
    }
    if ((isTrue(this.config["security.ipv4_filtering"]) || isTrue(this.config["security.ipv6_filtering"])) && this.config.vlan) {
      throw new Error("IP filtering cannot be used with VLAN filtering");
    }
    // LXD's checks of static addresses against the managed network, in LXD's order.
    for (const fam of [4, 6] as const) {
      const addr = this.config[`ipv${fam}.address`];
      if (!addr) continue;
      const net = managed.config;
      const filtering = isTrue(this.config[`security.ipv${fam}_filtering`]);
      const parentAddress = net[`ipv${fam}.address`] ?? "";
      const dhcpSubnet = net[`ipv${fam}.dhcp`] === "false" ? undefined : parseCidr(parentAddress);
      if (fam === 4 && !dhcpSubnet && !filtering) {
        throw new Error(`Cannot specify "ipv4.address" when DHCP is disabled (unless using security.ipv4_filtering) on network "${managed.name}"`);
      }
      if (fam === 6 && (!dhcpSubnet || !isTrue(net["ipv6.dhcp.stateful"])) && !filtering) {
        throw new Error(`Cannot specify "ipv6.address" when DHCP or "ipv6.dhcp.stateful" are disabled (unless using security.ipv6_filtering) on network "${managed.name}"`);
      }
      const a = parseIp(addr);
      if (dhcpSubnet && addr !== "none" && (!a || !contains(dhcpSubnet, a.family, a.ip))) {
        throw new Error(`Device IP address "${addr}" not within network "${managed.name}" subnet`);
      }
      const parent = parseCidr(parentAddress);
      if (!parent) return;
      if (addr === "none" && !filtering) throw new Error(`Cannot have ipv${fam}.address as none unless using security.ipv${fam}_filtering`);
      if (a && a.family === parent.family && a.ip === parent.ip) {
        throw new Error(`IP address "${addr}" is assigned to parent managed network device "${this.config.parent ?? managed.name}"`);
      }
    }
  }

  /** The config as the key table checks it: "none" addresses are a bridged NIC's own word. */
  private checkable(): DeviceConfig {
    return Object.fromEntries(Object.entries(this.config).filter(([k, v]) => !(k.endsWith(".address") && v === "none")));
  }

  /** LXD's project.Instance: the instance part of the filter chains' and static host files' names. */
  private projectInstance(): string {
    return this.ctx.project === "default" ? this.ctx.instance : `${this.ctx.project}_${this.ctx.instance}`;
  }

  /** LXD's instanceDeviceLabel: the filter chains' name part. */
  private filterLabel(): string {
    return `${this.projectInstance()}.${this.name}`;
  }

  /**
   * MAC/IP filters of the NIC (LXD's setFilters): IP-filtered families without a fixed address
   * get one from the managed network's DHCP allocation, and only the allowed networks pass.
   */
  private async setFilters(config: DeviceConfig, hostName: string, hwaddr: string): Promise<void> {
    if (!filtered(config)) return;
    if (isTrue(config["security.ipv6_filtering"])) {
      let v = "";
      try {
        v = readFileSync("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "utf8").trim();
      } catch {
        throw new Error("security.ipv6_filtering requires bridge netfilter: br_netfilter kernel module not loaded");
      }
      if (v !== "1") throw new Error("security.ipv6_filtering requires bridge netfilter: sysctl net.bridge.bridge-nf-call-ip6tables not enabled");
    }
    const addrs: Record<4 | 6, string | undefined> = { 4: config["ipv4.address"] || undefined, 6: config["ipv6.address"] || undefined };
    const managed = this.managedNetwork();
    const want = { ipv4: isTrue(config["security.ipv4_filtering"]) && !addrs[4], ipv6: isTrue(config["security.ipv6_filtering"]) && !addrs[6] };
    if (managed && (want.ipv4 || want.ipv6)) {
      const got = await this.ctx.ports.networks.allocateFilterAddresses(managed.name, this.projectInstance(), this.name, { hwaddr, ipv4: address(addrs[4]), ipv6: address(addrs[6]) }, want);
      if (want.ipv4) addrs[4] = got?.ipv4 ?? "none";
      if (want.ipv6) addrs[6] = got?.ipv6 ?? "none";
    }
    const nets = (fam: 4 | 6): string[] | undefined => {
      if (!isTrue(config[`security.ipv${fam}_filtering`])) return undefined;
      if (addrs[fam] === "none") return [];
      const own = addrs[fam] ? [`${addrs[fam]}/${fam === 4 ? 32 : 128}`] : [];
      return [...own, ...list(config[`ipv${fam}.routes`]), ...list(config[`ipv${fam}.routes.external`])];
    };
    await applyBridgeFilter({ label: this.filterLabel(), hostName, hwaddr, ipv4Nets: nets(4), ipv6Nets: nets(6) });
  }

  private async clearFilters(): Promise<void> {
    await clearBridgeFilter(this.filterLabel());
  }

  private async isOvs(bridge: string): Promise<boolean> {
    const managed = this.managedNetwork();
    if (managed) return this.ctx.ports.networks.isOvs(this.ctx.project, managed.name);
    if (isBridge(bridge)) return false;
    return ovs.bridgeExists(bridge);
  }

  private async registerLease(hwaddr: string): Promise<void> {
    const managed = this.managedNetwork();
    if (!managed) return;
    await this.ctx.ports.networks.setStaticLease(managed.name, this.projectInstance(), hwaddr, address(this.config["ipv4.address"]), address(this.config["ipv6.address"]), this.name);
  }

  /** The MTU of a veth we create: the NIC's mtu, else the bridge's (what liblxc does for its own veths). */
  private vethMtu(bridge: string): string | undefined {
    return this.config.mtu || interfaceMtu(bridge)?.toString();
  }

  private ifaceName(): string {
    return this.config.name || this.name;
  }

  /** LXD's BGP owner name for this NIC's external routes. */
  private bgpOwner(): string {
    const id = this.ctx.instanceId?.();
    return `instance_${id ?? `${this.ctx.project}/${this.ctx.instance}`}_${this.name}`;
  }

  /** bgpAddPrefix: advertise ipv4/ipv6.routes.external (only for NICs on a managed network). */
  private async bgpAdvertise(): Promise<void> {
    if (!this.network) return;
    await this.ctx.ports.networks.advertiseNicRoutes(this.network, this.bgpOwner(), this.config).catch((err) => this.ctx.log.warn({ err, device: this.name }, "BGP: advertising NIC routes"));
  }

  private async bgpWithdraw(): Promise<void> {
    if (!this.network) return;
    await this.ctx.ports.networks.withdrawNicRoutes(this.bgpOwner()).catch((err) => this.ctx.log.warn({ err, device: this.name }, "BGP: withdrawing NIC routes"));
  }

  async start(): Promise<RunConfig> {
    const bridge = this.parent;
    const hwaddr = await stableHwaddr(this.ctx, this.name, this.config);
    const hostName = this.config.host_name || generateHostName();
    await this.registerLease(hwaddr);
    await this.ctx.volatile.set({ [`volatile.${this.name}.host_name`]: hostName });
    const postStart = async () => {
      await applyLimits(hostName, this.config);
      await this.bgpAdvertise();
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
    if (filtered(this.config)) await this.setFilters(this.config, hostName, hwaddr);
    const nic: Record<string, string> = { type: "veth", name: this.ifaceName(), "veth.pair": hostName, link: bridge, hwaddr, flags: "up" };
    if (this.config.mtu) nic.mtu = this.config.mtu;
    if (this.config.vlan) nic["veth.vlan.id"] = this.config.vlan;
    const routes = hostRoutes(this.config);
    return {
      networkInterfaces: [nic],
      postStart: async (pid) => {
        await postStart();
        for (const r of routes) await ip("route", "replace", r, "dev", bridge, "proto", "static");
        void pid;
      },
    };
  }

  async stop(): Promise<void> {
    await this.bgpWithdraw();
    const hostName = this.ctx.volatile.get(`volatile.${this.name}.host_name`);
    if (filtered(this.config)) await this.clearFilters();
    await this.deleteRoutes(this.config);
    if (hostName) {
      const bridge = this.parent;
      if (await this.isOvs(bridge).catch(() => false)) await ovs.deletePort(bridge, hostName);
      await deleteHostLink(hostName);
      await removeLimits(hostName);
    }
    await this.ctx.volatile.set({ [`volatile.${this.name}.host_name`]: "" });
  }

  private async deleteRoutes(config: DeviceConfig): Promise<void> {
    const bridge = (() => {
      try {
        return this.parent;
      } catch {
        return undefined;
      }
    })();
    if (!bridge) return;
    for (const r of hostRoutes(config)) await ip("route", "del", r, "dev", bridge).catch(() => undefined);
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
      if (filtered(this.config)) {
        await this.setFilters(this.config, hostName, hwaddr);
        undo(() => this.clearFilters());
      }
      await moveIntoInstance(peer, pid, this.ifaceName(), { hwaddr, mtu });
      await applyLimits(hostName, this.config);
      await this.ctx.volatile.set({ [`volatile.${this.name}.host_name`]: hostName });
    });
    await this.bgpAdvertise();
  }

  /** The daemon started while the instance runs: advertise its external routes again (LXD's Register). */
  async adopt(): Promise<void> {
    await this.bgpAdvertise();
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
    const hwaddr = await stableHwaddr(this.ctx, this.name, this.config);
    if (changed.some((k) => k.endsWith(".address"))) await this.registerLease(hwaddr);
    if (changed.some((k) => k.startsWith("limits."))) {
      await clearLimits(hostName);
      await applyLimits(hostName, this.config);
    }
    if (changed.some((k) => k.includes(".routes"))) {
      await this.deleteRoutes(previous);
      for (const r of hostRoutes(this.config)) await ip("route", "replace", r, "dev", this.parent, "proto", "static");
    }
    if (filtered(previous) || filtered(this.config)) {
      await this.clearFilters();
      await this.setFilters(this.config, hostName, hwaddr);
    }
    if (changed.some((k) => k.endsWith(".routes.external"))) await this.bgpAdvertise();
    return true;
  }

  /**
   * LXD's Add (and Update of a stopped instance): the static DHCP host file of the NIC on its
   * managed bridge is written now (dnsmasq reloaded), so it exists before the first start. A NIC
   * moved to another network leaves its old network's file.
   */
  async add(previous?: DeviceConfig): Promise<void> {
    const managed = this.managedNetwork();
    if (previous) {
      const before = previous.network ?? previous.parent;
      if (before && before !== managed?.name) await this.ctx.ports.networks.removeStaticLease(before, this.projectInstance(), this.name);
    }
    if (!managed) return;
    await this.registerLease(await stableHwaddr(this.ctx, this.name, this.config));
  }

  async remove(): Promise<void> {
    const managed = this.managedNetwork();
    if (managed) await this.ctx.ports.networks.removeStaticLease(managed.name, this.projectInstance(), this.name);
  }
}

export const bridgedNic = (ctx: DeviceContext, name: string, config: DeviceConfig): Device => new BridgedNic(ctx, name, config);
