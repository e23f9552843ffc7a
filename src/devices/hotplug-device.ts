// What usb and unix-hotplug devices share: nodes passed in through a NodeSet, matched by
// vendorid/productid (LXD's usbIsOurDevice), and a hotplug handler that follows the container's
// init (registered at start, adoption and reboot; dropped on detach and stop).
import { hotplugHub } from "./hotplug-hub.js";
import { NodeSet } from "./node-set.js";
import { hardwareRoots, type HardwareRoots } from "./sysfs.js";
import type { DeviceConfig, DeviceContext } from "./types.js";

export abstract class HotplugNodeDevice {
  protected readonly nodes: NodeSet;

  constructor(
    protected readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    protected readonly roots: HardwareRoots = hardwareRoots(),
  ) {
    this.nodes = new NodeSet(ctx, name, config);
  }

  /** LXD's Register: the handler keeps what it needs, not this object. */
  protected abstract register(pid: number): void;

  protected ours(vendor: string, product: string): boolean {
    const c = this.config;
    return (!c.vendorid || c.vendorid === vendor) && (!c.productid || c.productid === product);
  }

  async adopt(pid: number): Promise<void> {
    this.register(pid);
  }

  /** Rebooted in place (a new init process): events go to the new one. */
  async rebooted(pid: number): Promise<void> {
    this.register(pid);
  }

  async detach(pid: number): Promise<void> {
    hotplugHub.unregister(this.ctx.project, this.ctx.instance, this.name);
    await this.nodes.unplugAll(pid);
  }

  async stop(): Promise<void> {
    hotplugHub.unregister(this.ctx.project, this.ctx.instance, this.name);
    this.nodes.removeAll();
  }
}
