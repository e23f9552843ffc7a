// btrfs: a pool is a btrfs filesystem (a loop file by default, a block device, or a
// subvolume on an existing btrfs path) mounted at $LXD_DIR/storage-pools/<pool>; volumes
// are subvolumes; instance volumes are snapshots of read-only image subvolumes.
import { localCopy } from "../rsync.js";
import { existsSync, readFileSync, statfsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import type { Readable } from "node:stream";
import { dirname, join } from "node:path";
import { run } from "../../os/exec.js";
import { native } from "../../os/native.js";
import { commonPoolKeys, commonVolumeKeys, isSize } from "../config.js";
import { parseByteSize } from "../../shared/units.js";
import { assertNoMountsUnder, bindMount, fsUsage, isMountPoint, mountFs, mountTable, unmountAll } from "../host.js";
import { withRevert } from "../reverter.js";
import { createDiskFile, createPoolDirs, diskFileOf, ensureSnapshotsDir, resizeDiskFile, poolMountPath, recoverSwap, removePoolDirs, removeSnapshotsDirIfEmpty, renameVolumePath, restorePaths, swapIn } from "./dir.js";
import { isSnapshotVolume, snapshotVolume, VOLUME_DIRS, volumeSubPath, type Driver, type DriverDefinition, type DriverEnv, type DriverInfo, type PoolSpec, type SlowOpts, type StagedStreams, type StreamSink, type Volume, isBlockVolume } from "./types.js";
import { isSubvolume, nestedSubvolumes, receiveSubvolume, sendSubvolume, setReadonly, subvolumeFacts } from "./btrfs-send.js";
import { copyTreeOut } from "../tree-copy.js";
import { copyDisk, exportDisk } from "../block-disk.js";

const DEFAULT_MOUNT_OPTIONS = "user_subvol_rm_allowed";

const info: DriverInfo = {
  name: "btrfs",
  remote: false,
  optimizedImages: true,
  poolKeys: {
    ...commonPoolKeys,
    size: { validate: isSize, doc: "Size of the loop file backing the pool" },
    "btrfs.mount_options": { validate: () => {}, doc: "Mount options", default: DEFAULT_MOUNT_OPTIONS },
  },
  volumeKeys: commonVolumeKeys,
  mutablePoolKeys: ["size", "btrfs.mount_options"],
};

type SourceKind = "loop" | "device" | "path";

const loopFile = (env: DriverEnv, pool: string) => join(env.lxdDir, "disks", `${pool}.img`);

/** LXD's default loop size: a fifth of the free space, between 5 and 30 GiB. */
function defaultLoopSizeGiB(path: string): number {
  const st = statfsSync(path);
  const freeGiB = Math.floor((st.bavail * st.bsize) / 2 ** 30);
  if (freeGiB > 30) return 30;
  if (freeGiB > 5) return Math.floor(freeGiB / 5) || 5;
  return 5;
}

const btrfs = (args: string[], opts: SlowOpts = {}) => run("btrfs", args, { signal: opts.signal });

async function deleteSubvolume(path: string, opts: SlowOpts = {}): Promise<void> {
  assertNoMountsUnder(path);
  if (!(await isSubvolume(path))) {
    await rm(path, { recursive: true, force: true });
    return;
  }
  // Snapshots of read-only image subvolumes are writable, but the images themselves are not.
  await btrfs(["property", "set", "-ts", path, "ro", "false"], opts).catch(() => {});
  for (const nested of await nestedSubvolumes(path)) {
    await btrfs(["property", "set", "-ts", nested, "ro", "false"], opts).catch(() => {});
    await btrfs(["subvolume", "delete", nested], opts);
  }
  await btrfs(["subvolume", "delete", path], opts);
}

class BtrfsDriver implements Driver {
  readonly info = info;
  readonly mountPath: string;
  private readonly source: string;
  private readonly kind: SourceKind;
  private readonly mountOptions: string;

  constructor(
    private readonly pool: PoolSpec,
    env: DriverEnv,
  ) {
    this.mountPath = poolMountPath(env, pool.name);
    this.source = pool.config.source ?? loopFile(env, pool.name);
    this.kind = this.source === loopFile(env, pool.name) || this.source.endsWith(".img") ? "loop" : this.source.startsWith("/dev/") ? "device" : "path";
    this.mountOptions = pool.config["btrfs.mount_options"] || DEFAULT_MOUNT_OPTIONS;
  }

  async createPool(opts: SlowOpts = {}): Promise<void> {
    await withRevert(async (revert) => {
      if (existsSync(this.mountPath) && (await readdir(this.mountPath)).length > 0) throw new Error(`Storage pool directory "${this.mountPath}" already exists`);
      await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
      revert.add(() => rm(this.mountPath, { recursive: true, force: true }));
      if (this.kind === "loop") {
        if (existsSync(this.source)) throw new Error(`Storage pool loop file "${this.source}" already exists`);
        await mkdir(dirname(this.source), { recursive: true, mode: 0o700 });
        const size = parseByteSize(this.pool.config.size ?? "");
        if (size < 109 * 2 ** 20) throw new Error(`Invalid value for option "size": btrfs needs at least 109MiB`);
        const fh = await open(this.source, "wx", 0o600);
        revert.add(() => unlink(this.source));
        try {
          await fh.truncate(size);
        } finally {
          await fh.close();
        }
        await run("mkfs.btrfs", ["-f", "-L", this.pool.name, this.source], { signal: opts.signal });
      } else if (this.kind === "device") {
        await run("mkfs.btrfs", ["-f", "-L", this.pool.name, this.source], { signal: opts.signal });
      } else if (!existsSync(this.source)) {
        await btrfs(["subvolume", "create", this.source], opts);
        revert.add(() => btrfs(["subvolume", "delete", this.source]));
      } else if (!(await isSubvolume(this.source))) {
        throw new Error(`Source path "${this.source}" exists and isn't a btrfs subvolume`);
      } else if ((await readdir(this.source)).length > 0) {
        throw new Error(`Source path "${this.source}" isn't empty`);
      }
      await this.mountPool(opts);
      revert.add(() => this.unmountPool());
      await createPoolDirs(this.mountPath);
    });
  }

  async deletePool(opts: SlowOpts = {}): Promise<void> {
    if (this.kind === "path") {
      if (existsSync(this.mountPath)) {
        await this.mountPool(opts).catch(() => {});
        await removePoolDirs(this.mountPath);
        await this.unmountPool(opts);
      }
      if (await isSubvolume(this.source)) {
        if ((await readdir(this.source)).length === 0) await btrfs(["subvolume", "delete", this.source], opts);
      }
    } else {
      await this.unmountPool(opts);
      if (this.kind === "loop") await rm(this.source, { force: true });
      else await run("wipefs", ["-a", this.source], { signal: opts.signal, reject: false });
    }
    if (isMountPoint(this.mountPath)) throw new Error(`Storage pool "${this.pool.name}" is still mounted`);
    assertNoMountsUnder(this.mountPath);
    await rm(this.mountPath, { recursive: true, force: true });
  }

  async mountPool(opts: SlowOpts = {}): Promise<boolean> {
    if (isMountPoint(this.mountPath)) return false;
    await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
    if (this.kind === "path") {
      await bindMount(this.source, this.mountPath, opts.signal);
    } else {
      if (!existsSync(this.source)) throw new Error(`Source "${this.source}" doesn't exist`);
      // mount(8) sets the loop device up with autoclear: unmounting frees it.
      await mountFs(this.source, this.mountPath, "btrfs", (this.kind === "loop" ? "loop," : "") + this.mountOptions, opts.signal);
    }
    return true;
  }

  async unmountPool(opts: SlowOpts = {}): Promise<boolean> {
    return unmountAll(this.mountPath, opts.signal);
  }

  async updatePool(previous: Record<string, string>, next: Record<string, string>, opts: SlowOpts = {}): Promise<void> {
    if ((previous.size ?? "") !== (next.size ?? "")) {
      if (this.kind !== "loop") throw new Error("Cannot resize a pool that isn't backed by a loop file");
      const size = parseByteSize(next.size ?? "");
      const current = (await stat(this.source)).size;
      if (size < current) throw new Error("Pool cannot be shrunk");
      await this.mountPool(opts);
      const loop = mountTable().find((m) => m.mountPoint === this.mountPath)?.source;
      const fh = await open(this.source, "r+");
      try {
        await fh.truncate(size);
      } finally {
        await fh.close();
      }
      if (loop?.startsWith("/dev/loop")) await run("losetup", ["-c", loop], { signal: opts.signal });
      await btrfs(["filesystem", "resize", "max", this.mountPath], opts);
    }
    const before = previous["btrfs.mount_options"] || DEFAULT_MOUNT_OPTIONS;
    const after = next["btrfs.mount_options"] || DEFAULT_MOUNT_OPTIONS;
    if (before !== after && this.kind !== "path") {
      await run("mount", ["-o", `remount,${after}`, this.mountPath], { signal: opts.signal });
    }
  }

  async usage() {
    return fsUsage(this.mountPath);
  }

  volumePath(vol: Volume): string {
    return join(this.mountPath, volumeSubPath(vol));
  }

  async hasVolume(vol: Volume): Promise<boolean> {
    return isSubvolume(this.volumePath(vol));
  }

  async createVolume(vol: Volume, fill?: (path: string) => Promise<void>, opts: SlowOpts = {}): Promise<void> {
    const path = this.volumePath(vol);
    if (existsSync(path)) throw new Error(`Volume "${vol.name}" already exists on disk`);
    await withRevert(async (revert) => {
      await btrfs(["subvolume", "create", path], opts);
      revert.add(() => deleteSubvolume(path));
      if (isBlockVolume(vol)) {
        // As LXD: nodatacow on the subvolume, inherited by the disk file (random writes would
        // otherwise fragment it and keep old extents counted in the quota).
        await run("chattr", ["+C", path], { signal: opts.signal }).catch((e) => Promise.reject(new Error(`Failed setting nodatacow on "${path}": ${(e as Error).message}`)));
        await createDiskFile(path, vol);
        return;
      }
      if (vol.config.size && vol.type !== "image") await this.setVolumeQuota(vol, vol.config.size, opts);
      await fill?.(path);
      // Image volumes are the read-only origin of instance snapshots.
      if (vol.type === "image") await btrfs(["property", "set", "-ts", path, "ro", "true"], opts);
    });
  }

  async createVolumeFromCopy(vol: Volume, source: Volume, opts: SlowOpts = {}): Promise<void> {
    const path = this.volumePath(vol);
    if (existsSync(path)) throw new Error(`Volume "${vol.name}" already exists on disk`);
    await btrfs(["subvolume", "snapshot", this.volumePath(source), path], opts);
  }

  async deleteVolume(vol: Volume, opts: SlowOpts = {}): Promise<void> {
    await deleteSubvolume(this.volumePath(vol), opts);
    if (isSnapshotVolume(vol)) await removeSnapshotsDirIfEmpty(dirname(this.volumePath(vol)));
  }

  async renameVolume(vol: Volume, newName: string): Promise<void> {
    await renameVolumePath(this.mountPath, (v) => this.volumePath(v), vol, newName);
  }

  /** Snapshots are read-only subvolume snapshots. */
  async createSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const target = this.volumePath(snapshotVolume(vol, snapshot));
    if (existsSync(target)) throw new Error(`Volume "${vol.name}/${snapshot}" already exists on disk`);
    await withRevert(async (revert) => {
      if (await ensureSnapshotsDir(dirname(target))) revert.add(() => removeSnapshotsDirIfEmpty(dirname(target)));
      await btrfs(["subvolume", "snapshot", "-r", this.volumePath(vol), target], opts);
    });
  }

  /** A writable snapshot of the snapshot is swapped in for the volume. */
  async restoreSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const path = this.volumePath(vol);
    const { staged } = restorePaths(path);
    const remove = (p: string) => deleteSubvolume(p);
    await remove(staged);
    try {
      await btrfs(["subvolume", "snapshot", this.volumePath(snapshotVolume(vol, snapshot)), staged], opts);
      await swapIn(path, remove);
    } catch (e) {
      await remove(staged).catch(() => {});
      throw e;
    }
  }

  async recoverVolume(vol: Volume): Promise<void> {
    await recoverSwap(this.volumePath(vol), (p) => deleteSubvolume(p));
  }


  async exportVolume(vol: Volume, target: string, opts: SlowOpts & { link?: boolean } = {}): Promise<void> {
    if (isBlockVolume(vol)) return exportDisk(diskFileOf(this.volumePath(vol)), target, opts.signal);
    await copyTreeOut(await this.mountVolume(vol), target, opts);
  }
  async syncVolume(vol: Volume, source: string, opts: SlowOpts & { bwlimit?: string } = {}): Promise<void> {
    if (isBlockVolume(vol)) await copyDisk(source, diskFileOf(this.volumePath(vol)), opts.signal);
    else await localCopy(source, this.volumePath(vol), opts);
  }

  async diskPath(vol: Volume): Promise<string> {
    return diskFileOf(this.volumePath(vol));
  }

  async mountVolume(vol: Volume): Promise<string> {
    return this.volumePath(vol);
  }

  /** The volume's level-0 qgroup and its exclusive usage, as upstream reads them; undefined when quotas are off. */
  private async qgroup(path: string): Promise<{ id: string; usage: number } | "none" | undefined> {
    const r = await run("btrfs", ["qgroup", "show", "-e", "-f", "--raw", path], { reject: false });
    if (r.exitCode !== 0) return undefined;
    for (const line of r.stdout.split("\n")) {
      if (line === "" || line.toLowerCase().startsWith("qgroupid") || line.startsWith("-")) continue;
      const fields = line.trim().split(/\s+/);
      // Four fields from older btrfs-progs, a fifth (the path) from 6.x.
      if (fields.length !== 4 && fields.length !== 5) continue;
      return { id: fields[0], usage: Number(fields[2]) };
    }
    return "none";
  }

  /**
   * `size` as a btrfs qgroup limit on the volume's subvolume (quotas are enabled on the pool
   * the first time, and the subvolume's qgroup made if missing), as upstream's SetVolumeQuota.
   */
  async setVolumeQuota(vol: Volume, size: string, opts: SlowOpts = {}): Promise<void> {
    // A block volume's size is its disk's (grown, never shrunk), not a qgroup limit.
    if (isBlockVolume(vol)) return resizeDiskFile(this.volumePath(vol), size);
    const bytes = parseByteSize(size);
    const path = this.volumePath(vol);
    let q = await this.qgroup(path);
    if (q === undefined) {
      if (bytes <= 0) return;
      await btrfs(["quota", "enable", this.mountPath], opts);
      q = await this.qgroup(path);
    }
    if (q === "none") {
      const show = await btrfs(["subvolume", "show", path], opts);
      const id = /Subvolume ID:\s*(\d+)/.exec(show.stdout)?.[1];
      if (!id) throw new Error(`Failed to find subvolume id for "${path}"`);
      await btrfs(["qgroup", "create", `0/${id}`, path], opts);
      q = await this.qgroup(path);
    }
    if (q === undefined || q === "none") throw new Error(`Failed to find the qgroup of "${path}"`);
    if (bytes > 0) {
      await btrfs(["qgroup", "limit", String(bytes), q.id, path], opts);
      await btrfs(["qgroup", "limit", "-e", "none", q.id, path], opts);
    } else {
      await btrfs(["qgroup", "limit", "none", q.id, path], opts);
    }
  }

  /** Usage from the volume's qgroup; undefined (upstream's "Not supported") while quotas are off. */
  async volumeUsage(vol: Volume): Promise<number | undefined> {
    const q = await this.qgroup(this.volumePath(vol));
    return q === undefined || q === "none" ? undefined : q.usage;
  }

  async unmountVolume(): Promise<boolean> {
    return false;
  }
  /** A private directory of the pool for transient subvolumes (LXD's "<type dir>/migration.XXXX", mode 0100). */
  private async scratchDir(vol: Volume): Promise<string> {
    const dir = await mkdtemp(join(this.mountPath, VOLUME_DIRS[vol.type], "migration."));
    await chmod(dir, 0o100);
    return dir;
  }

  private async removeScratch(dir: string): Promise<void> {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = join(dir, e.name);
      if (await isSubvolume(p)) await deleteSubvolume(p).catch(() => {});
      else if (e.isDirectory()) await this.removeScratch(p);
    }
    await rm(dir, { recursive: true, force: true });
  }

  /** As LXD's migrateVolumeOptimized (root subvolumes only: nested ones are refused, as LXD without the subvolumes feature). */
  async sendStreams(vol: Volume, snapshots: string[], out: StreamSink, opts: SlowOpts = {}): Promise<void> {
    const path = this.volumePath(vol);
    if ((await nestedSubvolumes(path)).length > 0) throw new Error("Subvolumes detected in source but target does not support receiving subvolumes");
    const snapPaths = snapshots.map((s) => this.volumePath(snapshotVolume(vol, s)));
    const header = [];
    for (const [i, s] of snapshots.entries()) header.push({ path: "/", snapshot: s, readonly: true, uuid: (await subvolumeFacts(snapPaths[i])).uuid });
    header.push({ path: "/", snapshot: "", readonly: false, uuid: (await subvolumeFacts(path)).uuid });
    await out.header(header);
    let parent = "";
    for (const [i, s] of snapshots.entries()) {
      // A snapshot must be read-only to be sent (ours are; one made writable is set back after).
      const wasRw = !(await subvolumeFacts(snapPaths[i])).readonly;
      if (wasRw) await setReadonly(snapPaths[i], true);
      try {
        await sendSubvolume(snapPaths[i], parent, (d) => out.stream(s, d), opts.signal);
      } finally {
        if (wasRw) await setReadonly(snapPaths[i], false).catch(() => {});
      }
      parent = snapPaths[i];
    }
    // The volume is sent from a read-only snapshot of it (consistent, and sendable while in use).
    const scratch = await this.scratchDir(vol);
    try {
      const ro = join(scratch, ".migration-send");
      await btrfs(["subvolume", "snapshot", "-r", path, ro], opts);
      await sendSubvolume(ro, parent, (d) => out.stream(undefined, d), opts.signal);
    } finally {
      await this.removeScratch(scratch);
    }
  }

  /** As LXD's createVolumeFromMigrationOptimized, with each stream checked before anything is placed. */
  async receiveStreams(vol: Volume, snapshots: string[], next: (snapshot: string | undefined) => Readable | Promise<Readable>, opts: SlowOpts = {}): Promise<StagedStreams> {
    const scratch = await this.scratchDir(vol);
    const received = new Map<string, { path: string; uuid: string }>();
    const discard = () => this.removeScratch(scratch);
    try {
      for (const [i, s] of [...snapshots, undefined].entries()) {
        const dir = join(scratch, String(i));
        await mkdir(dir, { mode: 0o700 });
        const path = await receiveSubvolume(dir, await next(s), opts.signal);
        received.set(s ?? "", { path, uuid: (await subvolumeFacts(path)).receivedUuid });
      }
    } catch (e) {
      await discard();
      throw e;
    }
    // As LXD: a read-only subvolume cannot be moved, so it is made writable (which drops its
    // Received UUID), moved, and given back its flag and its Received UUID (later incremental
    // streams find their parent by it).
    const move = async (key: string, target: string, readonly: boolean) => {
      const got = received.get(key);
      if (!got) throw new Error(`Nothing received for ${key ? `snapshot "${key}"` : "the volume"}`);
      await setReadonly(got.path, false, true);
      await rename(got.path, target);
      received.delete(key);
      native.btrfsSetReceivedUuid(target, got.uuid);
      if (readonly) await setReadonly(target, true);
    };
    return {
      placeSnapshot: async (snapshot) => {
        const target = this.volumePath(snapshotVolume(vol, snapshot));
        if (existsSync(target)) throw new Error(`Volume "${vol.name}/${snapshot}" already exists on disk`);
        await ensureSnapshotsDir(dirname(target));
        await move(snapshot, target, true);
      },
      placeVolume: async () => {
        const path = this.volumePath(vol);
        if (existsSync(path)) await deleteSubvolume(path, opts);
        await move("", path, false);
        if (vol.config.size && !isBlockVolume(vol)) await this.setVolumeQuota(vol, vol.config.size, opts);
      },
      discard,
    };
  }
}


export const btrfsDriver: DriverDefinition = {
  info,
  async probe() {
    if (!/\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8"))) return undefined;
    const out = await run("btrfs", ["--version"], { reject: false }).catch(() => undefined);
    const m = out && /v?(\d+(?:\.\d+)*)/.exec(out.stdout);
    return m ? m[1] : undefined;
  },
  fillDefaults(pool, env) {
    const config = { ...pool.config };
    if (!config.source) {
      config.source = loopFile(env, pool.name);
      if (!config.size) config.size = `${defaultLoopSizeGiB(env.lxdDir)}GiB`;
    } else if (config.size && !config.source.endsWith(".img")) {
      throw new Error(`Invalid option "size"`);
    }
    return config;
  },
  load: (pool, env) => new BtrfsDriver(pool, env),
};
