// The disk device: the root disk (path=/, pool=...), host bind mounts (source → path) and block
// devices (their filesystem mounted under devices/ on the host first). Mounts become liblxc mount
// entries at start; hot-plug goes through the container's shmounts directory (a shared tmpfs
// liblxc mounts at /dev/.lxd-mounts) and a move inside.
import { existsSync, mkdirSync, realpathSync, rmdirSync, statSync } from "node:fs";
import { isAbsolute, join, normalize } from "node:path";
import { bindMount, isMountPoint, mountFs, unmountAll } from "../storage/host.js";
import { pathNameEncode } from "./unix.js";
import { parseBool } from "../config/validators.js";
import { hostRoot, type IdmapEntry } from "../instances/idmap.js";
import { shiftTree } from "../instances/lxc/shift.js";
import { canIdmapMount } from "../os/idmapped.js";
import { AddValidationError, type Device, type DeviceConfig, type DeviceContext, type RunConfig } from "./types.js";

const KNOWN = new Set(["type", "path", "source", "pool", "readonly", "optional", "recursive", "propagation", "size", "size.state", "limits.read", "limits.write", "limits.max", "required", "shift", "raw.mount.options", "ceph.cluster_name", "ceph.user_name", "boot.priority", "io.cache"]);

/** fstab field escaping for liblxc mount entries. */
const fstab = (s: string) => s.replace(/\\/g, "\\134").replace(/ /g, "\\040").replace(/\t/g, "\\011");

