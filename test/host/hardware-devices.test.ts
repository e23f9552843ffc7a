// usb, unix-hotplug, NVIDIA gpu and tpm devices with the stock client on real busybox
// containers. This host has no USB, GPU or vTPM: the daemon is pointed at a sysfs//dev//proc
// tree the test builds (NODELXD_HARDWARE_ROOT) and takes that tree's uevents from its socket;
// everything after that is real — host nodes, mounts and cgroup rules in the running
// container, uevents re-injected into its network namespace (seen there by busybox `uevent`),
// a daemon kill -9 and restart. The kernel uevent listener itself is checked against real
// kernel events, and tpm against this kernel (no tpm_vtpm_proxy).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NetlinkUevents, type Uevent } from "../../src/devices/uevents.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { putMigCapabilities, putNvidiaCard, treeWriter } from "../helpers/hw-tree.js";

const top = mkdtempSync("/tmp/dv-hw-");
const tree = treeWriter(top);
const { put, link, mknod } = tree;

// A USB serial adapter 0403:6001 (bus 1, device 2) with ttyUSB1 below it; an NVIDIA card.
const usbDir = "sys/devices/pci0000:00/0000:00:14.0/usb1/1-3";
const ttyDir = `${usbDir}/1-3:1.0/ttyUSB1/tty/ttyUSB1`;
function buildTree(): void {
  put(`${usbDir}/idVendor`, "0403");
  put(`${usbDir}/idProduct`, "6001");
  put(`${usbDir}/busnum`, "1");
  put(`${usbDir}/devnum`, "2");
  put(`${usbDir}/dev`, "189:1");
  link("../../../devices/pci0000:00/0000:00:14.0/usb1/1-3", "sys/bus/usb/devices/1-3");
  put(`${ttyDir}/dev`, "188:1");
  put(`${ttyDir}/uevent`, "MAJOR=188\nMINOR=1\nDEVNAME=ttyUSB1");
  mkdirSync(join(top, "sys/class/tty"), { recursive: true });
  link("../../../../../../../../../class/tty", `${ttyDir}/subsystem`);
  link("../../devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/ttyUSB1/tty/ttyUSB1", "sys/dev/char/188:1");
  mknod("dev/bus/usb/001/002", 189, 1, "0664");
  mknod("dev/ttyUSB1", 188, 1, "0620");
  putNvidiaCard(tree);
  putMigCapabilities(tree);
}

let d: InitialisedDaemon;
beforeAll(async () => {
  buildTree();
  d = await startInitialisedDaemon({ env: { NODELXD_HARDWARE_ROOT: top } });
});
afterAll(async () => {
  await d?.teardown();
  rmSync(top, { recursive: true, force: true });
});

const ok = (r: { code: number; stderr: string }) => expect(r.code, r.stderr).toBe(0);
async function until(f: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 100));
  }
}
/** One uevent into the daemon's test socket, as the kernel would send it. */
const send = (fields: string[]) =>
  new Promise<void>((resolve, reject) => {
    const c = createConnection(join(top, "uevent.sock"));
    c.on("error", reject);
    c.on("close", () => resolve());
    c.end(Buffer.from(fields.join("\0") + "\0"));
  });
const usbEvent = (action: string, vendor: string, devnum: number, minor: number) => {
  const devpath = `/devices/pci0000:00/0000:00:14.0/usb1/1-${devnum}`;
  return [`${action}@${devpath}`, `ACTION=${action}`, `DEVPATH=${devpath}`, "SUBSYSTEM=usb", "MAJOR=189", `MINOR=${minor}`, `DEVNAME=bus/usb/001/00${devnum}`, "DEVTYPE=usb_device", `PRODUCT=${vendor}/6001/600`, "TYPE=0/0/0", "BUSNUM=001", `DEVNUM=00${devnum}`, "SEQNUM=77"];
};
const inside = (c: string, p: string) => d.lxc("exec", c, "--", "stat", "-c", "%F %t:%T %a", p).stdout.trim();
/** The container's device cgroup allow list (cgroup v1 devices controller). */
function devicesList(c: string): string {
  const pid = /PID: (\d+)/.exec(d.lxc("info", c).stdout)?.[1];
  const line = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").find((l) => /:devices:/.test(l));
  return readFileSync(join("/sys/fs/cgroup/devices", line!.split(":")[2], "devices.list"), "utf8");
}
const hostNodes = (c: string) => readdirSync(join(d.dir, "devices", c)).filter((f) => f.startsWith("unix."));
const v1 = existsSync("/sys/fs/cgroup/devices/devices.list");

