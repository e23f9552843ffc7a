// unix-char / unix-block devices, as LXD 5.0.2: a device node made on the host under
// devices/<instance>/unix.<device>.<path> (mode, major/minor and owner from the config or the
// source, owner shifted into the container's id map), bind-mounted at `path` (containers can't
// mknod in a user namespace), plus a device cgroup rule. A second device at a path already in
// use gets its node but no mount, as LXD. `required=false` devices follow their source: the
// node appears in the running container when the source is created and goes when it is removed.
import { chownSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { isAbsolute, join, normalize } from "node:path";
import { parseBool } from "../config/validators.js";
import { run } from "../os/exec.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "./types.js";

const KNOWN = new Set(["type", "source", "path", "major", "minor", "uid", "gid", "mode", "required"]);
const DEFAULT_MODE = 0o660;

/** LXD's filesystem.PathNameEncode: "-" → "--", "/" → "-". */
export const pathNameEncode = (s: string) => s.replace(/-/g, "--").replace(/\//g, "-");

/** LXD's filesystem.PathNameDecode: "-" → "/", then "//" → "-". */
export const pathNameDecode = (s: string) => s.replace(/-/g, "/").replace(/\/\//g, "-");

/**
 * Host-side node file name: <prefix>.<device>.<path without leading "/">, encoded. The prefix is
 * "unix" for unix-char/unix-block and the hardware devices, "infiniband.unix" for infiniband
 * (LXD's IBDevPrefix).
 */
export function unixNodeName(device: string, destPath: string, prefix = "unix"): string {
  return pathNameEncode(`${prefix}.${device}.${destPath.replace(/^\/+/, "")}`);
}

/** Host node files of unix nodes (of any device) in an instance's devices directory. */
const isNodeFile = (f: string) => f.startsWith("unix.") || f.startsWith("infiniband.unix.");

/** Watches of required=false devices of running instances (one poll for all, no spawns). */
const watches = new Map<string, { source: string; present: boolean; onChange: (present: boolean) => Promise<void> }>();
let watchTimer: NodeJS.Timeout | undefined;

function watch(key: string, source: string, present: boolean, onChange: (present: boolean) => Promise<void>): void {
  watches.set(key, { source, present, onChange });
  if (watchTimer) return;
  let busy = false;
  watchTimer = setInterval(() => {
    if (busy) return;
    busy = true;
    const changes: Promise<void>[] = [];
    for (const w of watches.values()) {
      const now = existsSync(w.source);
      if (now === w.present) continue;
      w.present = now;
      changes.push(w.onChange(now).catch(() => {}));
    }
    void Promise.all(changes).finally(() => (busy = false));
    if (watches.size === 0 && watchTimer) {
      clearInterval(watchTimer);
      watchTimer = undefined;
    }
  }, 100);
  watchTimer.unref();
}

export class UnixDevice implements Device {
  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
    private readonly kind: "c" | "b",
    private readonly prefix = "unix",
  ) {}

  private get source(): string {
    return normalize(this.config.source || this.config.path);
  }

  private get target(): string {
    return normalize(this.config.path || this.config.source);
  }

  private get required(): boolean {
    return this.config.required === undefined || this.config.required === "" || parseBool(this.config.required);
  }

  private get nodeFile(): string {
    return join(this.ctx.devicesDir, unixNodeName(this.name, this.target, this.prefix));
  }

  private get watchKey(): string {
    return `${this.ctx.project}/${this.ctx.instance}/${this.name}`;
  }

  validate(): void {
    for (const k of Object.keys(this.config)) if (!KNOWN.has(k) && !k.startsWith("user.")) throw new Error(`Invalid device option "${k}"`);
    if (!this.config.source && !this.config.path) throw new Error(`Unix device entry is missing the required "source" or "path" property`);
    if (!isAbsolute(this.source) || !isAbsolute(this.target)) throw new Error("Unix device paths must be absolute");
    for (const k of ["major", "minor", "uid", "gid"]) {
      if (this.config[k] && !/^[0-9]+$/.test(this.config[k])) throw new Error(`Invalid value for device option "${k}": Invalid value for a UNIX ID`);
    }
    if (this.config.mode && !/^[0-7]+$/.test(this.config.mode)) throw new Error(`Invalid value for device option "mode": Invalid value for an octal file mode`);
    const numbered = !!this.config.major && !!this.config.minor;
    if (this.required && !numbered) {
      if (!existsSync(this.source)) throw new Error(`The required device path doesn't exist and the major and minor settings are not specified`);
      const st = statSync(this.source);
      if (this.kind === "c" ? !st.isCharacterDevice() : !st.isBlockDevice()) throw new Error(`Path "${this.source}" is not a ${this.kind === "c" ? "character" : "block"} device`);
    }
  }

  /** The host id an id in the container maps to (unmapped ids stay as they are for privileged). */
  private hostId(id: number, uid: boolean): number {
    if (this.ctx.idmap.length === 0) return id;
    for (const e of this.ctx.idmap) {
      if ((uid ? e.Isuid : e.Isgid) && id >= e.Nsid && id < e.Nsid + e.Maprange) return e.Hostid + (id - e.Nsid);
    }
    return uid ? this.ctx.hostRootId.uid : this.ctx.hostRootId.gid;
  }

  /** Make the host-side node; undefined when the source is missing (required=false). */
  private async createNode(): Promise<{ rule: string } | undefined> {
    let major: number;
    let minor: number;
    if (this.config.major && this.config.minor) {
      major = Number(this.config.major);
      minor = Number(this.config.minor);
    } else if (this.config.major || this.config.minor) {
      throw new Error(`Both major and minor must be supplied for device: ${this.source}`);
    } else {
      if (!existsSync(this.source)) return undefined;
      const st = statSync(this.source);
      if (!st.isCharacterDevice() && !st.isBlockDevice()) throw new Error(`Failed to get device attributes for ${this.source}: Not a device`);
      major = Math.floor(st.rdev / 256) & 0xfff;
      minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
    }
    const mode = this.config.mode ? parseInt(this.config.mode, 8) : DEFAULT_MODE;
    mkdirSync(this.ctx.devicesDir, { recursive: true, mode: 0o711 });
    rmSync(this.nodeFile, { force: true });
    await run("mknod", ["-m", (mode & 0o7777).toString(8), this.nodeFile, this.kind, String(major), String(minor)]);
    chownSync(this.nodeFile, this.hostId(Number(this.config.uid || 0), true), this.hostId(Number(this.config.gid || 0), false));
    return { rule: `${this.kind} ${major}:${minor} rwm` };
  }

  /** Another unix device of this instance already has a node for the same path. */
  private dupe(): boolean {
    const suffix = pathNameEncode(this.target.replace(/^\/+/, ""));
    const own = unixNodeName(this.name, this.target, this.prefix);
    try {
      return readdirSync(this.ctx.devicesDir).some((f) => f !== own && isNodeFile(f) && f.slice(f.lastIndexOf(".") + 1) === suffix);
    } catch {
      return false;
    }
  }

  async start(): Promise<RunConfig> {
    const dupe = this.dupe();
    const node = await this.createNode();
    const postStart = this.required ? undefined : async (pid: number) => this.watchSource(pid, !!node);
    if (!node || dupe) return { postStart };
    const dst = this.target.replace(/^\/+/, "").replace(/ /g, "\\040");
    return {
      lxc: [
        ["lxc.mount.entry", `${this.nodeFile.replace(/ /g, "\\040")} ${dst} none bind,create=file 0 0`],
        ["lxc.cgroup.devices.allow", node.rule],
      ],
      postStart,
    };
  }

  async stop(): Promise<void> {
    watches.delete(this.watchKey);
    rmSync(this.nodeFile, { force: true });
  }

  async attach(pid: number): Promise<void> {
    const present = await this.plug(pid);
    if (!this.required) this.watchSource(pid, present);
  }

  async adopt(pid: number): Promise<void> {
    if (!this.required) this.watchSource(pid, existsSync(this.nodeFile));
  }

  async detach(pid: number): Promise<void> {
    watches.delete(this.watchKey);
    await this.unplug(pid);
  }

  private watchSource(pid: number, present: boolean): void {
    watch(this.watchKey, this.source, present, async (now) => {
      if (now) await this.plug(pid);
      else await this.unplug(pid);
    });
  }

  /** Make the node and mount it into the running container; false when the source is missing. */
  private async plug(pid: number): Promise<boolean> {
    const dupe = this.dupe();
    const node = await this.createNode();
    if (!node) return false;
    if (dupe) return true;
    const hotplug = this.ctx.hotplug;
    if (!hotplug) throw new Error("Hot-plugging devices is not supported here");
    hotplug.allowDevice?.(pid, node.rule);
    await hotplug.mount(pid, this.nodeFile, this.target, { readonly: false, recursive: false, isDir: false });
    return true;
  }

  private async unplug(pid: number): Promise<void> {
    let rule: string | undefined;
    try {
      const st = statSync(this.nodeFile);
      if (st.isCharacterDevice() || st.isBlockDevice()) rule = `${st.isCharacterDevice() ? "c" : "b"} ${Math.floor(st.rdev / 256) & 0xfff}:${(st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)} rwm`;
    } catch {
      /* no node */
    }
    const had = existsSync(this.nodeFile);
    rmSync(this.nodeFile, { force: true });
    // Another device still provides this path: leave the mount (and the cgroup rule) alone.
    if (!had || this.dupe()) return;
    await this.ctx.hotplug?.unmount(pid, this.target, { remove: true });
    // As LXD's unixDeviceRemove: the device is denied again.
    if (rule) this.ctx.hotplug?.denyDevice?.(pid, rule);
  }
}
