// Small, failure-tolerant readers over a filesystem root (normally "/"; a fixture tree in tests).
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync } from "node:fs";
import { basename, join } from "node:path";

/** Natural order ("cpu2" before "cpu10"); one collator, since building one per comparison is slow. */
const natural = new Intl.Collator("en", { numeric: true }).compare;

export class SysFs {
  constructor(readonly root = "/") {}

  path(p: string): string {
    return join(this.root, p);
  }

  read(p: string): string | undefined {
    try {
      return readFileSync(this.path(p), "utf8");
    } catch {
      return undefined;
    }
  }

  readBuffer(p: string): Buffer | undefined {
    try {
      return readFileSync(this.path(p));
    } catch {
      return undefined;
    }
  }

  trim(p: string): string | undefined {
    return this.read(p)?.trim();
  }

  int(p: string): number | undefined {
    const t = this.trim(p);
    if (t === undefined || t === "") return undefined;
    const n = Number.parseInt(t, t.startsWith("0x") ? 16 : 10);
    return Number.isNaN(n) ? undefined : n;
  }

  exists(p: string): boolean {
    return existsSync(this.path(p));
  }

  list(p: string): string[] {
    try {
      return readdirSync(this.path(p)).sort(natural);
    } catch {
      return [];
    }
  }

  /** The last component of a symlink's target ("" if not a link). */
  linkName(p: string): string {
    try {
      return basename(readlinkSync(this.path(p)));
    } catch {
      return "";
    }
  }

  /** The resolved path relative to root ("" if it does not resolve). */
  resolve(p: string): string {
    try {
      const real = realpathSync(this.path(p));
      const root = realpathSync(this.root);
      return root === "/" ? real : real.slice(root.length) || "/";
    } catch {
      return "";
    }
  }
}

/** The PCI address in a resolved sysfs device path (the last one: the device closest to it). */
export function pciAddressOf(devicePath: string): string {
  const all = devicePath.match(/[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]/g);
  return all ? all[all.length - 1] : "";
}

/** The sysfs path of the PCI device in a resolved device path. */
export function pciDevicePath(devicePath: string): string {
  const addr = pciAddressOf(devicePath);
  return addr ? devicePath.slice(0, devicePath.lastIndexOf(addr) + addr.length) : "";
}
