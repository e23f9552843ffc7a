// nictype=macvlan (and network=NAME of a macvlan network): a macvlan on the parent (or its
// VLAN device), created by liblxc at start or by us for hot-plug.
import { interfaceExists } from "../../network/host/sysfs.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "../types.js";
import { deleteInsideInstance, generateHostName, ip, moveIntoInstance, stableHwaddr, validateNicConfig, withRevert, deleteHostLink } from "./common.js";

export const MACVLAN_KEYS = ["name", "parent", "hwaddr", "mtu", "vlan", "gvrp", "mode", "boot.priority", "maas.subnet.ipv4", "maas.subnet.ipv6"];

export class MacvlanNic implements Device {
  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    private readonly network?: string,
  ) {}

  /** parent and vlan, from the network when network=NAME. */
  private uplink(): { parent: string; vlan?: string; mtu?: string } {
    if (!this.network) return { parent: this.config.parent, vlan: this.config.vlan, mtu: this.config.mtu };
    const n = this.ctx.ports.networks.get(this.ctx.project, this.network);
    return { parent: n.config.parent, vlan: this.config.vlan || n.config.vlan, mtu: this.config.mtu || n.config.mtu };
  }

  validate(): void {
    if (this.network) {
      if (this.config.nictype) throw new Error('Cannot use "nictype" property in conjunction with "network" property');
      if (this.config.parent) throw new Error('Cannot use "parent" property in conjunction with "network" property');
      validateNicConfig(this.config, MACVLAN_KEYS.filter((k) => k !== "parent"));
    } else validateNicConfig(this.config, MACVLAN_KEYS, ["parent"]);
  }

  /** The host device the macvlan sits on, creating the VLAN device if needed. */
  private async lowerDevice(): Promise<string> {
    const { parent, vlan } = this.uplink();
    if (!interfaceExists(parent)) throw new Error(`Parent interface "${parent}" not found`);
    if (!vlan) return parent;
    const dev = `${parent}.${vlan}`;
    if (!interfaceExists(dev)) {
      await ip("link", "add", "link", parent, "name", dev, "type", "vlan", "id", vlan);
      await ip("link", "set", "dev", dev, "up");
      await this.ctx.volatile.set({ [`volatile.${this.name}.last_state.created`]: "true" });
    }
    return dev;
  }

  async start(): Promise<RunConfig> {
    const hwaddr = await stableHwaddr(this.ctx, this.name, this.config);
    const link = await this.lowerDevice();
    const nic: Record<string, string> = { type: "macvlan", "macvlan.mode": this.config.mode || "bridge", link, name: this.config.name || this.name, hwaddr, flags: "up" };
    const { mtu } = this.uplink();
    if (mtu) nic.mtu = mtu;
    return { networkInterfaces: [nic] };
  }

  async stop(): Promise<void> {
    const { parent, vlan } = this.uplink();
    if (vlan && this.ctx.volatile.get(`volatile.${this.name}.last_state.created`) === "true") {
      await deleteHostLink(`${parent}.${vlan}`);
      await this.ctx.volatile.set({ [`volatile.${this.name}.last_state.created`]: "" });
    }
  }

  async attach(pid: number): Promise<void> {
    const hwaddr = await stableHwaddr(this.ctx, this.name, this.config);
    const link = await this.lowerDevice();
    const tmp = generateHostName();
    await withRevert(async (undo) => {
      await ip("link", "add", "link", link, "name", tmp, "type", "macvlan", "mode", this.config.mode || "bridge");
      undo(() => deleteHostLink(tmp));
      await moveIntoInstance(tmp, pid, this.config.name || this.name, { hwaddr, mtu: this.uplink().mtu });
    });
  }

  async detach(pid: number): Promise<void> {
    await deleteInsideInstance(pid, this.config.name || this.name);
    await this.stop();
  }
}

export const macvlanNic = (ctx: DeviceContext, name: string, config: DeviceConfig): Device => new MacvlanNic(ctx, name, config);