describe("usb devices", () => {
  it("passes matching devices in, hotplugs them on uevents (re-injected), after a daemon restart too", async () => {
    const c = d.launch("usb");
    // busybox's uevent listener inside the container records what reaches its network namespace.
    ok(d.lxc("exec", c, "--", "sh", "-c", "uevent sh -c 'env >> /root/ev; echo >> /root/ev' </dev/null >/dev/null 2>&1 &"));
    expect(d.lxc("config", "device", "add", c, "bad", "usb", "vendorid=0403", "productid=XYZ").stderr).toContain('Invalid value for device option "productid": Invalid value, must be four lower case hex characters');
    const missing = d.lxc("config", "device", "add", c, "bad", "usb", "vendorid=1234", "required=true");
    // Real LXD 5.0.2's answers, byte for byte (this host has no USB device 1234).
    expect(missing.stderr.trim()).toBe('Error: Failed to start device "bad": Required USB device not found');
    expect(d.lxc("config", "device", "get", c, "bad", "vendorid").code).not.toBe(0);

    ok(d.lxc("config", "device", "add", c, "u", "usb", "vendorid=0403"));
    expect(inside(c, "/dev/bus/usb/001/002")).toBe("character special file bd:1 664");
    expect(hostNodes(c)).toEqual(["unix.u.dev-bus-usb-001-002"]);
    if (v1) expect(devicesList(c)).toContain("c 189:1 rwm");

    // Plugged in: node, mount, cgroup rule, and the event inside the container.
    await send(usbEvent("add", "403", 5, 4));
    await until(() => inside(c, "/dev/bus/usb/001/005") === "character special file bd:4 660");
    if (v1) expect(devicesList(c)).toContain("c 189:4 rwm");
    await until(() => d.lxc("exec", c, "--", "cat", "/root/ev").stdout.includes("DEVNAME=bus/usb/001/005"));
    const ev = d.lxc("exec", c, "--", "cat", "/root/ev").stdout;
    expect(ev).toContain("ACTION=add");
    expect(ev).toContain("PRODUCT=403/6001/600");
    // Another vendor's device is not ours; then ours goes away.
    await send(usbEvent("add", "46d", 7, 6));
    await send(usbEvent("remove", "403", 5, 4));
    await until(() => d.lxc("exec", c, "--", "ls", "/dev/bus/usb/001/005").code !== 0);
    expect(d.lxc("exec", c, "--", "ls", "/dev/bus/usb/001/007").code).not.toBe(0);
    expect(hostNodes(c)).toEqual(["unix.u.dev-bus-usb-001-002"]);
    if (v1) expect(devicesList(c)).not.toContain("c 189:4 rwm");

    // The daemon dies and comes back: the device listens again.
    await d.kill9();
    await d.restart();
    await send(usbEvent("add", "403", 5, 4));
    await until(() => inside(c, "/dev/bus/usb/001/005") === "character special file bd:4 660");

    ok(d.lxc("config", "device", "remove", c, "u"));
    expect(d.lxc("exec", c, "--", "ls", "/dev/bus/usb/001/002").code).not.toBe(0);
    expect(d.lxc("exec", c, "--", "ls", "/dev/bus/usb/001/005").code).not.toBe(0);
    expect(hostNodes(c)).toEqual([]);
    // Events for a removed device change nothing.
    await send(usbEvent("add", "403", 5, 4));
    await new Promise((r) => setTimeout(r, 500));
    expect(d.lxc("exec", c, "--", "ls", "/dev/bus/usb/001/005").code).not.toBe(0);

    // At start: the device's nodes are there; at stop they go.
    ok(d.lxc("stop", "-f", c));
    ok(d.lxc("config", "device", "add", c, "u", "usb", "productid=6001", "mode=0600"));
    ok(d.lxc("start", c));
    expect(inside(c, "/dev/bus/usb/001/002")).toBe("character special file bd:1 600");
    ok(d.lxc("stop", "-f", c));
    expect(hostNodes(c)).toEqual([]);
  });
});

