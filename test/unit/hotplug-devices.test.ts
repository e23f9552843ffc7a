// usb, unix-hotplug, NVIDIA gpu and tpm devices on a sysfs//dev//proc tree the test builds
// (this host has no USB, GPU or vTPM): what LXD 5.0.2 would pass into a container, the
// uevent parsing of its netlink listener, and swtpm's output line.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HardwareDevice } from "../../src/devices/hardware.js";
import { HotplugHub, unixHotplugEventOf, usbEventOf } from "../../src/devices/hotplug-hub.js";
import { findHotplugNodes, findUsb } from "../../src/devices/sysfs.js";
import { parseSwtpmDevice } from "../../src/devices/tpm.js";
import type { DeviceContext } from "../../src/devices/types.js";
import { frameReader, parseUevent } from "../../src/devices/uevents.js";
import { UnixHotplugDevice } from "../../src/devices/unix-hotplug.js";
import { UsbDevice } from "../../src/devices/usb.js";
import { putNvidiaCard, treeWriter } from "../helpers/hw-tree.js";

const top = mkdtempSync("/tmp/dv-hwtree-");
afterAll(() => rmSync(top, { recursive: true, force: true }));
const roots = { sys: join(top, "sys"), dev: join(top, "dev"), proc: join(top, "proc") };
const tree = treeWriter(top);
const { put, link, mknod } = tree;

// A USB serial adapter (0403:6001) at bus 1 device 2, with its tty below it (ttyUSB1: LXD's
// enumeration skips nodes with minor 0, such as a ttyUSB0), and a USB mouse
// (046d:c077) whose sysfs entry lacks "dev" (LXD skips it).
const usbDir = "sys/devices/pci0000:00/0000:00:14.0/usb1/1-3";
put(`${usbDir}/idVendor`, "0403");
put(`${usbDir}/idProduct`, "6001");
put(`${usbDir}/busnum`, "1");
put(`${usbDir}/devnum`, "2");
put(`${usbDir}/dev`, "189:1");
link(`../../../devices/pci0000:00/0000:00:14.0/usb1/1-3`, "sys/bus/usb/devices/1-3");
const ttyDir = `${usbDir}/1-3:1.0/ttyUSB1/tty/ttyUSB1`;
put(`${ttyDir}/dev`, "188:1");
put(`${ttyDir}/uevent`, "MAJOR=188\nMINOR=1\nDEVNAME=ttyUSB1");
mkdirSync(join(top, "sys/class/tty"), { recursive: true });
link("../../../../../../../../../class/tty", `${ttyDir}/subsystem`);
link(`../../devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/ttyUSB1/tty/ttyUSB1`, "sys/dev/char/188:1");
put("sys/bus/usb/devices/1-4/idVendor", "046d");
put("sys/bus/usb/devices/1-4/idProduct", "c077");
mknod("dev/bus/usb/001/002", 189, 1, "0664");
mknod("dev/ttyUSB1", 188, 1, "0620");

// An NVIDIA card driven by the nvidia driver: its DRM card, /dev/nvidia0 from /proc, the non-card nodes.
putNvidiaCard(tree);
mkdirSync(join(top, "dev/nvidia-caps"));

const devicesDir = mkdtempSync("/tmp/dv-devices-");
afterAll(() => rmSync(devicesDir, { recursive: true, force: true }));
const ctx = { project: "default", instance: "c", devicesDir, rootfs: join(devicesDir, "rootfs"), logDir: devicesDir, idmap: [], hostRootId: { uid: 0, gid: 0 } } as unknown as DeviceContext;
const nodeStat = (f: string) => {
  const st = statSync(join(devicesDir, f));
  return [st.isCharacterDevice() ? "c" : st.isBlockDevice() ? "b" : "?", st.rdev >> 8, st.rdev & 0xff, (st.mode & 0o7777).toString(8), st.uid, st.gid];
};

describe("usb devices", () => {
  it("reads USB devices as LXD's loadUsb (all five attributes, else skipped)", () => {
    expect(findUsb(roots)).toEqual([{ vendorid: "0403", productid: "6001", busnum: 1, devnum: 2, dev: "189:1" }]);
  });

  it("passes matching devices in at /dev/bus/usb/BBB/DDD with the host node's mode, or the config's", async () => {
    const d = new UsbDevice(ctx, "u", { type: "usb", vendorid: "0403" }, roots);
    const rc = await d.start();
    expect(rc.lxc).toEqual([
      ["lxc.mount.entry", `${devicesDir}/unix.u.dev-bus-usb-001-002 dev/bus/usb/001/002 none bind,create=file 0 0`],
      ["lxc.cgroup.devices.allow", "c 189:1 rwm"],
    ]);
    expect(nodeStat("unix.u.dev-bus-usb-001-002")).toEqual(["c", 189, 1, "664", 0, 0]);
    await d.stop();
    const e = new UsbDevice(ctx, "u", { type: "usb", productid: "6001", mode: "0600", uid: "1000", gid: "20", required: "true" }, roots);
    await e.start();
    expect(nodeStat("unix.u.dev-bus-usb-001-002")).toEqual(["c", 189, 1, "600", 1000, 20]);
    await e.stop();
    expect(readdirSync(devicesDir)).toEqual([]);
    expect((await new UsbDevice(ctx, "u", { type: "usb", vendorid: "046d" }, roots).start()).lxc).toEqual([]);
    await expect(new UsbDevice(ctx, "u", { type: "usb", vendorid: "046d", required: "yes" }, roots).start()).rejects.toThrow('Failed to start device "u": Required USB device not found');
  });
});

