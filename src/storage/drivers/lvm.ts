// lvm: a pool is a volume group (on a loop file by default, a block device, or an existing
// VG) with, by default, a thin pool "LXDThinPool"; volumes are logical volumes named as
// upstream ("containers_c1", "custom_default_v1", snapshots "containers_c1-snap0") holding a
// filesystem (volume.block.filesystem, ext4 by default) mounted at
// $LXD_DIR/storage-pools/<pool>/<type>/<name>. On thin pools, image volumes are kept and
// snapshotted per instance. Where the kernel has no device-mapper, everything that only
// edits LVM metadata works (VG, thick LVs, rename, resize, delete) and activation is the
// boundary: the kernel's answer is the error and the half-made volume is removed.
import { existsSync } from "node:fs";
import { mkdir, open, rm, rmdir, stat, statfs, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { run } from "../../os/exec.js";
import { parseByteSize } from "../../shared/units.js";
import { assertNoMountsUnder, isMountPoint, loopOf, mountFs, mountsBelow, unmountAll } from "../host.js";
import { localCopy } from "../rsync.js";
import { exportBlockVolume } from "../tree-copy.js";
import { CannotBeShrunk, copyDisk, diskSize, exportDeviceDisk, roundBlockSize } from "../block-disk.js";
import { withRevert } from "../reverter.js";
import { createPoolDirs, ensureSnapshotsDir, poolMountPath, removePoolDirs, removeSnapshotsDirIfEmpty, renameVolumePath } from "./dir.js";
import { assertLvmName, hasDeviceMapper, Lvm, LvmError, lvmVersion } from "./lvm-tools.js";
import { baseInfo, DEFAULT_VOLUME_SIZE, fillLvmDefaults, isBool, isFalse, loopFile, NO_DM_REASON, THINPOOL_DEFAULT, UNFORMATTED_TAG, VG_MARKER } from "./lvm-config.js";
import { blockFilesystem, blockMountOptions, formatVolume, growFilesystem, shrinkFilesystem } from "./lvm-fs.js";
import { isSnapshotVolume, snapshotVolume, VOLUME_DIRS, volumeSubPath, type Driver, type DriverDefinition, type DriverEnv, type DriverInfo, type PoolSpec, type SlowOpts, type Volume, type ContentType, isBlockVolume } from "./types.js";

/**
 * The LV name of a volume, as upstream: "<type>_<name>" with '-' doubled and a snapshot's '/'
 * as '-'; a block volume's (and its snapshots') with the ".block" suffix.
 */
export function lvName(vol: Volume): string {
  const name = `${lvBaseName(vol)}${isBlockVolume(vol) ? BLOCK_SUFFIX : ""}`;
  assertLvmName("logical volume", name);
  return name;
}

/** LXD's lvmBlockVolSuffix. */
const BLOCK_SUFFIX = ".block";
const lvBaseName = (vol: Volume) => `${VOLUME_DIRS[vol.type]}_${vol.name.replace(/-/g, "--").replace("/", "-")}`;

class LvmDriver implements Driver {
  readonly info: DriverInfo;
  readonly mountPath: string;
  private readonly kind: "loop" | "device" | "vg";
  private readonly source: string;
  private readonly vg: string;
  private readonly lvm: Lvm;
  /** The pool's PV (its loop device once attached); the filter lvm scans through. */
  private pv: string | undefined;

  constructor(
    private readonly pool: PoolSpec,
    private readonly env: DriverEnv,
  ) {
    const c = pool.config;
    this.mountPath = poolMountPath(env, pool.name);
    this.source = c.source ?? loopFile(env, pool.name);
    const initial = c["volatile.initial_source"] ?? "";
    this.kind = this.source.startsWith("/dev/") || initial.startsWith("/dev/") ? "device" : this.source.startsWith("/") ? "loop" : "vg";
    this.vg = c["lvm.vg_name"] || (this.kind === "vg" ? this.source : pool.name);
    if (this.kind === "device") this.pv = this.source.startsWith("/dev/") ? this.source : initial;
    this.info = { ...baseInfo, optimizedImages: this.thin };
    this.lvm = new Lvm(async () => {
      if (this.kind === "vg") return undefined;
      if (!this.pv && this.kind === "loop") this.pv = await loopOf(this.source);
      return this.pv ? [this.pv] : [];
    });
  }

  private get thin(): boolean {
    return !isFalse(this.pool.config["lvm.use_thinpool"]);
  }

  private get thinpool(): string {
    return this.pool.config["lvm.thinpool_name"] || THINPOOL_DEFAULT;
  }

  private volumeSize(vol: Volume): number {
    const size = vol.config.size || this.pool.config["volume.size"] || DEFAULT_VOLUME_SIZE;
    // A block volume's disk is rounded up to LXD's 8KiB boundary.
    if (isBlockVolume(vol)) return roundBlockSize(parseByteSize(size));
    // lvm2 takes sizes in 512-byte multiples (it rounds up to whole extents itself).
    return Math.max(512, Math.floor(parseByteSize(size) / 512) * 512);
  }

  private fsOf(vol: Volume): string {
    return blockFilesystem(vol, this.pool.config);
  }

  private lvPath(vol: Volume): string {
    return `${this.vg}/${lvName(vol)}`;
  }

  private devPath(vol: Volume): string {
    return `/dev/${this.vg}/${lvName(vol)}`;
  }

  // ---- pool ----

  async createPool(opts: SlowOpts = {}): Promise<void> {
    assertLvmName("volume group", this.vg);
    if (this.thin) assertLvmName("thin pool", this.thinpool);
    await withRevert(async (revert) => {
      let vgExists = false;
      let pvExists = false;
      if (this.kind === "loop") {
        if (existsSync(this.source)) throw new Error("Source file location already exists");
        await mkdir(dirname(this.source), { recursive: true, mode: 0o700 });
        const fh = await open(this.source, "wx", 0o600);
        revert.add(() => unlink(this.source));
        try {
          await fh.truncate(parseByteSize(this.pool.config.size ?? ""));
        } finally {
          await fh.close();
        }
        await this.attachLoop(opts);
        revert.add(() => this.detachLoop());
        vgExists = !!(await this.lvm.vgExists(this.vg));
      } else if (this.kind === "device") {
        if (!(await stat(this.pv!).catch(() => undefined))?.isBlockDevice()) throw new Error("Custom loop file locations are not supported");
        if (await this.lvm.vgExists(this.vg)) throw new Error(`Volume group already exists, cannot use new physical device at "${this.pv}"`);
        pvExists = !!(await this.lvm.report("pvs", ["pv_name"], [this.pv!]))?.length;
      } else {
        const vg = await this.lvm.vgExists(this.vg);
        if (!vg) throw new Error(`The requested volume group "${this.vg}" does not exist`);
        vgExists = true;
        await this.checkReusable(vg.tags);
      }
      if (!vgExists) {
        if (!pvExists) {
          await this.lvm.run("pvcreate", [this.pv!], opts);
          revert.add(() => this.lvm.run("pvremove", ["-f", this.pv!]));
        }
        await this.lvm.run("vgcreate", [this.vg, this.pv!], opts);
        revert.add(() => this.lvm.run("vgremove", ["-f", this.vg]));
      }
      if (this.thin && !(await this.thinpoolExists())) {
        const args = ["--yes", "--wipesignatures", "y", "--thinpool", `${this.vg}/${this.thinpool}`, "--extents", "100%FREE"];
        const meta = this.pool.config["lvm.thinpool_metadata_size"];
        if (meta && parseByteSize(meta) > 0) args.push("--poolmetadatasize", `${Math.floor(parseByteSize(meta) / 512) * 512}b`);
        try {
          await this.lvm.run("lvcreate", args, { ...opts, kernel: true });
        } catch (e) {
          throw new Error(`Error creating LVM thin pool named "${this.thinpool}": ${(e as Error).message}`);
        }
        revert.add(() => this.lvm.run("lvremove", ["-f", `${this.vg}/${this.thinpool}`]));
      }
      await this.lvm.run("vgchange", ["--addtag", VG_MARKER, this.vg], opts);
      revert.add(() => this.lvm.run("vgchange", ["--deltag", VG_MARKER, this.vg]));
      await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
      revert.add(() => rm(this.mountPath, { recursive: true, force: true }));
      await createPoolDirs(this.mountPath);
    });
  }

  /** An existing VG may hold nothing but our thin pool, and no other pool's marker, unless lvm.vg.force_reuse. */
  private async checkReusable(tags: string[]): Promise<void> {
    if (isBool(this.pool.config["lvm.vg.force_reuse"] ?? "false")) return;
    const lvs = await this.lvm.lvs(this.vg);
    const onlyThinpool = this.thin && lvs.length === 1 && lvs[0].name === this.thinpool;
    if (lvs.length > 0 && !onlyThinpool) throw new Error(`Volume group "${this.vg}" is not empty`);
    if (tags.includes(VG_MARKER)) throw new Error(`Volume group "${this.vg}" is already used by LXD`);
  }

  private async thinpoolExists(): Promise<boolean> {
    const lv = await this.lvm.lv(this.vg, this.thinpool);
    return !!lv && lv.attr.startsWith("t");
  }

  private async attachLoop(opts: SlowOpts = {}): Promise<boolean> {
    const existing = await loopOf(this.source);
    if (existing) {
      this.pv = existing;
      return false;
    }
    const r = await run("losetup", ["--find", "--show", this.source], { signal: opts.signal });
    this.pv = r.stdout.trim();
    return true;
  }

  private async detachLoop(): Promise<void> {
    const dev = await loopOf(this.source);
    if (dev) await run("losetup", ["-d", dev], { reject: false });
  }

  async deletePool(opts: SlowOpts = {}): Promise<void> {
    if (this.kind === "loop" && existsSync(this.source)) await this.attachLoop(opts);
    const vg = this.kind === "loop" && !existsSync(this.source) ? undefined : await this.lvm.vgExists(this.vg);
    let removeVg = false;
    if (vg && !isBool(this.pool.config["lvm.vg.force_reuse"] ?? "false")) {
      const lvs = await this.lvm.lvs(this.vg);
      const thinVolumes = lvs.filter((l) => l.pool === this.thinpool).length;
      const ownPool = this.thin && lvs.some((l) => l.name === this.thinpool);
      if (lvs.length === 0 || (ownPool && thinVolumes === 0 && lvs.length === 1)) removeVg = true;
      else if (ownPool && thinVolumes === 0) await this.lvm.run("lvremove", ["-f", `${this.vg}/${this.thinpool}`], opts);
    }
    if (removeVg) await this.lvm.run("vgremove", ["-f", this.vg], opts);
    else if (vg?.tags.includes(VG_MARKER)) await this.lvm.run("vgchange", ["--deltag", VG_MARKER, this.vg], opts);
    if (this.kind === "loop") {
      if (removeVg && this.pv) await this.lvm.run("pvremove", ["-f", this.pv], opts).catch((e) => this.env.log.warn({ err: e }, "Failed to destroy the physical volume for the lvm storage pool"));
      await this.detachLoop();
      if (removeVg || !vg) await rm(this.source, { force: true });
    }
    if (existsSync(this.mountPath)) {
      assertNoMountsUnder(this.mountPath);
      await removePoolDirs(this.mountPath).catch(() => {});
      await rm(this.mountPath, { recursive: true, force: true });
    }
  }

  async mountPool(opts: SlowOpts = {}): Promise<boolean> {
    let attached = false;
    if (this.kind === "loop") {
      if (!existsSync(this.source)) throw new Error(`Source "${this.source}" doesn't exist`);
      attached = await this.attachLoop(opts);
    }
    if (!(await this.lvm.vgExists(this.vg))) throw new Error(`Volume group "${this.vg}" not found`);
    if (this.thin && !(await this.thinpoolExists())) throw new Error(`Thin pool not found "${this.thinpool}" in volume group "${this.vg}"`);
    return attached;
  }

  /** Unmount every volume and release the loop device (upstream keeps it; tests and `lxd shutdown` want it gone). */
  async unmountPool(opts: SlowOpts = {}): Promise<boolean> {
    for (const dir of Object.values(VOLUME_DIRS)) {
      for (const parent of [join(this.mountPath, dir), join(this.mountPath, `${dir}-snapshots`)]) {
        for (const m of mountsBelow(parent)) await unmountAll(m, opts.signal);
      }
    }
    if (this.kind !== "loop" || !(await loopOf(this.source))) return false;
    if (this.lvm.deviceMapper) await this.lvm.run("vgchange", ["--activate", "n", this.vg], { ...opts, kernel: true }).catch(() => {});
    await this.detachLoop();
    return true;
  }

  async updatePool(previous: Record<string, string>, next: Record<string, string>, opts: SlowOpts = {}): Promise<void> {
    const vgBefore = previous["lvm.vg_name"] || this.vg;
    const vgAfter = next["lvm.vg_name"] || vgBefore;
    if (vgAfter !== vgBefore) {
      assertLvmName("volume group", vgAfter);
      await this.lvm.run("vgrename", [vgBefore, vgAfter], opts);
    }
    const tpBefore = previous["lvm.thinpool_name"] || THINPOOL_DEFAULT;
    const tpAfter = next["lvm.thinpool_name"] || THINPOOL_DEFAULT;
    if (tpAfter !== tpBefore) {
      if (!this.thin) throw new Error("The key lvm.use_thinpool cannot be set to false when lvm.thinpool_name is set");
      assertLvmName("thin pool", tpAfter);
      await this.lvm.run("lvrename", [vgAfter, tpBefore, tpAfter], opts);
    }
  }

  async usage() {
    if (this.thin) {
      const rows = await this.lvm.report("lvs", ["lv_size", "data_percent", "metadata_percent"], [`${this.vg}/${this.thinpool}`]);
      if (!rows?.length) throw new Error(`Thin pool not found "${this.thinpool}" in volume group "${this.vg}"`);
      const [size, data] = rows[0];
      // The used percentage is known only while the pool is active.
      if (!data) throw new Error("Not supported");
      const total = Number(size);
      return { space: { used: Math.round((total * Number(data)) / 100), total }, inodes: { used: 0, total: 0 } };
    }
    const rows = await this.lvm.report("vgs", ["vg_size", "vg_free"], [this.vg]);
    if (!rows?.length) throw new Error(`Volume group "${this.vg}" not found`);
    const [total, free] = rows[0].map(Number);
    return { space: { used: total - free, total }, inodes: { used: 0, total: 0 } };
  }

  // ---- volumes ----

  /** As upstream's FillVolumeConfig: filesystem volumes record their filesystem and mount options. */
  fillVolumeConfig(config: Record<string, string>, contentType: ContentType): void {
    if (contentType === "block") return;
    config["block.filesystem"] ||= "ext4";
    config["block.mount_options"] ||= "discard";
  }

  volumePath(vol: Volume): string {
    return join(this.mountPath, volumeSubPath(vol));
  }

  async hasVolume(vol: Volume): Promise<boolean> {
    return !!(await this.lvm.lv(this.vg, lvName(vol)));
  }

  private async createLv(vol: Volume, opts: SlowOpts): Promise<void> {
    const size = `${this.volumeSize(vol)}b`;
    // A block volume has no filesystem to make: no "unformatted" tag.
    const args = ["--name", lvName(vol), "--yes", "--wipesignatures", "y", ...(isBlockVolume(vol) ? [] : ["--addtag", UNFORMATTED_TAG])];
    if (this.thin) args.push("--thin", "--virtualsize", size, `${this.vg}/${this.thinpool}`);
    else {
      args.push("--size", size);
      const stripes = vol.config["lvm.stripes"] || this.pool.config["volume.lvm.stripes"];
      if (stripes) args.push("--stripes", stripes);
      const stripeSize = vol.config["lvm.stripes.size"] || this.pool.config["volume.lvm.stripes.size"];
      if (stripeSize) args.push("--stripesize", `${Math.floor(parseByteSize(stripeSize) / 512) * 512}b`);
      args.push(this.vg);
    }
    // Thin volumes need the thin pool's kernel target; thick ones are metadata until activated.
    await this.lvm.run("lvcreate", args, { ...opts, kernel: this.thin });
  }

  /**
   * The LV is made with the "unformatted" tag; its filesystem is made at its first activation
   * (at once when filling it, or where the kernel can activate at all), so a host without
   * device-mapper can still hold, rename, resize and delete empty volumes.
   */
  async createVolume(vol: Volume, fill?: (path: string) => Promise<void>, opts: SlowOpts = {}): Promise<void> {
    if (await this.hasVolume(vol)) throw new Error(`Volume "${vol.name}" already exists on disk`);
    await withRevert(async (revert) => {
      await this.createLv(vol, opts);
      revert.add(() => this.removeLv(vol));
      if (isBlockVolume(vol)) return;
      if (!fill && !this.lvm.deviceMapper) return;
      const path = await this.mountVolume(vol, opts);
      revert.add(() => this.unmountVolume(vol));
      await fill?.(path);
      if (vol.type === "image" || !fill) await this.unmountVolume(vol, opts);
      // Image volumes are the read-only origin of instance snapshots.
      if (vol.type === "image") await this.lvm.run("lvchange", ["--permission", "r", this.lvPath(vol)], opts);
    });
  }

  /** Instance volumes of thin pools are writable thin snapshots of the image volume. */
  async createVolumeFromCopy(vol: Volume, source: Volume, opts: SlowOpts = {}): Promise<void> {
    if (!this.thin) throw new Error("Optimized copies need a thin pool");
    await withRevert(async (revert) => {
      await this.lvm.run("lvcreate", ["-n", lvName(vol), "-s", this.lvPath(source), "--setactivationskip", "y", "-prw"], { ...opts, kernel: true });
      revert.add(() => this.removeLv(vol));
      const size = this.volumeSize(vol);
      const lv = await this.lvm.lv(this.vg, lvName(vol));
      if (lv && size > lv.size) await this.resizeLv(vol, size, opts);
      await this.mountVolume(vol, opts);
    });
  }

  private async removeLv(vol: Volume, opts: SlowOpts = {}): Promise<void> {
    if (!(await this.hasVolume(vol))) return;
    if (this.lvm.deviceMapper) await this.lvm.run("lvchange", ["--activate", "n", this.lvPath(vol)], { ...opts, kernel: true }).catch(() => {});
    await this.lvm.run("lvremove", ["-f", this.lvPath(vol)], opts);
  }

  async deleteVolume(vol: Volume, opts: SlowOpts = {}): Promise<void> {
    const path = this.volumePath(vol);
    assertNoMountsUnder(path);
    await this.unmountVolume(vol, opts);
    await this.removeLv(vol, opts);
    await rmdir(path).catch((e) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
    if (isSnapshotVolume(vol)) await removeSnapshotsDirIfEmpty(dirname(path));
  }

  async renameVolume(vol: Volume, newName: string, opts: SlowOpts = {}): Promise<void> {
    const target = { ...vol, name: newName };
    const wasMounted = await this.unmountVolume(vol, opts);
    const renames: [string, string][] = [[lvName(vol), lvName(target)]];
    // A parent's snapshot LVs carry its name and follow it.
    if (!isSnapshotVolume(vol)) {
      const prefix = `${lvBaseName(vol)}-`;
      const suffix = isBlockVolume(vol) ? BLOCK_SUFFIX : "";
      for (const lv of await this.lvm.lvs(this.vg)) {
        if (!lv.name.startsWith(prefix) || !lv.name.endsWith(suffix)) continue;
        const snap = lv.name.slice(prefix.length, lv.name.length - suffix.length);
        if (snap.replace(/--/g, "").includes("-") || (!suffix && snap.endsWith(BLOCK_SUFFIX))) continue;
        for (const m of mountsBelow(join(this.mountPath, `${VOLUME_DIRS[vol.type]}-snapshots`, vol.name))) await unmountAll(m, opts.signal);
        renames.push([lv.name, `${lvBaseName(target)}-${snap}${suffix}`]);
      }
    }
    await withRevert(async (revert) => {
      for (const [from, to] of renames) {
        await this.lvm.run("lvrename", [this.vg, from, to], opts);
        revert.add(() => this.lvm.run("lvrename", [this.vg, to, from]));
      }
      if (existsSync(this.volumePath(vol))) await renameVolumePath(this.mountPath, (v) => this.volumePath(v), vol, newName);
    });
    if (wasMounted) await this.mountVolume(target, opts);
  }

  /** Snapshots are read-only LVM snapshots (thin, or thick sized as their origin), skipped at activation like upstream's. */
  async createSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const snap = snapshotVolume(vol, snapshot);
    if (await this.hasVolume(snap)) throw new Error(`Volume "${snap.name}" already exists on disk`);
    const args = ["-n", lvName(snap), "-s", this.lvPath(vol), "--setactivationskip", "y", "-pr"];
    if (!this.thin) args.push("-l", "100%ORIGIN");
    await withRevert(async (revert) => {
      const dir = dirname(this.volumePath(snap));
      if (await ensureSnapshotsDir(dir)) revert.add(() => removeSnapshotsDirIfEmpty(dir));
      await this.lvm.run("lvcreate", args, { ...opts, kernel: true });
    });
  }

  /** The snapshot's content copied over the volume's (both mounted, or a block volume's disks), as upstream does for non-thin pools. */
  async restoreSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const snap = snapshotVolume(vol, snapshot);
    if (!(await this.hasVolume(snap))) throw new Error("Snapshot not found");
    if (isBlockVolume(vol)) {
      try {
        await copyDisk(await this.diskPath(snap, opts), await this.diskPath(vol, opts), opts.signal);
      } finally {
        await this.unmountVolume(snap).catch(() => {});
      }
      return;
    }
    const from = await this.mountVolume(snap, opts);
    try {
      await localCopy(from, await this.mountVolume(vol, opts), opts);
    } finally {
      await this.unmountVolume(snap).catch(() => {});
    }
  }

  async syncVolume(vol: Volume, source: string, opts: SlowOpts & { bwlimit?: string } = {}): Promise<void> {
    if (!isBlockVolume(vol)) return void (await localCopy(source, await this.mountVolume(vol, opts), opts));
    // The LV grows to hold the source disk first (it never shrinks).
    const need = await diskSize(source);
    const lv = await this.lvm.lv(this.vg, lvName(vol));
    if (lv && need > lv.size) await this.resizeLv(vol, need, opts);
    await copyDisk(source, await this.diskPath(vol, opts), opts.signal);
  }

  /** A block volume's disk: its LV's device, activated (the kernel's boundary). */
  async diskPath(vol: Volume, opts: SlowOpts = {}): Promise<string> {
    return (await this.activated(vol, opts)).dev;
  }

  /** The volume's LV and its device, activated first when it is not (the kernel's boundary). */
  private async activated(vol: Volume, opts: SlowOpts): Promise<{ lv: { size: number; tags: string[]; attr: string }; dev: string }> {
    const lv = await this.lvm.lv(this.vg, lvName(vol));
    if (!lv) throw new Error(`Volume "${vol.name}" doesn't exist on disk`);
    const dev = this.devPath(vol);
    if (!existsSync(dev)) {
      try {
        await this.lvm.run("lvchange", ["--activate", "y", "--ignoreactivationskip", this.lvPath(vol)], { ...opts, kernel: true });
      } catch (e) {
        throw new Error(`Failed to activate LVM logical volume "${dev}": ${(e as Error).message}`);
      }
    }
    return { lv, dev };
  }

  /** Copy the volume's content out (mounting a block volume for the copy when it wasn't). */
  async exportVolume(vol: Volume, target: string, opts: SlowOpts & { link?: boolean } = {}): Promise<void> {
    if (isBlockVolume(vol)) return exportDeviceDisk(this, vol, target, opts);
    await exportBlockVolume(this, vol, target, opts, isMountPoint);
  }

  /** Activate the LV (the kernel's boundary), make its filesystem on first use, mount it. */
  async mountVolume(vol: Volume, opts: SlowOpts = {}): Promise<string> {
    if (isBlockVolume(vol)) return this.diskPath(vol, opts);
    const path = this.volumePath(vol);
    if (isMountPoint(path)) return path;
    const { lv, dev } = await this.activated(vol, opts);
    if (lv.tags.includes(UNFORMATTED_TAG)) {
      await formatVolume(dev, this.fsOf(vol), opts);
      await this.lvm.run("lvchange", ["--deltag", UNFORMATTED_TAG, this.lvPath(vol)], opts);
    }
    await mkdir(path, { recursive: true, mode: 0o711 });
    await mountFs(dev, path, this.fsOf(vol), blockMountOptions(vol, this.pool.config), opts.signal);
    return path;
  }

  async unmountVolume(vol: Volume, opts: SlowOpts = {}): Promise<boolean> {
    const did = await unmountAll(this.volumePath(vol), opts.signal);
    if (this.lvm.deviceMapper && existsSync(this.devPath(vol))) await this.lvm.run("lvchange", ["--activate", "n", this.lvPath(vol)], { ...opts, kernel: true }).catch(() => {});
    return did;
  }

  /** Usage of the mounted filesystem; undefined (upstream's "Not supported") while unmounted. */
  async volumeUsage(vol: Volume): Promise<number | undefined> {
    const path = this.volumePath(vol);
    if (!isMountPoint(path)) return undefined;
    const s = await statfs(path);
    return (s.blocks - s.bfree) * s.bsize;
  }

  private async resizeLv(vol: Volume, bytes: number, opts: SlowOpts): Promise<void> {
    await this.lvm.run("lvresize", ["-L", `${bytes}b`, "-f", this.lvPath(vol)], opts);
  }

  /**
   * `size` resizes the LV ("" back to the pool's volume.size); a formatted volume's filesystem
   * grows with it, or is shrunk first (ext4 only, unmounted), as upstream.
   */
  async setVolumeQuota(vol: Volume, size: string, opts: SlowOpts = {}): Promise<void> {
    const bytes = this.volumeSize({ ...vol, config: { ...vol.config, size: size === "0" ? "" : size } });
    const lv = await this.lvm.lv(this.vg, lvName(vol));
    if (!lv) throw new Error(`Volume "${vol.name}" doesn't exist on disk`);
    const extent = await this.lvm.extentSize(this.vg);
    const rounded = Math.ceil(bytes / extent) * extent;
    if (isBlockVolume(vol)) {
      // As LXD: "" or "0" changes nothing; the disk grows, never shrinks.
      if (parseByteSize(size) <= 0 || rounded === lv.size) return;
      if (rounded < lv.size) throw new CannotBeShrunk();
      return this.resizeLv(vol, bytes, opts);
    }
    if (rounded === lv.size) return;
    if (lv.tags.includes(UNFORMATTED_TAG)) return this.resizeLv(vol, bytes, opts);
    const path = this.volumePath(vol);
    if (rounded > lv.size) {
      await this.resizeLv(vol, bytes, opts);
      const mounted = isMountPoint(path) ? path : await this.mountVolume(vol, opts);
      await growFilesystem(this.fsOf(vol), this.devPath(vol), mounted, opts);
      return;
    }
    if (this.fsOf(vol) !== "ext4") throw new Error(`Filesystem "${this.fsOf(vol)}" cannot be shrunk`);
    const wasMounted = await this.unmountVolume(vol, opts);
    await this.lvm.run("lvchange", ["--activate", "y", "--ignoreactivationskip", this.lvPath(vol)], { ...opts, kernel: true });
    await shrinkFilesystem(this.devPath(vol), rounded, opts);
    await this.resizeLv(vol, rounded, opts);
    if (wasMounted) await this.mountVolume(vol, opts);
  }
}

export const lvmDriver: DriverDefinition = {
  info: baseInfo,
  probe: lvmVersion,
  async unavailableReason() {
    return `Required tool "lvm" is missing`;
  },
  fillDefaults: fillLvmDefaults,
  load: (pool, env) => new LvmDriver(pool, env),
};

export { hasDeviceMapper, LvmError, NO_DM_REASON };