describe("unix-hotplug devices", () => {
  it("passes the matching node in and follows its add and remove events", async () => {
    const c = d.launch("hp");
    expect(d.lxc("config", "device", "add", c, "bad", "unix-hotplug").stderr.trim()).toBe('Error: Invalid devices: Device validation failed for "bad": Unix hotplug devices require a vendorid or a productid');
    expect(d.lxc("config", "device", "add", c, "bad", "unix-hotplug", "vendorid=1234", "required=true").stderr.trim()).toBe('Error: Failed to start device "bad": Required Unix Hotplug device not found');
    ok(d.lxc("config", "device", "add", c, "h", "unix-hotplug", "vendorid=0403", "productid=6001", "uid=1000"));
    expect(inside(c, "/dev/ttyUSB1")).toBe("character special file bc:1 620");
    expect(d.lxc("exec", c, "--", "stat", "-c", "%u", "/dev/ttyUSB1").stdout.trim()).toBe("1000");
    const devpath = "/" + ttyDir.slice("sys/".length);
    const tty = (action: string) => [`${action}@${devpath}`, `ACTION=${action}`, `DEVPATH=${devpath}`, "SUBSYSTEM=tty", "MAJOR=188", "MINOR=1", "DEVNAME=ttyUSB1", "SEQNUM=5"];
    await send(tty("remove"));
    await until(() => d.lxc("exec", c, "--", "ls", "/dev/ttyUSB1").code !== 0);
    expect(hostNodes(c)).toEqual([]);
    // The add event's ids come from the USB device above the node in sysfs.
    await send(tty("add"));
    await until(() => inside(c, "/dev/ttyUSB1") === "character special file bc:1 620");
    // A reboot from inside (liblxc restarts it in place, a new init): events reach the new one.
    const pid = () => JSON.parse(d.lxc("query", `/1.0/instances/${c}/state`).stdout).pid as number;
    const oldPid = pid();
    d.lxc("exec", c, "--", "reboot");
    await until(() => pid() > 0 && pid() !== oldPid, 30_000);
    await until(() => d.lxc("exec", c, "--", "true").code === 0, 30_000);
    await send(tty("remove"));
    await send(tty("add"));
    await until(() => inside(c, "/dev/ttyUSB1") === "character special file bc:1 620");
    ok(d.lxc("config", "device", "remove", c, "h"));
    expect(d.lxc("exec", c, "--", "ls", "/dev/ttyUSB1").code).not.toBe(0);
    expect(hostNodes(c)).toEqual([]);
  });
});

describe("gpu devices with an NVIDIA card", () => {
  it("passes the DRM node, /dev/nvidia0 and the non-card nodes in, hot-plugged and at start", async () => {
    const c = d.launch("gpu");
    ok(d.lxc("config", "device", "add", c, "g", "gpu", "vendorid=10de"));
    const nodes = () => ["/dev/dri/card1", "/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"].map((p) => inside(c, p));
    const want = ["character special file e2:1 660", "character special file c3:0 666", "character special file c3:ff 666", "character special file 1ff:0 666"];
    expect(nodes()).toEqual(want);
    ok(d.lxc("restart", "-f", c));
    expect(nodes()).toEqual(want);
    ok(d.lxc("config", "device", "remove", c, "g"));
    expect(d.lxc("exec", c, "--", "ls", "/dev/nvidia0").code).not.toBe(0);
    expect(hostNodes(c)).toEqual([]);
    expect(d.lxc("config", "device", "add", c, "g", "gpu", "vendorid=1002").stderr.trim()).toBe('Error: Failed to start device "g": Failed to detect requested GPU device');
  });
});

