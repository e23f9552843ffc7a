// Host hardware as LXD 5.0.2 finds it: GPUs (with NVIDIA's /proc/driver/nvidia cards), USB
// devices and the device nodes below them, read from sysfs, /dev and /proc. Everything is read
// under `HardwareRoots` (the host's /sys, /dev and /proc; a test points them at a tree it builds).
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** Where hardware is looked up: sysfs, /dev and /proc. */
export interface HardwareRoots {
  sys: string;
  dev: string;
  proc: string;
}

const HOST: HardwareRoots = { sys: "/sys", dev: "/dev", proc: "/proc" };
let configured: HardwareRoots = HOST;

/** The roots devices read hardware from (the host's unless the daemon was pointed elsewhere). */
export const hardwareRoots = (): HardwareRoots => configured;

/** Point hardware lookups at another tree (the daemon's NODELXD_HARDWARE_ROOT, for tests). */
export function setHardwareRoots(roots: HardwareRoots | undefined): void {
  configured = roots ?? HOST;
}

export const readTrim = (f: string): string => {
  try {
    return readFileSync(f, "utf8").trim();
  } catch {
    return "";
  }
};
export const listDir = (d: string): string[] => {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
};

/** "major:minor" → numbers; undefined when malformed. */
export function parseDevNum(dev: string): { major: number; minor: number } | undefined {
  const m = /^(\d+):(\d+)$/.exec(dev);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

/** A DRM node of a card: its /dev/dri name and "major:minor". */
export interface DrmNode {
  name: string;
  dev: string;
}

export interface GpuCard {
  pci: string;
  vendorid: string;
  productid: string;
  /** The kernel driver bound to the card ("nvidia", "i915", ...). */
  driver: string;
  ids: string[];
  drm: DrmNode[];
  /** NVIDIA's own card node (/dev/nvidiaN, 195:N) and UUID, for cards the nvidia driver drives. */
  nvidia?: NvidiaCardInfo;
}

/** What LXD knows of a card the nvidia driver drives (api.ResourcesGPUCardNvidia). */
export interface NvidiaCardInfo {
  cardName: string;
  cardDevice: string;
  /** The GPU's UUID ("GPU-..."): only nvidia-container-cli tells it, /proc's information does not (as LXD reads it). */
  uuid: string;
  model?: string;
  brand?: string;
  /** nvidia-container-cli only. */
  nvrmVersion?: string;
  cudaVersion?: string;
  architecture?: string;
}

/** One /proc/driver/nvidia/gpus/<pci>/information file as LXD's loadNvidiaProc reads it: Model (brand: its first word), Device Minor. */
export function parseNvidiaProcInformation(text: string): NvidiaCardInfo {
  const card: NvidiaCardInfo = { cardName: "", cardDevice: "", uuid: "", model: "", brand: "" };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const i = line.indexOf(":");
    if (i < 0) continue;
    const key = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    if (key === "Model") Object.assign(card, { model: value, brand: value.split(" ")[0] });
    if (key === "Device Minor") Object.assign(card, { cardName: `nvidia${value}`, cardDevice: `195:${value}` });
  }
  return card;
}

/** LXD's loadNvidiaProc: /proc/driver/nvidia/gpus/<pci>/information, "Device Minor: N" → nvidiaN, 195:N (no UUID). */
export function nvidiaProcCards(procRoot: string): Map<string, NvidiaCardInfo> {
  const out = new Map<string, NvidiaCardInfo>();
  const base = join(procRoot, "driver/nvidia/gpus");
  for (const entry of listDir(base)) {
    if (!existsSync(join(base, entry, "information"))) continue;
    out.set(entry, parseNvidiaProcInformation(readTrim(join(base, entry, "information"))));
  }
  return out;
}

/** One CSV line's fields (encoding/csv's quoting: "..." with "" for a quote). */
function csvFields(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = "";
    if (line[i] === '"') {
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) return out.concat(field + line.slice(i));
        field += line.slice(i, q);
        if (line[q + 1] === '"') {
          field += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      const c = line.indexOf(",", i);
      field += c < 0 ? line.slice(i) : line.slice(i, c);
      out.push(field);
      if (c < 0) return out;
      i = c + 1;
    } else {
      const c = line.indexOf(",", i);
      out.push(c < 0 ? line.slice(i) : line.slice(i, c));
      if (c < 0) return out;
      i = c + 1;
    }
  }
}

