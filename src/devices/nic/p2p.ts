// nictype=p2p (a veth with no bridge; host routes to it) and nictype=routed (a veth whose
// instance end gets /32 and /128 addresses routed from the host, LXD's 169.254.0.1 / fe80::1
// next hop, and proxy ARP/NDP on the parent when one is given).
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "../types.js";
import { applyLimits, removeLimits, deleteHostLink, deleteInsideInstance, generateHostName, ip, moveIntoInstance, nsenterIp, stableHwaddr, validateNicConfig, withRevert } from "./common.js";
import { listOf } from "../../network/keys.js";
import { isIP } from "node:net";

export const P2P_KEYS = ["name", "hwaddr", "mtu", "host_name", "boot.priority", "ipv4.routes", "ipv6.routes", "limits.ingress", "limits.egress", "limits.max", "queue.tx.length"];
export const ROUTED_KEYS = ["name", "parent", "hwaddr", "mtu", "host_name", "vlan", "boot.priority", "ipv4.address", "ipv6.address", "ipv4.gateway", "ipv6.gateway", "ipv4.routes", "ipv6.routes", "limits.ingress", "limits.egress", "limits.max", "queue.tx.length"];

const V4_HOST = "169.254.0.1";
const V6_HOST = "fe80::1";

const split = (v?: string) => (v ?? "").split(",").map((s) => s.trim()).filter(Boolean);

abstract class VethNic implements Device {
  constructor(
    protected readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
  ) {}

  abstract validate(): void;

  protected ifaceName(): string {
    return this.config.name || this.name;
  }

  /** Host-side setup once both ends exist (routes, addresses, limits). */
  protected async hostSide(hostName: string): Promise<void> {
    for (const r of [...split(this.config["ipv4.routes"]), ...split(this.config["ipv6.routes"])]) await ip("route", "replace", r, "dev", hostName);
    await applyLimits(hostName, this.config);
  }

  /** Instance-side setup inside the network namespace of `pid`. */
  protected async instanceSide(_pid: number): Promise<void> {}

  async start(): Promise<RunConfig> {
    const hwaddr = await stableHwaddr(this.ctx, this.name, this.config);
    const hostName = this.config.host_name || generateHostName();
    await this.ctx.volatile.set({ [`volatile.${this.name}.host_name`]: hostName });
    const nic: Record<string, string> = { type: "veth", name: this.ifaceName(), "veth.pair": hostName, hwaddr, flags: "up" };
    if (this.config.mtu) nic.mtu = this.config.mtu;
    return {
      networkInterfaces: [nic],
      postStart: (pid) => this.afterStart(hostName, pid),
    };
  }

  private async afterStart(hostName: string, pid: number): Promise<void> {
    await ip("link", "set", "dev", hostName, "up");
    await this.hostSide(hostName);
    await this.instanceSide(pid);
  }

  /** liblxc recreated the veth on reboot: its routes, addresses and limits are gone. */
  async rebooted(pid: number): Promise<void> {
    const hostName = this.ctx.volatile.get(`volatile.${this.name}.host_name`);
    if (hostName) await this.afterStart(hostName, pid);
  }

  async stop(): Promise<void> {
    const hostName = this.ctx.volatile.get(`volatile.${this.name}.host_name`);
    await deleteHostLink(hostName);
    if (hostName) await removeLimits(hostName);
    await this.ctx.volatile.set({ [`volatile.${this.name}.host_name`]: "" });
  }