describe("unix-hotplug devices", () => {
  it("finds nodes below USB devices with their ids, as udev's usb_id would give them", () => {
    expect(findHotplugNodes(roots)).toEqual([{ subsystem: "tty", block: false, major: 188, minor: 1, devname: "/dev/ttyUSB1", vendor: "0403", product: "6001" }]);
  });

  it("passes the first matching node in at its /dev path", async () => {
    const d = new UnixHotplugDevice(ctx, "h", { type: "unix-hotplug", vendorid: "0403", productid: "6001" }, roots);
    expect((await d.start()).lxc).toEqual([
      ["lxc.mount.entry", `${devicesDir}/unix.h.dev-ttyUSB1 dev/ttyUSB1 none bind,create=file 0 0`],
      ["lxc.cgroup.devices.allow", "c 188:1 rwm"],
    ]);
    expect(nodeStat("unix.h.dev-ttyUSB1")).toEqual(["c", 188, 1, "620", 0, 0]);
    await d.stop();
    expect(readdirSync(devicesDir)).toEqual([]);
    await expect(new UnixHotplugDevice(ctx, "h", { type: "unix-hotplug", vendorid: "ffff", required: "true" }, roots).start()).rejects.toThrow('Failed to start device "h": Required Unix Hotplug device not found');
  });
});

describe("gpu devices with an NVIDIA card (nvidia.runtime false)", () => {
  it("passes the DRM card, /dev/nvidiaN from /proc/driver/nvidia and the non-card /dev/nvidia* nodes", async () => {
    const d = new HardwareDevice(ctx, "g", { type: "gpu", vendorid: "10de" }, roots);
    const rc = await d.start();
    const mounts = rc.lxc!.filter(([k]) => k === "lxc.mount.entry").map(([, v]) => v.split(" ")[1]);
    const rules = rc.lxc!.filter(([k]) => k === "lxc.cgroup.devices.allow").map(([, v]) => v);
    expect(mounts).toEqual(["dev/dri/card1", "dev/nvidia0", "dev/nvidia-uvm", "dev/nvidiactl"]);
    expect(rules).toEqual(["c 226:1 rwm", "c 195:0 rwm", "c 511:0 rwm", "c 195:255 rwm"]);
    expect(nodeStat("unix.g.dev-nvidia0")).toEqual(["c", 195, 0, "666", 0, 0]);
    expect(nodeStat("unix.g.dev-nvidia--uvm")).toEqual(["c", 511, 0, "666", 0, 0]);
    await d.stop();
    expect(readdirSync(devicesDir)).toEqual([]);
  });
});