/**
 * LXD's loadNvidiaContainer: `nvidia-container-cli info --csv` — the versions on the 2nd
 * record, one card per record from the 4th (blank lines are no records): "Device Index,
 * Device Minor,Model,Brand,GPU UUID,Bus Location,Architecture", keyed by bus location.
 */
export function parseNvidiaContainerInfo(csv: string): Map<string, NvidiaCardInfo> {
  const out = new Map<string, NvidiaCardInfo>();
  const records = csv.split(/\r?\n/).filter((l) => l !== "").map(csvFields);
  const [nvrmVersion, cudaVersion] = records[1]?.length >= 2 ? records[1] : ["", ""];
  records.forEach((r, i) => {
    if (i < 3 || r.length < 7) return;
    out.set(r[5], { cardName: `nvidia${r[1]}`, cardDevice: `195:${r[1]}`, uuid: r[4], model: r[2], brand: r[3], nvrmVersion, cudaVersion, architecture: r[6] });
  });
  return out;
}

/** LXD's mig capability file of a GPU instance's compute instance: capabilities/gpu<minor>/mig/gi<gi>/ci<ci>/access. */
export const migAccessPath = (procRoot: string, gpuMinor: string, gi: string, ci: string) => join(procRoot, "driver/nvidia/capabilities", `gpu${gpuMinor}`, "mig", `gi${gi}`, `ci${ci}`, "access");

/**
 * PCI display devices (class 0x03xxxx) under sysfs: address, ids, driver, DRM card ids and
 * nodes, NVIDIA card. `nvidia` is what nvidia-container-cli said (LXD asks it first); without
 * it, /proc's cards.
 */
export function findGpus(roots: HardwareRoots | string, nvidiaInfo?: Map<string, NvidiaCardInfo>): GpuCard[] {
  const r = typeof roots === "string" ? { ...HOST, sys: roots } : roots;
  const base = join(r.sys, "bus/pci/devices");
  const nvidia = nvidiaInfo ?? nvidiaProcCards(r.proc);
  const out: GpuCard[] = [];
  for (const addr of listDir(base)) {
    const dir = join(base, addr);
    if (!readTrim(join(dir, "class")).startsWith("0x03")) continue;
    const entries = listDir(join(dir, "drm"));
    const ids = entries.filter((n) => /^card\d+$/.test(n)).map((n) => n.slice(4));
    // LXD's resources.GetGPU: the card, render and control nodes, each with its sysfs "dev".
    const drm = entries.filter((n) => /^(card|renderD|controlD)\d+$/.test(n)).map((name) => ({ name, dev: readTrim(join(dir, "drm", name, "dev")) }));
    let driver = "";
    try {
      driver = basename(readlinkSync(join(dir, "driver")));
    } catch {
      /* no driver bound */
    }
    const card: GpuCard = { pci: addr, vendorid: readTrim(join(dir, "vendor")).replace(/^0x/, ""), productid: readTrim(join(dir, "device")).replace(/^0x/, ""), driver, ids, drm };
    if (driver === "nvidia") {
      const nv = nvidia.get(addr) ?? nvidia.get(`0000${addr}`);
      if (nv) card.nvidia = nv;
    }
    out.push(card);
  }
  return out;
}

/** LXD's getNvidiaNonCardDevices: /dev/nvidia* character nodes other than the cards (nvidiactl, nvidia-uvm, ...). */
export function nvidiaNonCardNodes(devRoot: string, stat: (p: string) => { major: number; minor: number } | undefined): { path: string; major: number; minor: number }[] {
  const out = [];
  for (const name of listDir(devRoot).sort()) {
    if (!name.startsWith("nvidia") || /^nvidia[0-9]+/.test(name)) continue;
    const st = stat(join(devRoot, name));
    if (st) out.push({ path: `/dev/${name}`, ...st });
  }
  return out;
}

/** A USB device as LXD's loadUsb reads it (all five attributes present). */
export interface UsbInfo {
  vendorid: string;
  productid: string;
  busnum: number;
  devnum: number;
  dev: string;
}

