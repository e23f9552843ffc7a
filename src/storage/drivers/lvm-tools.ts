// The lvm2 command line as the lvm driver uses it: every call goes through `lvm <command>`
// with a --config that (for pools on a loop file or a device) limits scanning to the pool's
// own physical volume, so the driver never reads or touches the host's other disks.
//
// Without device-mapper in the kernel, lvm2 refuses every command that would load a table
// ("striped: Required device-mapper target(s) not detected in your kernel") even when it only
// edits metadata. Metadata-only commands then run with `global/activation=0` (lvm2's own
// "no device-mapper interaction" mode, as --driverloaded n): VG and linear-LV create, rename,
// resize, tag and remove work. Commands that need the kernel (activation, thin pools and
// snapshots) always run normally so the kernel's refusal is what the client sees.
import { readFileSync } from "node:fs";
import { run } from "../../os/exec.js";

/**
 * The driver's version, as upstream: the tool must exist; the version is its "... version:"
 * lines joined, e.g. "2.03.16(2) (2022-05-18) / 1.02.185 (2022-05-18)" (a third, the kernel
 * driver's, only with device-mapper).
 */
export async function lvmVersion(): Promise<string | undefined> {
  const r = await run("lvm", ["version"], { reject: false, env: { LVM_SUPPRESS_FD_WARNINGS: "1" } }).catch(() => undefined);
  if (!r || r.exitCode === -1) return undefined;
  const versions = r.stdout
    .split("\n")
    .filter((l) => l.includes("version:"))
    .map((l) => l.slice(l.indexOf(":") + 1).trim());
  return versions.length ? versions.join(" / ") : undefined;
}

/** Whether this kernel has device-mapper (its misc device is registered). */
export function hasDeviceMapper(): boolean {
  try {
    return /\bdevice-mapper\b/.test(readFileSync("/proc/misc", "utf8"));
  } catch {
    return false;
  }
}

/** Names lvm2 accepts for VGs and LVs (its own rule: [a-zA-Z0-9+_.-], not starting with '-'). */
export function assertLvmName(kind: string, name: string): void {
  if (!/^[a-zA-Z0-9+_.][a-zA-Z0-9+_.-]*$/.test(name) || name === "." || name === ".." || name.length > 127) {
    throw new Error(`Invalid ${kind} name "${name}"`);
  }
}

export class LvmError extends Error {
  constructor(
    readonly args: string[],
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    // LXD's shared.RunCommand error text.
    super(`Failed to run: ${args.join(" ")}: exit status ${exitCode} (${stderr.trim()})`);
  }
}

export interface LvmRunOpts {
  signal?: AbortSignal;
  /** The command needs the kernel (activation, thin pool, snapshot): never run it with activation disabled. */
  kernel?: boolean;
}

export class Lvm {
  /**
   * @param devices the physical volumes to scan (pools on a loop file or device); undefined
   *   uses the host's own lvm.conf (a pool on an existing volume group).
   */
  constructor(
    private readonly devices: () => Promise<string[] | undefined>,
    readonly deviceMapper: boolean = hasDeviceMapper(),
  ) {}

  private async config(kernel: boolean): Promise<string> {
    const parts: string[] = [];
    const devs = await this.devices();
    if (devs) {
      const accept = devs.map((d) => `"a|^${d.replace(/[|"\\]/g, "")}$|"`).join(",");
      const filter = `[${accept}${accept ? "," : ""}"r|.*|"]`;
      parts.push(`devices { filter=${filter} global_filter=${filter} use_devicesfile=0 }`);
    }
    if (!this.deviceMapper && !kernel) parts.push("global { activation=0 }");
    return parts.join(" ");
  }

  async run(command: string, args: string[], opts: LvmRunOpts = {}): Promise<string> {
    const config = await this.config(!!opts.kernel);
    const argv = [command, ...(config ? ["--config", config] : []), ...args];
    const r = await run("lvm", argv, { signal: opts.signal, reject: false, env: { LVM_SUPPRESS_FD_WARNINGS: "1" } });
    // The warnings of the activation=0 mode are ours, not the command's answer.
    const stderr = r.stderr
      .split("\n")
      .filter((l) => !/WARNING: (Activation disabled|Skipping zeroing and wip)/.test(l))
      .join("\n");
    if (r.exitCode !== 0) throw new LvmError([command, ...args], r.exitCode, stderr);
    return r.stdout;
  }

  /** A report command (vgs/lvs/pvs) as rows of fields; undefined when the object doesn't exist (exit 5). */
  async report(command: "vgs" | "lvs" | "pvs", fields: string[], target: string[] = [], extra: string[] = []): Promise<string[][] | undefined> {
    try {
      const out = await this.run(command, ["--noheadings", "--units", "b", "--nosuffix", "--separator", ",", "-o", fields.join(","), ...extra, ...target]);
      return out
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean)
        .map((l) => l.split(",").map((f) => f.trim()));
    } catch (e) {
      if (e instanceof LvmError && e.exitCode === 5) return undefined;
      throw e;
    }
  }

  async vgExists(vg: string): Promise<{ tags: string[] } | undefined> {
    const rows = await this.report("vgs", ["vg_name", "vg_tags"], [vg]);
    if (!rows?.length) return undefined;
    return { tags: rows[0].slice(1).join(",").split(",").filter(Boolean) };
  }

  async lv(vg: string, lv: string): Promise<{ size: number; tags: string[]; attr: string } | undefined> {
    const rows = await this.report("lvs", ["lv_size", "lv_attr", "lv_tags"], [`${vg}/${lv}`]);
    if (!rows?.length) return undefined;
    return { size: Number(rows[0][0]), attr: rows[0][1], tags: rows[0].slice(2).join(",").split(",").filter(Boolean) };
  }

  /** Every LV of the VG (thin volumes included), with its pool for thin ones. */
  async lvs(vg: string): Promise<{ name: string; pool: string }[]> {
    const rows = (await this.report("lvs", ["lv_name", "pool_lv"], [vg])) ?? [];
    return rows.map((r) => ({ name: r[0], pool: r[1] ?? "" }));
  }

  async extentSize(vg: string): Promise<number> {
    const rows = await this.report("vgs", ["vg_extent_size"], [vg]);
    if (!rows?.length) throw new Error(`Volume group "${vg}" not found`);
    return Number(rows[0][0]);
  }
}
