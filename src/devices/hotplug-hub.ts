// Hotplug events for usb and unix-hotplug devices, as LXD 5.0.2's USBRunHandlers and
// UnixHotplugRunHandlers: a running instance's device registers a handler (keyed by project,
// instance and device), every uevent is turned into a USB and a unix-hotplug event when it has
// what those need, and each handler decides whether the event is its device's. Handlers run one
// event at a time, in arrival order.
import { join } from "node:path";
import type { Logger } from "pino";
import { devnodePath, hardwareRoots, saneDevname, usbIdsAbove } from "./sysfs.js";
import type { Uevent } from "./uevents.js";

/** LXD's USBEvent. */
export interface UsbEvent {
  action: string;
  vendor: string;
  product: string;
  /** /dev path of the node (DEVNAME, or /dev/bus/usb/BBB/DDD). */
  path: string;
  major: number;
  minor: number;
  busnum: number;
  devnum: number;
  /** The uevent's fields, re-injected into the container. */
  parts: string[];
}

/** LXD's UnixHotplugEvent. */
export interface UnixHotplugEvent {
  action: string;
  vendor: string;
  product: string;
  path: string;
  major: number;
  minor: number;
  subsystem: string;
  parts: string[];
}

const zeroPad = (s: string) => s.padStart(4, "0");
const num = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);

/** LXD's netlink listener, USB part: SUBSYSTEM=usb with PRODUCT, MAJOR, MINOR, DEVNAME, BUSNUM, DEVNUM. */
export function usbEventOf(e: Uevent): UsbEvent | undefined {
  const p = e.props;
  if (e.udev || p.SUBSYSTEM !== "usb") return undefined;
  const ids = (p.PRODUCT ?? "").split("/");
  if (ids.length < 2) return undefined;
  const [major, minor, busnum, devnum] = [num(p.MAJOR), num(p.MINOR), num(p.BUSNUM), num(p.DEVNUM)];
  if (major === undefined || minor === undefined || busnum === undefined || devnum === undefined || p.DEVNAME === undefined) return undefined;
  if (p.DEVNAME !== "" && !saneDevname(p.DEVNAME)) return undefined;
  const path = p.DEVNAME === "" ? `/dev/bus/usb/${String(busnum).padStart(3, "0")}/${String(devnum).padStart(3, "0")}` : devnodePath(p.DEVNAME);
  return { action: p.ACTION, vendor: zeroPad(ids[0]), product: zeroPad(ids[1]), path, major, minor, busnum, devnum, parts: e.parts };
}

/**
 * LXD's netlink listener, unix-hotplug part: add/remove of a node (SUBSYSTEM, DEVNAME, MAJOR,
 * MINOR); on add, the vendor and product are udev's ID_VENDOR_ID/ID_MODEL_ID when the event
 * has them, else (kernel events: no udev daemon here) read from the USB device above the node
 * in sysfs, as udev's usb_id builtin finds them.
 */
export function unixHotplugEventOf(e: Uevent, sysRoot = hardwareRoots().sys): UnixHotplugEvent | undefined {
  const p = e.props;
  if (p.ACTION !== "add" && p.ACTION !== "remove") return undefined;
  const [major, minor] = [num(p.MAJOR), num(p.MINOR)];
  if (!p.SUBSYSTEM || !p.DEVNAME || !saneDevname(p.DEVNAME) || major === undefined || minor === undefined) return undefined;
  let vendor = "";
  let product = "";
  if (p.ACTION === "add") {
    if (p.ID_VENDOR_ID && p.ID_MODEL_ID) {
      vendor = p.ID_VENDOR_ID;
      product = p.ID_MODEL_ID;
    } else {
      if (!p.DEVPATH || p.DEVPATH.split("/").includes("..")) return undefined;
      const ids = usbIdsAbove(sysRoot, join(sysRoot, p.DEVPATH));
      if (!ids) return undefined;
      ({ vendor, product } = ids);
    }
  }
  return { action: p.ACTION, vendor: zeroPad(vendor), product: zeroPad(product), path: devnodePath(p.DEVNAME), major, minor, subsystem: p.SUBSYSTEM, parts: e.parts };
}

type Handler<E> = (e: E) => Promise<void>;

export class HotplugHub {
  private readonly usb = new Map<string, Handler<UsbEvent>>();
  private readonly unix = new Map<string, Handler<UnixHotplugEvent>>();
  private queue: Promise<void> = Promise.resolve();
  log?: Logger;

  private static key(project: string, instance: string, device: string): string {
    return `${project}\0${instance}\0${device}`;
  }

  registerUsb(project: string, instance: string, device: string, h: Handler<UsbEvent>): void {
    this.usb.set(HotplugHub.key(project, instance, device), h);
  }
  registerUnix(project: string, instance: string, device: string, h: Handler<UnixHotplugEvent>): void {
    this.unix.set(HotplugHub.key(project, instance, device), h);
  }
  unregister(project: string, instance: string, device: string): void {
    const k = HotplugHub.key(project, instance, device);
    this.usb.delete(k);
    this.unix.delete(k);
  }
  registered(project: string, instance: string, device: string): boolean {
    const k = HotplugHub.key(project, instance, device);
    return this.usb.has(k) || this.unix.has(k);
  }

  /** Hand a uevent to every registered handler; resolves when they all ran. */
  dispatch(e: Uevent): Promise<void> {
    // Most uevents (loop devices, ttys, network links) concern no device: no sysfs walk then.
    const usb = this.usb.size ? usbEventOf(e) : undefined;
    const unix = this.unix.size ? unixHotplugEventOf(e) : undefined;
    if (!usb && !unix) return this.queue;
    this.queue = this.queue.then(async () => {
      const run = async <E>(handlers: Map<string, Handler<E>>, ev: E | undefined, kind: string) => {
        if (!ev) return;
        for (const [key, h] of [...handlers]) {
          const [project, instance, device] = key.split("\0");
          await h(ev).catch((err) => this.log?.error({ err, project, instance, device }, `${kind} event hook failed`));
        }
      };
      await run(this.usb, usb, "USB");
      await run(this.unix, unix, "Unix hotplug");
    });
    return this.queue;
  }
}

/** The daemon's hub (devices are short-lived objects; their handlers live here while instances run). */
export const hotplugHub = new HotplugHub();