describe("uevents", () => {
  const kernel = (fields: string[]) => Buffer.from(fields.join("\0") + "\0");
  const usbAdd = ["add@/devices/pci0000:00/0000:00:14.0/usb1/1-5", "ACTION=add", "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-5", "SUBSYSTEM=usb", "MAJOR=189", "MINOR=4", "DEVNAME=bus/usb/001/005", "DEVTYPE=usb_device", "PRODUCT=403/6001/600", "TYPE=0/0/0", "BUSNUM=001", "DEVNUM=005", "SEQNUM=4242"];

  it("parses kernel and udev messages as LXD's listener (SEQNUM dropped, udev given ACTION@DEVPATH)", () => {
    const e = parseUevent(kernel(usbAdd))!;
    expect(e.udev).toBe(false);
    expect(e.parts).toEqual(usbAdd.slice(0, -1));
    expect(e.props.PRODUCT).toBe("403/6001/600");
    const udev = Buffer.concat([Buffer.from("libudev\0"), Buffer.alloc(32), kernel(["ACTION=remove", "DEVPATH=/devices/x", "SUBSYSTEM=tty", "SEQNUM=9"])]);
    expect(parseUevent(udev)).toEqual({ udev: true, props: { ACTION: "remove", DEVPATH: "/devices/x", SUBSYSTEM: "tty" }, parts: ["remove@/devices/x", "ACTION=remove", "DEVPATH=/devices/x", "SUBSYSTEM=tty"] });
    expect(parseUevent(Buffer.from("garbage"))).toBeUndefined();
  });

  it("makes USB events (ids zero-padded, DEVNAME under /dev) and unix-hotplug events (ids from sysfs)", () => {
    expect(usbEventOf(parseUevent(kernel(usbAdd))!)).toEqual({ action: "add", vendor: "0403", product: "6001", path: "/dev/bus/usb/001/005", major: 189, minor: 4, busnum: 1, devnum: 5, parts: usbAdd.slice(0, -1) });
    expect(usbEventOf(parseUevent(kernel(usbAdd.filter((f) => !f.startsWith("BUSNUM"))))!)).toBeUndefined();
    // A node name that would leave /dev never becomes a path in a container.
    expect(usbEventOf(parseUevent(kernel(usbAdd.map((f) => (f.startsWith("DEVNAME=") ? "DEVNAME=../etc/passwd" : f))))!)).toBeUndefined();
    expect(usbEventOf(parseUevent(kernel(usbAdd.map((f) => (f.startsWith("DEVNAME=") ? "DEVNAME=/etc/passwd" : f))))!)).toBeUndefined();
    const ttyAdd = parseUevent(kernel(["add@/" + ttyDir.slice(4), "ACTION=add", "DEVPATH=/" + ttyDir.slice(4), "SUBSYSTEM=tty", "MAJOR=188", "MINOR=1", "DEVNAME=ttyUSB1"]))!;
    expect(unixHotplugEventOf(ttyAdd, roots.sys)).toMatchObject({ action: "add", vendor: "0403", product: "6001", path: "/dev/ttyUSB1", major: 188, minor: 1, subsystem: "tty" });
    // A remove needs no ids (the sysfs entry is gone); a path escaping sysfs gives none.
    const ttyRemove = parseUevent(kernel(["remove@/devices/gone", "ACTION=remove", "DEVPATH=/devices/gone", "SUBSYSTEM=tty", "MAJOR=188", "MINOR=1", "DEVNAME=ttyUSB1"]))!;
    expect(unixHotplugEventOf(ttyRemove, roots.sys)).toMatchObject({ action: "remove", path: "/dev/ttyUSB1", vendor: "0000" });
    const escape = parseUevent(kernel(["add@/../x", "ACTION=add", "DEVPATH=/../../etc", "SUBSYSTEM=tty", "MAJOR=1", "MINOR=1", "DEVNAME=x"]))!;
    expect(unixHotplugEventOf(escape, roots.sys)).toBeUndefined();
  });

  it("runs every registered handler, in order, and survives a failing one", async () => {
    const hub = new HotplugHub();
    const seen: string[] = [];
    hub.registerUsb("p", "a", "d1", async (e) => void seen.push(`a:${e.action}:${e.path}`));
    hub.registerUsb("p", "b", "d1", async () => {
      throw new Error("boom");
    });
    hub.registerUsb("p", "c", "d1", async (e) => void seen.push(`c:${e.action}`));
    await hub.dispatch(parseUevent(kernel(usbAdd))!);
    await hub.dispatch(parseUevent(kernel(usbAdd.map((f) => f.replace("add", "remove"))))!);
    expect(seen).toEqual(["a:add:/dev/bus/usb/001/005", "c:add", "a:remove:/dev/bus/usb/001/005", "c:remove"]);
    hub.unregister("p", "a", "d1");
    expect(hub.registered("p", "a", "d1")).toBe(false);
  });

  it("splits the listener helper's length-prefixed records across chunk boundaries", () => {
    const got: string[] = [];
    const feed = frameReader((b) => got.push(b.toString()));
    const rec = (s: string) => Buffer.concat([Buffer.from([s.length, 0, 0, 0]), Buffer.from(s)]);
    const all = Buffer.concat([rec(""), rec("abc"), rec("defgh")]);
    feed(all.subarray(0, 6));
    feed(all.subarray(6, 13));
    feed(all.subarray(13));
    expect(got).toEqual(["", "abc", "defgh"]);
  });
});

describe("tpm devices", () => {
  it("reads swtpm's device line as LXD (resource manager minor from the TPM's)", () => {
    expect(parseSwtpmDevice("New TPM device: /dev/tpm1 (major/minor = 253/1)")).toEqual({ major: 253, minor: 1, minorRM: 65537 });
    expect(parseSwtpmDevice("New TPM device: /dev/tpm0 (major/minor = 10/244)")).toEqual({ major: 10, minor: 244, minorRM: 65536 });
    expect(() => parseSwtpmDevice("swtpm: Could not open /dev/vtpmx: No such file or directory")).toThrow("Failed to retrieve major/minor number");
    expect(() => parseSwtpmDevice("")).toThrow("Failed to get TPM device information");
  });
});