describe("gpu mig devices", () => {
  it("validates with LXD's messages; a start needs nvidia.runtime; no hot-plug", () => {
    const c = d.launch("mig", { init: true });
    const add = (...kv: string[]) => d.lxc("config", "device", "add", c, "m", "gpu", "gputype=mig", ...kv).stderr.trim();
    const invalid = (msg: string) => `Error: Invalid devices: Device validation failed for "m": ${msg}`;
    expect(add()).toBe(invalid('Either "mig.uuid" or both "mig.gi" and "mig.ci" must be set'));
    expect(add("mig.ci=0")).toBe(invalid('Either "mig.uuid" or both "mig.gi" and "mig.ci" must be set'));
    expect(add("mig.uuid=MIG-6f3c7e1a-4e6b-2a7d-9b1e-0c5d8f2a7b10", "mig.gi=1")).toBe(invalid('Cannot use "mig.gi" when "mig.uuid" is set'));
    expect(add("mig.uuid=MIG-1234")).toBe(invalid('Invalid value for device option "mig.uuid": Invalid UUID'));
    expect(add("mig.gi=300", "mig.ci=0")).toBe(invalid('Invalid value for device option "mig.gi": Invalid value for an integer "300". Must be between 0 and 255'));
    expect(add("pci=01:00.0", "productid=1eb8", "mig.gi=1", "mig.ci=0")).toBe(invalid('Cannot use "productid" when when "pci" is set'));
    expect(add("uid=1000", "mig.gi=1", "mig.ci=0")).toBe(invalid('Invalid device option "uid"'));
    expect(d.lxc("config", "device", "get", c, "m", "gputype").code).not.toBe(0);

    // Valid, on a stopped container; the start refuses it without nvidia.runtime, nothing left running.
    ok(d.lxc("config", "device", "add", c, "m", "gpu", "gputype=mig", "pci=01:00.0", "mig.gi=1", "mig.ci=0"));
    const r = d.lxc("start", c);
    expect(r.code).not.toBe(0);
    expect(r.stderr.split("\n")[0]).toBe('Error: Failed to start device "m": nvidia.runtime must be set to true for MIG GPUs to work');
    expect(JSON.parse(d.lxc("query", `/1.0/instances/${c}/state`).stdout).status).toBe("Stopped");

    // Running: LXD cannot start or stop a MIG device then (not hot-pluggable).
    ok(d.lxc("config", "device", "remove", c, "m"));
    ok(d.lxc("start", c));
    // Real LXD 5.0.2's answers, byte for byte (validation above too).
    expect(add("pci=01:00.0", "mig.gi=1", "mig.ci=0")).toBe('Error: Failed to add device "m": Device cannot be added when instance is running');
    expect(d.lxc("config", "device", "get", c, "m", "gputype").code).not.toBe(0);
  });
});

const vtpm = existsSync("/dev/vtpmx") || existsSync("/sys/module/tpm_vtpm_proxy");
describe("tpm devices", () => {
  it("validates path and pathrm", () => {
    const c = d.launch("tpmv", { init: true });
    expect(d.lxc("config", "device", "add", c, "t", "tpm", "path=/dev/tpm0").stderr.trim()).toBe('Error: Invalid devices: Device validation failed for "t": Failed to validate config: Invalid value for device option "pathrm": Required value');
  });

  it.skipIf(vtpm)("refuses to start where the kernel has no tpm_vtpm_proxy, with LXD's error (kernel has no tpm_vtpm_proxy)", () => {
    const c = d.launch("tpmk");
    const r = d.lxc("config", "device", "add", c, "t", "tpm", "path=/dev/tpm0", "pathrm=/dev/tpmrm0");
    // As real LXD 5.0.2 answers on this kernel.
    expect(r.stderr.trim()).toMatch(/^Error: Failed to start device "t": Failed to validate environment: Failed to load kernel module "tpm_vtpm_proxy": Failed to run: modprobe -b tpm_vtpm_proxy: exit status 1 \(modprobe: FATAL: Module tpm_vtpm_proxy not found in directory \/lib\/modules\/[^)]+\)$/);
    expect(existsSync(join(d.dir, "devices", c, "t.pid"))).toBe(false);
    expect(d.lxc("exec", c, "--", "ls", "/dev/tpm0").code).not.toBe(0);
  });

  it.skipIf(!vtpm)("runs swtpm and passes its /dev/tpmN and /dev/tpmrmN in (needs tpm_vtpm_proxy)", () => {
    const c = d.launch("tpm");
    ok(d.lxc("config", "device", "add", c, "t", "tpm", "path=/dev/tpm0", "pathrm=/dev/tpmrm0"));
    expect(inside(c, "/dev/tpm0")).toMatch(/^character special file /);
    expect(inside(c, "/dev/tpmrm0")).toMatch(/^character special file /);
    const pid = Number(readFileSync(join(d.dir, "devices", c, "t.pid"), "utf8"));
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toContain("swtpm");
    ok(d.lxc("stop", "-f", c));
    expect(existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(" Z ")).toBe(false);
  });
});

describe("the kernel uevent listener", () => {
  it("receives real kernel uevents through nodelxd-uevent", async () => {
    const source = new NetlinkUevents(pino({ level: "silent" }));
    const got: Uevent[] = [];
    await source.start((e) => got.push(e));
    try {
      // A synthetic uevent on the loopback interface (the kernel sends it to every listener).
      writeFileSync("/sys/class/net/lo/uevent", "change");
      await until(() => got.some((e) => e.props.SUBSYSTEM === "net" && e.props.INTERFACE === "lo" && e.props.ACTION === "change"), 5000);
      expect(got.find((e) => e.props.INTERFACE === "lo")!.parts[0]).toBe("change@/devices/virtual/net/lo");
    } finally {
      await source.stop();
    }
  });
});
