// Network types that describe an existing host interface rather than create one:
// macvlan and sriov (templates for instance NICs) and physical (an uplink, optionally a VLAN).
import { interfaceState } from "../host/state.js";
import type { KeyTable } from "../../config/keys.js";
import { parseBool } from "../../config/validators.js";
import { deleteLink, ip, linkExists, setMtu, setUp } from "../host/ip.js";
import { macvlanKeys, physicalKeys, sriovKeys, validateNetworkConfig } from "../keys.js";
import { bgpKeyRules } from "../bgp/rules.js";
import type { NetworkConfig, NetworkContext, NetworkDriver, NetworkStateView } from "../types.js";
import { existsSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";

/** The host device for a parent and optional VLAN (LXD: parent.VLAN). */
export const vlanDevice = (parent: string, vlan?: string) => (vlan ? `${parent}.${vlan}` : parent);

class UplinkNetwork implements NetworkDriver {
  constructor(
    readonly type: string,
    private readonly keys: KeyTable,
    private readonly ctx: NetworkContext,
    /** physical: create the VLAN device and apply the MTU; macvlan/sriov: only check the parent. */
    private readonly configuresParent: boolean,
  ) {}

  validate(config: NetworkConfig): void {
    // physical networks take bgp.peers.* (as uplinks of OVN networks, in 5.0.2); macvlan/sriov don't.
    const bgp = bgpKeyRules(this.type === "physical" ? config : {});
    validateNetworkConfig(this.ctx.name, this.keys, config, (k) => bgp[k]);
  }

  hostInterface(): string {
    return vlanDevice(this.ctx.config.parent, this.configuresParent ? this.ctx.config.vlan : undefined);
  }

  private get createdMarker(): string {
    return join(this.ctx.dir, "vlan.created");
  }

  async start(): Promise<void> {
    const { parent, vlan, mtu, gvrp } = this.ctx.config;
    if (!linkExists(parent)) throw new Error(`Parent interface "${parent}" not found`);
    if (!this.configuresParent) return;
    const dev = vlanDevice(parent, vlan);
    if (vlan && !linkExists(dev)) {
      await ip("link", "add", "link", parent, "name", dev, "type", "vlan", "id", vlan, ...(parseBool(gvrp) ? ["gvrp", "on"] : []));
      writeFileSync(this.createdMarker, dev);
    }
    if (mtu) await setMtu(dev, mtu);
    await setUp(dev);
  }

  async stop(): Promise<void> {
    if (!this.configuresParent || !existsSync(this.createdMarker)) return;
    await deleteLink(readFileSync(this.createdMarker, "utf8").trim());
    rmSync(this.createdMarker, { force: true });
  }

  async update(next: NetworkConfig): Promise<void> {
    const prev = this.ctx.config;
    if (prev.parent !== next.parent || prev.vlan !== next.vlan) await this.stop();
    this.ctx.config = next;
    await this.start();
  }

  async state(): Promise<NetworkStateView> {
    const dev = this.hostInterface();
    if (!linkExists(dev)) throw new Error(`Parent interface "${dev}" not found`);
    const vlan = this.ctx.config.vlan ? ({ lower_device: this.ctx.config.parent, vid: Number(this.ctx.config.vlan) } as never) : null;
    return interfaceState(dev, vlan);
  }
}

export const macvlanNetwork = (ctx: NetworkContext): NetworkDriver => new UplinkNetwork("macvlan", macvlanKeys, ctx, false);
export const sriovNetwork = (ctx: NetworkContext): NetworkDriver => new UplinkNetwork("sriov", sriovKeys, ctx, false);
export const physicalNetwork = (ctx: NetworkContext): NetworkDriver => new UplinkNetwork("physical", physicalKeys, ctx, true);
