// usb devices for containers, as LXD 5.0.2's usb.go: every USB device in sysfs matching
// vendorid/productid (both optional) is passed in as its /dev/bus/usb/BBB/DDD node (a unix-char
// device named after this one); `required` (default false) makes a start without a match fail.
// While the container runs, USB uevents add and remove nodes (hotplug) and are re-injected into
// the container's network namespace, as LXD's handler does.
import { join } from "node:path";
import { parseBool } from "../config/validators.js";
import { hotplugHub, type UsbEvent } from "./hotplug-hub.js";
import { hostNodeMode, type NodeSpec } from "./node-set.js";
import { HotplugNodeDevice } from "./hotplug-device.js";
import { isBool, isDeviceID, isOctalMode, isUnixId, optional, validateKeys } from "./rules.js";
import { findUsb, parseDevNum, usbNodePath, type HardwareRoots } from "./sysfs.js";
import type { Device, RunConfig } from "./types.js";

/** The host's node under the roots' /dev for a /dev path. */
export const hostDevPath = (roots: HardwareRoots, path: string) => join(roots.dev, path.replace(/^\/dev\//, ""));

export class UsbDevice extends HotplugNodeDevice implements Device {
  validate(): void {
    validateKeys(this.config, { vendorid: optional(isDeviceID), productid: optional(isDeviceID), uid: optional(isUnixId), gid: optional(isUnixId), mode: optional(isOctalMode), required: optional(isBool) });
  }

  private matching(): NodeSpec[] {
    return findUsb(this.roots)
      .filter((u) => this.ours(u.vendorid, u.productid))
      .map((u) => {
        const path = usbNodePath(u.busnum, u.devnum);
        return { path, kind: "c" as const, ...parseDevNum(u.dev)!, mode: hostNodeMode(hostDevPath(this.roots, path)) };
      });
  }

  async start(): Promise<RunConfig> {
    try {
      const lxc: [string, string][] = [];
      const found = this.matching();
      for (const n of found) lxc.push(...(await this.nodes.setup(n)));
      if (parseBool(this.config.required) && found.length === 0) throw new Error("Required USB device not found");
      return { lxc, postStart: async (pid) => this.register(pid) };
    } catch (e) {
      this.nodes.removeAll();
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  async attach(pid: number): Promise<void> {
    const found = this.matching();
    if (parseBool(this.config.required) && found.length === 0) throw new Error(`Failed to start device ${JSON.stringify(this.name)}: Required USB device not found`);
    try {
      for (const n of found) await this.nodes.plug(pid, n);
    } catch (e) {
      await this.nodes.unplugAll(pid).catch(() => {});
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
    this.register(pid);
  }

  protected register(pid: number): void {
    const { ctx, nodes, roots } = this;
    const ours = (e: UsbEvent) => this.ours(e.vendor, e.product);
    hotplugHub.registerUsb(ctx.project, ctx.instance, this.name, async (e) => {
      if (!ours(e)) return;
      if (e.action === "add") await nodes.plug(pid, { path: e.path, kind: "c", major: e.major, minor: e.minor, mode: hostNodeMode(hostDevPath(roots, e.path)) });
      else if (e.action === "remove" && nodes.has(e.path)) await nodes.unplug(pid, e.path);
      await ctx.hotplug?.uevent?.(pid, e.parts);
    });
  }
}