  async attach(pid: number): Promise<void> {
    const hwaddr = await stableHwaddr(this.ctx, this.name, this.config);
    const hostName = this.config.host_name || generateHostName();
    const peer = `${hostName.slice(0, 13)}p`;
    await withRevert(async (undo) => {
      await ip("link", "add", "dev", hostName, "type", "veth", "peer", "name", peer);
      undo(() => deleteHostLink(hostName));
      undo(() => removeLimits(hostName));
      if (this.config.mtu) await ip("link", "set", "dev", hostName, "mtu", this.config.mtu);
      await ip("link", "set", "dev", hostName, "up");
      await moveIntoInstance(peer, pid, this.ifaceName(), { hwaddr, mtu: this.config.mtu });
      await this.hostSide(hostName);
      await this.instanceSide(pid);
      await this.ctx.volatile.set({ [`volatile.${this.name}.host_name`]: hostName });
    });
  }

  async detach(pid: number): Promise<void> {
    await deleteInsideInstance(pid, this.ifaceName());
    await this.stop();
  }
}

export class P2pNic extends VethNic {
  validate(): void {
    validateNicConfig(this.config, P2P_KEYS);
  }
}

export class RoutedNic extends VethNic {
  validate(): void {
    for (const fam of [4, 6] as const) {
      const v = this.config[`ipv${fam}.address`];
      if (!v) continue;
      try {
        listOf((a) => {
          if (isIP(a) !== fam) throw new Error(`Not an IPv${fam} address "${a}"`);
        })(v);
      } catch (e) {
        throw new Error(`Invalid value for device option "ipv${fam}.address": ${(e as Error).message}`);
      }
    }
    const rest = Object.fromEntries(Object.entries(this.config).filter(([k]) => k !== "ipv4.address" && k !== "ipv6.address"));
    validateNicConfig(rest, ROUTED_KEYS);
  }

  protected override async hostSide(hostName: string): Promise<void> {
    const v4 = split(this.config["ipv4.address"]);
    const v6 = split(this.config["ipv6.address"]);
    if (v4.length) await ip("addr", "replace", `${V4_HOST}/32`, "dev", hostName);
    if (v6.length) await ip("-6", "addr", "replace", `${V6_HOST}/128`, "dev", hostName, "nodad");
    for (const a of v4) await ip("route", "replace", `${a}/32`, "dev", hostName);
    for (const a of v6) await ip("-6", "route", "replace", `${a}/128`, "dev", hostName);
    const parent = this.config.vlan ? `${this.config.parent}.${this.config.vlan}` : this.config.parent;
    if (parent) for (const a of [...v4, ...v6]) await ip("neigh", "replace", "proxy", a, "dev", parent);
    await super.hostSide(hostName);
  }

  protected override async instanceSide(pid: number): Promise<void> {
    const dev = this.ifaceName();
    const v4 = split(this.config["ipv4.address"]);
    const v6 = split(this.config["ipv6.address"]);
    for (const a of v4) await nsenterIp(pid, "addr", "replace", `${a}/32`, "dev", dev);
    for (const a of v6) await nsenterIp(pid, "-6", "addr", "replace", `${a}/128`, "dev", dev, "nodad");
    if (v4.length && (this.config["ipv4.gateway"] ?? "auto") === "auto") {
      await nsenterIp(pid, "route", "replace", V4_HOST, "dev", dev);
      await nsenterIp(pid, "route", "replace", "default", "via", V4_HOST, "dev", dev);
    }
    if (v6.length && (this.config["ipv6.gateway"] ?? "auto") === "auto") await nsenterIp(pid, "-6", "route", "replace", "default", "via", V6_HOST, "dev", dev);
  }

  override async stop(): Promise<void> {
    const parent = this.config.vlan ? `${this.config.parent}.${this.config.vlan}` : this.config.parent;
    if (parent) {
      for (const a of [...split(this.config["ipv4.address"]), ...split(this.config["ipv6.address"])]) {
        await ip("neigh", "del", "proxy", a, "dev", parent).catch(() => {});
      }
    }
    await super.stop();
  }
}

export const p2pNic = (ctx: DeviceContext, name: string, config: DeviceConfig): Device => new P2pNic(ctx, name, config);
export const routedNic = (ctx: DeviceContext, name: string, config: DeviceConfig): Device => new RoutedNic(ctx, name, config);