export class DiskDevice implements Device {
  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
  ) {}

  /**
   * The mount point in the instance, absolute: LXD takes a relative `path` as relative to the
   * instance's root (`lxc storage volume attach POOL VOL INST DIR`), and ".." cannot climb
   * above it.
   */
  private get target(): string {
    return normalize(`/${this.config.path}`);
  }

  get isRoot(): boolean {
    return this.config.path === "/" && !this.config.source;
  }

  validate(): void {
    for (const k of Object.keys(this.config)) if (!KNOWN.has(k)) throw new Error(`Invalid device option "${k}"`);
    for (const k of ["readonly", "optional", "recursive", "required", "shift"]) {
      const v = this.config[k];
      if (v !== undefined && !["true", "false", "yes", "no", "on", "off", "1", "0"].includes(v.toLowerCase())) throw new Error(`Invalid value for device option "${k}": Invalid value for a boolean "${v}"`);
    }
    if (this.isRoot) {
      if (!this.config.pool) throw new Error(`Root disk entry must have a "pool" property set`);
      return;
    }
    const { source, path } = this.config;
    if (!source || (!path && !this.config.pool)) throw new Error(`Disk entry is missing the required "source" or "path" property`);
    if (this.config.pool) {
      if (this.config.shift) throw new Error(`The "shift" property cannot be used with custom storage volumes (set "security.shifted=true" on the volume instead)`);
      if (source.includes("/")) throw new Error(`Snapshots of custom volumes can't be attached for disk "${this.name}"`);
      if (!this.ctx.ports.storage.mountCustomVolume) throw new Error(`Custom storage volumes are not supported for disk "${this.name}"`);
      this.ctx.ports.storage.assertPool(this.config.pool);
      // As LXD: block volumes only on virtual machines (none here), a filesystem volume needs a path.
      const content = this.ctx.ports.storage.customVolumeContentType?.(this.config.pool, this.ctx.project, source);
      if (!path && content === undefined) throw new Error(`Disk entry is missing the required "source" or "path" property`);
      if (content === undefined) throw new AddValidationError("Failed loading custom volume: Storage volume not found");
      if (content === "block") throw new AddValidationError("Custom block volumes cannot be used on containers");
      if (!path) throw new AddValidationError("Custom filesystem volumes require a path to be defined");
      return;
    }
    if (!isAbsolute(source)) throw new Error(`Source path "${source}" must be absolute for disk "${this.name}"`);
    if (!existsSync(source) && !parseBool(this.config.optional)) throw new Error(`Missing source path "${source}" for disk "${this.name}"`);
    this.restrictedParent();
  }

  /** restricted.devices.disk.paths of a restricted project: the allowed parent of the source (throws when outside). */
  private restrictedParent(): string | undefined {
    return this.ctx.ports.projects.restrictedDiskParent(this.ctx.project, this.name, this.config);
  }

  /** Custom volume disks (pool + volume name) mount the volume; others bind a host path. */
  private get isVolume(): boolean {
    return !this.isRoot && !!this.config.pool;
  }

  /**
   * The host path to bind: a custom volume's mount path (its ownership shifted to this
   * instance's id map first, as LXD does), or the configured host source.
   */
  private async sourcePath(): Promise<string> {
    if (!this.isVolume) {
      const parent = this.restrictedParent();
      if (parent === undefined) return normalize(this.config.source);
      // Restricted to a parent path: resolve symlinks now and bind what they lead to only if
      // it is still under the (resolved) parent, so a link cannot carry the mount outside it.
      const source = normalize(this.config.source);
      if (!existsSync(source)) return source;
      const real = realpathSync(source);
      const realParent = realpathSync(parent);
      if (real !== realParent && !real.startsWith(realParent.endsWith("/") ? realParent : `${realParent}/`)) throw new Error(`Disk source path "${this.config.source}" not allowed by project for disk "${this.name}"`);
      return real;
    }
    const storage = this.ctx.ports.storage;
    const dir = await storage.mountCustomVolume!(this.config.pool, this.ctx.project, this.config.source);
    // security.unmapped (storage_unmapped): the volume keeps host ids, unshifted (back) to them.
    // security.shifted (storage_shifted) keeps host ids too: the mount is idmapped instead.
    const unmapped = parseBool(this.volumeConfig()["security.unmapped"]) || this.volumeShifted;
    const to = unmapped ? [] : this.ctx.idmap;
    if (!unmapped) this.checkSharedIdmap(dir, to);
    await shiftVolumeTo(dir, to);
    return dir;
  }

  /**
   * A volume shared by several containers is shifted only while its map stays theirs: one
   * whose map would change under another user is refused with LXD's messages (its
   * storagePoolVolumeAttachShift).
   */
  private checkSharedIdmap(dir: string, to: IdmapEntry[]): void {
    const st = statSync(dir);
    const target = hostRoot(to);
    if (st.uid === target.uid && st.gid === target.gid) return;
    const users = this.ctx.ports.instances.volumeUserRoots(this.config.pool, this.ctx.project, this.config.source);
    if (users.length > 1) {
      const other = users.find((u) => u.uid !== target.uid || u.gid !== target.gid);
      if (other) throw new Error(`Idmaps of container "${other.name}" and storage volume "${this.config.source}" are not identical`);
    } else if (users.length === 1 && users[0].name !== this.ctx.instance) {
      throw new Error("Idmaps of container and storage volume are not identical");
    }
  }

  /**
   * Where a custom volume is bind-mounted for liblxc, as LXD does: $LXD_DIR/devices/<instance>/
   * disk.<device>.<path>. The pool's custom/ directory is private (0700, as LXD's) and liblxc
   * mounts from inside the container's user namespace, which could not traverse it.
   */
  private get devPath(): string {
    return join(this.ctx.devicesDir, pathNameEncode(`disk.${this.name}.${this.target.slice(1)}`));
  }

  /**
   * What the container mounts: the host source, or for a custom volume or a block device (its
   * filesystem mounted on the host first, as LXD does), the devices/ mount of it.
   */
  private async hostSource(): Promise<string | undefined> {
    const source = await this.sourcePath();
    if (!existsSync(source)) return undefined; // optional and absent
    const block = !this.isVolume && statSync(source).isBlockDevice();
    if (!this.isVolume && !block) return source;
    mkdirSync(this.ctx.devicesDir, { recursive: true, mode: 0o711 });
    mkdirSync(this.devPath, { recursive: true, mode: 0o711 });
    if (!isMountPoint(this.devPath)) {
      if (block) await mountFs(source, this.devPath, "auto", parseBool(this.config.readonly) ? "ro" : "");
      else await bindMount(source, this.devPath);
    }
    return this.devPath;
  }

  private async mountEntry(): Promise<string | undefined> {
    if (this.isRoot) return undefined;
    const source = await this.hostSource();
    if (!source) return undefined;
    const isDir = statSync(source).isDirectory();
    const target = this.target.slice(1);
    const opts = [parseBool(this.config.recursive) ? "rbind" : "bind", `create=${isDir ? "dir" : "file"}`];
    if (parseBool(this.config.readonly)) opts.push("ro");
    if (this.shifted) {
      if (!canIdmapMount(source)) throw new Error(`Failed to setup device mount "${this.name}": idmapping abilities are required but aren't supported on system`);
      // liblxc idmaps the bind through the container's user namespace (its idmapped_mounts_v2).
      opts.push("idmap=container");
    }
    return `${fstab(source)} ${fstab(target)} none ${opts.join(",")} 0 0`;
  }

  /** shift=true (or a security.shifted volume) on an unprivileged container: host files appear with the container's ids (owner shift "dynamic"). */
  private get shifted(): boolean {
    return (parseBool(this.config.shift) || this.volumeShifted) && this.ctx.idmap.length > 0;
  }

  private volumeConfig(): Record<string, string> {
    if (!this.isVolume) return {};
    return this.ctx.ports.storage.customVolumeConfig?.(this.config.pool, this.ctx.project, this.config.source) ?? {};
  }

  /** A custom volume with security.shifted=true (LXD: owner shift "dynamic" from the pool volume). */
  private get volumeShifted(): boolean {
    return parseBool(this.volumeConfig()["security.shifted"]);
  }

  async start(): Promise<RunConfig> {
    const entry = await this.mountEntry();
    return entry ? { lxc: [["lxc.mount.entry", entry]] } : {};
  }

  async stop(): Promise<void> {
    if (this.isRoot || (!this.isVolume && !isMountPoint(this.devPath))) return;
    await unmountAll(this.devPath);
    try {
      rmdirSync(this.devPath);
    } catch {
      /* absent already */
    }
  }

  /** A root disk whose size (the volume quota, applied by the instance service) is all that changed stays in place. */
  async update(_pid: number, previous: DeviceConfig): Promise<boolean> {
    if (!this.isRoot) return false;
    const rest = (c: DeviceConfig) => JSON.stringify(Object.entries(c).filter(([k]) => k !== "size" && k !== "size.state").sort());
    return rest(previous) === rest(this.config);
  }

  // A root disk entry added or removed on a running instance (renamed, or moved between the
  // instance and its profiles; its pool cannot change) leaves the mounted root as it is, as LXD.
  async attach(pid: number): Promise<void> {
    if (this.isRoot) return;
    const hotplug = this.ctx.hotplug;
    if (!hotplug) throw new Error("Hot-plugging disks is not supported here");
    const source = await this.hostSource();
    if (!source) return;
    if (this.shifted && !canIdmapMount(source)) throw new Error(`Failed to start device "${this.name}": Required idmapping abilities not available`);
    const idmapped = this.shifted ? { userns: pid } : {};
    await hotplug.mount(pid, source, this.target, { readonly: parseBool(this.config.readonly), recursive: parseBool(this.config.recursive), isDir: statSync(source).isDirectory(), ...idmapped });
  }

  async detach(pid: number): Promise<void> {
    if (this.isRoot) return;
    await this.ctx.hotplug?.unmount(pid, this.target);
    // A volume mounted at start went through devices/: that host mount goes too.
    await this.stop();
  }
}

