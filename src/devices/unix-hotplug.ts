// unix-hotplug devices (containers only), as LXD 5.0.2's unix_hotplug.go: the first char or
// block node whose device carries the configured vendorid/productid (a node below a USB device:
// ttyUSB, hidraw, sd*; usb* subsystems themselves excluded) is passed in at its /dev path; while
// the container runs, add events of matching nodes plug them in and remove events take them
// out, and the events are re-injected into the container. `required` defaults to false.
// LXD enumerates udev's database for this; there is no udev daemon here, so the ids are read
// from sysfs the way udev's usb_id builtin finds them (sysfs.ts findHotplugNodes).
import { parseBool } from "../config/validators.js";
import { hotplugHub } from "./hotplug-hub.js";
import { hostNodeMode, type NodeSpec } from "./node-set.js";
import { HotplugNodeDevice } from "./hotplug-device.js";
import { isBool, isDeviceID, isOctalMode, isUnixId, optional, validateKeys } from "./rules.js";
import { findHotplugNodes } from "./sysfs.js";
import type { Device, RunConfig } from "./types.js";
import { hostDevPath } from "./usb.js";

export class UnixHotplugDevice extends HotplugNodeDevice implements Device {
  validate(): void {
    const c = this.config;
    validateKeys(c, { vendorid: optional(isDeviceID), productid: optional(isDeviceID), uid: optional(isUnixId), gid: optional(isUnixId), mode: optional(isOctalMode), required: optional(isBool) });
    if (!c.vendorid && !c.productid) throw new Error("Unix hotplug devices require a vendorid or a productid");
  }

  /** LXD's loadUnixDevice: the first matching node, or undefined. */
  private find(): NodeSpec | undefined {
    const n = findHotplugNodes(this.roots).find((x) => this.ours(x.vendor, x.product));
    return n && { path: n.devname, kind: n.block ? "b" : "c", major: n.major, minor: n.minor, mode: hostNodeMode(hostDevPath(this.roots, n.devname)) };
  }

  async start(): Promise<RunConfig> {
    try {
      const n = this.find();
      if (parseBool(this.config.required) && !n) throw new Error("Required Unix Hotplug device not found");
      const lxc = n ? await this.nodes.setup(n) : [];
      return { lxc, postStart: async (pid) => this.register(pid) };
    } catch (e) {
      this.nodes.removeAll();
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  async attach(pid: number): Promise<void> {
    const n = this.find();
    if (parseBool(this.config.required) && !n) throw new Error(`Failed to start device ${JSON.stringify(this.name)}: Required Unix Hotplug device not found`);
    if (n) await this.nodes.plug(pid, n);
    this.register(pid);
  }

  protected register(pid: number): void {
    const { ctx, nodes, roots } = this;
    const ours = (v: string, p: string) => this.ours(v, p);
    hotplugHub.registerUnix(ctx.project, ctx.instance, this.name, async (e) => {
      if (e.action === "add") {
        if (!ours(e.vendor, e.product)) return;
        await nodes.plug(pid, { path: e.path, kind: e.subsystem === "block" ? "b" : "c", major: e.major, minor: e.minor, mode: hostNodeMode(hostDevPath(roots, e.path)) });
      } else if (e.action === "remove") {
        // LXD injects every remove event into every instance with a unix-hotplug device;
        // here only the instances that had the node see it go.
        if (!nodes.has(e.path)) return;
        await nodes.unplug(pid, e.path);
      }
      await ctx.hotplug?.uevent?.(pid, e.parts);
    });
  }
}
