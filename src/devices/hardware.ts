// Devices backed by host hardware: gpu, usb, unix-hotplug, tpm, pci, infiniband. Their config is
// validated with LXD 5.0.2's rules and messages. Matching hardware is looked up in sysfs (under
// `sysfsRoot`, so tests can build a tree); when none is there, starting fails with LXD's error.
// What a match needs beyond that (GPU and USB nodes, hotplug through udev, swtpm, VF setup) is
// not implemented: such a start is refused with a clear message rather than half done.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseBool } from "../config/validators.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "./types.js";

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

/** PCI display devices (class 0x03xxxx) under sysfs: address, vendor, product, DRM card ids. */
export function findGpus(sysfsRoot: string): { pci: string; vendorid: string; productid: string; ids: string[] }[] {
  const base = join(sysfsRoot, "bus/pci/devices");
  const out = [];
  for (const addr of list(base)) {
    const dir = join(base, addr);
    if (!read(join(dir, "class")).startsWith("0x03")) continue;
    const ids = list(join(dir, "drm"))
      .filter((n) => /^card\d+$/.test(n))
      .map((n) => n.slice(4));
    out.push({ pci: addr, vendorid: read(join(dir, "vendor")).replace(/^0x/, ""), productid: read(join(dir, "device")).replace(/^0x/, ""), ids });
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

export class HardwareDevice implements Device {
  constructor(
    _ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    private readonly sysfsRoot = "/sys",
  ) {}

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
      case "gpu/physical": {
        const match = findGpus(this.sysfsRoot).filter(
          (g) =>
            (!c.vendorid || g.vendorid === c.vendorid) &&
            (!c.productid || g.productid === c.productid) &&
            (!c.pci || g.pci === normalisePci(c.pci)) &&
            (!c.id || g.ids.includes(c.id)) &&
            g.ids.length > 0,
        );
        if (match.length === 0) throw new Error("Failed to detect requested GPU device");
        throw new Error("GPU passthrough to containers is not implemented yet");
      }
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

  async stop(): Promise<void> {}

  /** Hot-plug: the same checks as a start (absent hardware gives LXD's error). */
  async attach(): Promise<void> {
    const rc = await this.start();
    if (rc.lxc?.length) throw new Error(`Device "${this.name}" cannot be added to a running instance`);
  }

  async detach(): Promise<void> {}
}