/** USB devices under sysfs: vendor, product, bus and device numbers, major:minor (LXD skips incomplete ones). */
export function findUsb(roots: HardwareRoots | string): UsbInfo[] {
  const sys = typeof roots === "string" ? roots : roots.sys;
  const base = join(sys, "bus/usb/devices");
  const out: UsbInfo[] = [];
  for (const name of listDir(base).sort()) {
    const dir = join(base, name);
    const values = ["idVendor", "idProduct", "busnum", "devnum", "dev"].map((k) => readTrim(join(dir, k)));
    if (values.some((v) => v === "") || !/^\d+$/.test(values[2]) || !/^\d+$/.test(values[3]) || !parseDevNum(values[4])) continue;
    out.push({ vendorid: values[0], productid: values[1], busnum: Number(values[2]), devnum: Number(values[3]), dev: values[4] });
  }
  return out;
}

/** The node path LXD gives a USB device: /dev/bus/usb/BBB/DDD. */
export const usbNodePath = (busnum: number, devnum: number) => `/dev/bus/usb/${String(busnum).padStart(3, "0")}/${String(devnum).padStart(3, "0")}`;

/**
 * The USB vendor and product a device belongs to: the nearest ancestor in sysfs with
 * idVendor/idProduct (what udev's usb_id builtin puts in ID_VENDOR_ID/ID_MODEL_ID).
 */
export function usbIdsAbove(sysRoot: string, devicePath: string): { vendor: string; product: string } | undefined {
  let dir = devicePath;
  while (dir.startsWith(sysRoot + "/") && dir !== sysRoot) {
    const vendor = readTrim(join(dir, "idVendor"));
    const product = readTrim(join(dir, "idProduct"));
    if (vendor && product) return { vendor, product };
    dir = dirname(dir);
  }
  return undefined;
}

/** A device node for unix-hotplug: char or block, its numbers and /dev path. */
export interface HotplugNode {
  subsystem: string;
  block: boolean;
  major: number;
  minor: number;
  devname: string;
  vendor: string;
  product: string;
}

/** The key=value lines of a sysfs uevent file. */
export function ueventFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readTrim(path).split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/**
 * Device nodes below USB devices, as LXD's unix-hotplug enumerates udev (ID_VENDOR_ID and
 * ID_MODEL_ID set, non-zero numbers, a node name, subsystem not usb*): every /sys/dev/char and
 * /sys/dev/block entry whose device sits below a USB device. Without a udev daemon here, the ids
 * are read from that USB device as udev's usb_id builtin does.
 */
export function findHotplugNodes(roots: HardwareRoots): HotplugNode[] {
  const out: HotplugNode[] = [];
  for (const kind of ["char", "block"] as const) {
    const base = join(roots.sys, "dev", kind);
    for (const entry of listDir(base).sort()) {
      const num = parseDevNum(entry);
      if (!num || num.major === 0 || num.minor === 0) continue;
      let dir: string;
      try {
        dir = realpathSync(join(base, entry));
      } catch {
        continue;
      }
      let subsystem = "";
      try {
        subsystem = basename(readlinkSync(join(dir, "subsystem")));
      } catch {
        continue;
      }
      if (subsystem.startsWith("usb")) continue;
      const props = ueventFile(join(dir, "uevent"));
      if (!props.DEVNAME || !saneDevname(props.DEVNAME)) continue;
      const ids = usbIdsAbove(realpathSync(roots.sys), dir);
      if (!ids) continue;
      out.push({ subsystem, block: kind === "block", ...num, devname: devnodePath(props.DEVNAME), vendor: ids.vendor, product: ids.product });
    }
  }
  return out;
}

/** A uevent's DEVNAME as a /dev path (the kernel's are relative, udev's absolute). */
export const devnodePath = (devname: string) => (devname.startsWith("/") ? devname : `/dev/${devname}`);

/** A DEVNAME that names a node below /dev (no "..", no control characters): what may become a path in a container. */
// eslint-disable-next-line no-control-regex
export const saneDevname = (devname: string) => devname !== "" && !/[\x00-\x1f\x7f]/.test(devname) && !devname.split("/").includes("..") && devnodePath(devname).startsWith("/dev/");

/** Whether a sysfs path exists under the roots. */
export const sysExists = (roots: HardwareRoots, rel: string) => existsSync(join(roots.sys, rel));