/**
 * Shift a custom volume's files to an instance's id map. The volume's current map is read
 * from the owner of its root directory (root-owned: unshifted), so a volume moves between
 * instances with different maps without extra bookkeeping.
 */
async function shiftVolumeTo(dir: string, to: IdmapEntry[]): Promise<void> {
  const st = statSync(dir);
  const target = hostRoot(to);
  if (st.uid === target.uid && st.gid === target.gid) return;
  const size = (kind: "uid" | "gid") => to.find((e) => (kind === "uid" ? e.Isuid : e.Isgid))?.Maprange ?? 65536;
  const from: IdmapEntry[] = [];
  if (st.uid !== 0) from.push({ Isuid: true, Isgid: false, Hostid: st.uid, Nsid: 0, Maprange: size("uid") });
  if (st.gid !== 0) from.push({ Isuid: false, Isgid: true, Hostid: st.gid, Nsid: 0, Maprange: size("gid") });
  await shiftTree(dir, from, to);
}

export class NoneDevice implements Device {
  constructor(
    readonly name: string,
    readonly config: DeviceConfig,
  ) {}
  validate(): void {
    for (const k of Object.keys(this.config)) if (k !== "type") throw new Error(`Invalid device option "${k}"`);
  }
  async start(): Promise<RunConfig> {
    return {};
  }
  async stop(): Promise<void> {}
  async attach(): Promise<void> {}
  async detach(): Promise<void> {}
}

/**
 * The first disk device that shares its `path` with an earlier one of the same set (LXD's
 * disk validation counts the local devices with the path: an instance's own devices, or a
 * profile's), or undefined.
 */
export function duplicateDiskPath(devices: Record<string, Record<string, string>>): { name: string; path: string } | undefined {
  const seen = new Set<string>();
  for (const [name, d] of Object.entries(devices)) {
    if (d.type !== "disk" || !d.path) continue;
    if (seen.has(d.path)) return { name, path: d.path };
    seen.add(d.path);
  }
  return undefined;
}

/** LXD's GetRootDiskDevice multiplicity rule: at most one disk at "/" without a source. */
export function countRootDisks(devices: Record<string, Record<string, string>>): number {
  return Object.values(devices).filter((d) => d.type === "disk" && d.path === "/" && !d.source).length;
}
