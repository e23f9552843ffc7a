// Devices backed by host hardware: gpu, usb, unix-hotplug, tpm, pci, infiniband. Their config is
// validated with LXD 5.0.2's rules and messages. Matching hardware is looked up in sysfs (under
// `roots.sys`, /dev under `roots.dev`, so tests can build a tree); when none is there, starting
// fails with LXD's error. A physical GPU's DRM nodes (card, render, control) are passed through as
// LXD does, as unix-char devices. What other matches need (NVIDIA's own nodes, USB nodes, hotplug
// through udev, swtpm, VF setup) is not implemented: such a start is refused with a clear message
// rather than half done.
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseBool } from "../config/validators.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "./types.js";
import { pathNameEncode, UnixDevice } from "./unix.js";

type Rule = (v: string) => void;

const isDeviceID: Rule = (v) => {
  if (!/^[0-9a-f]{4}$/.test(v)) throw new Error("Invalid value, must be four lower case hex characters");
};
const isPCIAddress: Rule = (v) => {
  if (!/^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-9a-fA-F]$/.test(v)) throw new Error("Invalid PCI address");
};
const isUnixId: Rule = (v) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 0xffffffff) throw new Error("Invalid value for a UNIX ID");
};
const isOctalMode: Rule = (v) => {
  if (!/^[0-7]+$/.test(v)) throw new Error("Invalid value for an octal file mode");
};
const isBool: Rule = (v) => {
  if (!["true", "false", "yes", "no", "on", "off", "1", "0"].includes(v.toLowerCase())) throw new Error(`Invalid value for a boolean ${JSON.stringify(v)}`);
};
const isUint8: Rule = (v) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 255) throw new Error(`Invalid value for an integer ${JSON.stringify(v)}`);
};
const isNotEmpty: Rule = (v) => {
  if (v === "") throw new Error("Required value");
};
const optional =
  (r: Rule): Rule =>
  (v) => {
    if (v !== "") r(v);
  };
const any: Rule = () => {};

/** LXD's deviceConfig.Validate: every rule, then no unknown keys (user.* allowed). */
export function validateKeys(config: DeviceConfig, rules: Record<string, Rule>, extra: string[] = []): void {
  for (const [k, rule] of Object.entries(rules)) {
    try {
      rule(config[k] ?? "");
    } catch (e) {
      throw new Error(`Invalid value for device option ${JSON.stringify(k)}: ${(e as Error).message}`);
    }
  }
  for (const k of Object.keys(config)) {
    if (k === "type" || k in rules || extra.includes(k) || k.startsWith("user.")) continue;
    throw new Error(`Invalid device option ${JSON.stringify(k)}`);
  }
}

const read = (f: string) => {
  try {
    return readFileSync(f, "utf8").trim();
  } catch {
    return "";
  }
};
const list = (d: string) => {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
};

/** A DRM node of a card: its /dev/dri name and "major:minor". */
export interface DrmNode {
  name: string;
  dev: string;
}

/** PCI display devices (class 0x03xxxx) under sysfs: address, vendor, product, DRM card ids and nodes. */
export function findGpus(sysfsRoot: string): { pci: string; vendorid: string; productid: string; ids: string[]; drm: DrmNode[] }[] {
  const base = join(sysfsRoot, "bus/pci/devices");
  const out = [];
  for (const addr of list(base)) {
    const dir = join(base, addr);
    if (!read(join(dir, "class")).startsWith("0x03")) continue;
    const entries = list(join(dir, "drm"));
    const ids = entries.filter((n) => /^card\d+$/.test(n)).map((n) => n.slice(4));
    // LXD's resources.GetGPU: the card, render and control nodes, each with its sysfs "dev".
    const drm = entries.filter((n) => /^(card|renderD|controlD)\d+$/.test(n)).map((name) => ({ name, dev: read(join(dir, "drm", name, "dev")) }));
    out.push({ pci: addr, vendorid: read(join(dir, "vendor")).replace(/^0x/, ""), productid: read(join(dir, "device")).replace(/^0x/, ""), ids, drm });
  }
  return out;
}

/** USB devices under sysfs: vendor, product, bus and device numbers, major:minor. */
export function findUsb(sysfsRoot: string): { vendorid: string; productid: string; busnum: number; devnum: number; dev: string }[] {
  const base = join(sysfsRoot, "bus/usb/devices");
  const out = [];
  for (const name of list(base)) {
    const dir = join(base, name);
    const vendorid = read(join(dir, "idVendor"));
    if (!vendorid) continue;
    out.push({ vendorid, productid: read(join(dir, "idProduct")), busnum: Number(read(join(dir, "busnum"))), devnum: Number(read(join(dir, "devnum"))), dev: read(join(dir, "dev")) });
  }
  return out;
}

/** PCI address as LXD normalises it ("0000:" domain added, lower case). */
export const normalisePci = (a: string) => (a.split(":").length === 2 ? `0000:${a}` : a).toLowerCase();

/** Where hardware is looked up: sysfs and /dev (a test points them at a tree it builds). */
export interface HardwareRoots {
  sys: string;
  dev: string;
}

export class HardwareDevice implements Device {
  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    private readonly roots: HardwareRoots = { sys: "/sys", dev: "/dev" },
  ) {}

  private get sysfsRoot(): string {
    return this.roots.sys;
  }

  private get kind(): string {
    const t = this.config.type;
    if (t === "gpu") return `gpu/${this.config.gputype || "physical"}`;
    if (t === "infiniband") return `infiniband/${this.config.nictype ?? ""}`;
    return t;
  }

  validate(): void {
    const c = this.config;
    switch (this.kind) {
      case "gpu/physical": {
        validateKeys(c, { vendorid: optional(isDeviceID), productid: optional(isDeviceID), id: any, pci: optional(isPCIAddress), uid: optional(isUnixId), gid: optional(isUnixId), mode: optional(isOctalMode) }, ["gputype"]);
        if (c.pci) for (const f of ["id", "productid", "vendorid"]) if (c[f]) throw new Error(`Cannot use ${JSON.stringify(f)} when when "pci" is set`);
        if (c.id) for (const f of ["pci", "productid", "vendorid"]) if (c[f]) throw new Error(`Cannot use ${JSON.stringify(f)} when when "id" is set`);
        return;
      }
      case "gpu/mdev":
      case "gpu/mig":
      case "gpu/sriov":
        // LXD: these GPU types are for virtual machines only.
        throw new Error("Unsupported device type");
      case "usb":
        validateKeys(c, { vendorid: optional(isDeviceID), productid: optional(isDeviceID), uid: optional(isUnixId), gid: optional(isUnixId), mode: optional(isOctalMode), required: optional(isBool) });
        return;
      case "unix-hotplug":
        validateKeys(c, { vendorid: optional(isDeviceID), productid: optional(isDeviceID), uid: optional(isUnixId), gid: optional(isUnixId), mode: optional(isOctalMode), required: optional(isBool) });
        if (!c.vendorid && !c.productid) throw new Error("Unix hotplug devices require a vendorid or a productid");
        return;
      case "tpm":
        try {
          validateKeys(c, { path: isNotEmpty, pathrm: isNotEmpty });
        } catch (e) {
          throw new Error(`Failed to validate config: ${(e as Error).message}`);
        }
        return;
      case "pci":
        // LXD: PCI passthrough is for virtual machines only.
        throw new Error("Unsupported device type");
      case "infiniband/physical":
      case "infiniband/sriov":
        validateKeys(c, { parent: isNotEmpty, name: any, mtu: any, hwaddr: any }, ["nictype"]);
        return;
      default:
        throw new Error(this.config.type === "infiniband" ? `Unsupported nictype "${this.config.nictype ?? ""}"` : "Unsupported device type");
    }
  }

  async start(): Promise<RunConfig> {
    try {
      return await this.doStart();
    } catch (e) {
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  private async doStart(): Promise<RunConfig> {
    const c = this.config;
    switch (this.kind) {
      case "gpu/physical":
        return this.startGpu();
      case "usb": {
        const match = findUsb(this.sysfsRoot).filter((u) => (!c.vendorid || u.vendorid === c.vendorid) && (!c.productid || u.productid === c.productid));
        if (match.length === 0) {
          if (parseBool(c.required)) throw new Error("Required USB device not found");
          return {};
        }
        throw new Error("USB passthrough to containers is not implemented yet");
      }
      case "unix-hotplug": {
        const required = parseBool(c.required); // LXD: not required unless asked
        const match = findUsb(this.sysfsRoot).filter((u) => (!c.vendorid || u.vendorid === c.vendorid) && (!c.productid || u.productid === c.productid));
        if (match.length === 0) {
          if (required) throw new Error("Required Unix Hotplug device not found");
          return {};
        }
        throw new Error("Unix hotplug devices are not implemented yet");
      }
      case "tpm": {
        const onPath = (process.env.PATH ?? "/usr/bin:/bin").split(":").some((d) => d && existsSync(join(d, "swtpm")));
        if (!onPath) throw new Error("Failed to validate environment: Required tool 'swtpm' is missing");
        throw new Error("TPM devices (swtpm) are not implemented yet");
      }
      default: {
        const parent = c.parent ?? "";
        if (!/^[A-Za-z0-9_.:-]+$/.test(parent) || !existsSync(join(this.sysfsRoot, "class/net", parent))) throw new Error(`Parent device '${parent}' doesn't exist`);
        throw new Error("Infiniband devices are not implemented yet");
      }
    }
  }

  /**
   * LXD's gpuPhysical.startContainer: every card matching vendorid/productid/pci gives its DRM
   * nodes (those of DRM card `id` only, when set) that exist under /dev/dri, each as a unix-char
   * device named after this one (node, cgroup rule, bind mount; uid/gid/mode from the config).
   */
  private async startGpu(): Promise<RunConfig> {
    const c = this.config;
    const cards = findGpus(this.sysfsRoot).filter((g) => (!c.vendorid || g.vendorid === c.vendorid) && (!c.productid || g.productid === c.productid) && (!c.pci || g.pci === normalisePci(c.pci)));
    if (cards.length === 0) throw new Error("Failed to detect requested GPU device");
    if (cards.some((g) => g.vendorid === "10de")) throw new Error("NVIDIA GPU passthrough to containers is not implemented yet");
    const lxc: NonNullable<RunConfig["lxc"]> = [];
    for (const card of cards) {
      if (c.id && !card.ids.includes(c.id)) continue;
      for (const node of card.drm) {
        const m = /^(\d+):(\d+)$/.exec(node.dev);
        if (!m || !existsSync(join(this.roots.dev, "dri", node.name))) continue;
        const unix = new UnixDevice(this.ctx, this.name, { type: "unix-char", path: `/dev/dri/${node.name}`, major: m[1], minor: m[2], uid: c.uid ?? "", gid: c.gid ?? "", mode: c.mode ?? "" }, "c");
        lxc.push(...((await unix.start()).lxc ?? []));
      }
    }
    return { lxc };
  }

  /** A GPU's nodes go with it (found by name: the daemon may have restarted since the start). */
  async stop(): Promise<void> {
    if (this.config.type !== "gpu") return;
    const prefix = pathNameEncode(`unix.${this.name}.`);
    for (const f of list(this.ctx.devicesDir)) if (f.startsWith(prefix)) rmSync(join(this.ctx.devicesDir, f), { force: true });
  }

  /** Hot-plug: the same checks as a start (absent hardware gives LXD's error). */
  async attach(): Promise<void> {
    const rc = await this.start();
    if (rc.lxc?.length) throw new Error(`Device "${this.name}" cannot be added to a running instance`);
  }

  async detach(): Promise<void> {}
}
