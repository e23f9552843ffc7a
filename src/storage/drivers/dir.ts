// dir: volumes are plain directories under the pool; a pool with a `source` elsewhere is
// bind-mounted onto $LXD_DIR/storage-pools/<pool>.
import { localCopy } from "../rsync.js";
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm, rmdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { run } from "../../os/exec.js";
import { assertNoMountsUnder, bindMount, fsUsage, isMountPoint, unmountAll } from "../host.js";
import { commonPoolKeys, commonVolumeKeys } from "../config.js";
import { withRevert } from "../reverter.js";
import { isSnapshotVolume, POOL_DIRS, snapshotsSubPath, snapshotVolume, volumeSubPath, type Driver, type DriverDefinition, type DriverEnv, type DriverInfo, type PoolSpec, type SlowOpts, type Volume, isBlockVolume } from "./types.js";
import { copyTreeOut } from "../tree-copy.js";
import { BLOCK_DISK_FILE, blockSizeOf, copyDisk, ensureBlockFile, exportDisk } from "../block-disk.js";
import { parseByteSize } from "../../shared/units.js";

const info: DriverInfo = {
  name: "dir",
  remote: false,
  optimizedImages: false,
  poolKeys: commonPoolKeys,
  volumeKeys: commonVolumeKeys,
  mutablePoolKeys: [],
};

export const poolMountPath = (env: DriverEnv, pool: string) => join(env.lxdDir, "storage-pools", pool);

/** Directory modes as upstream: instance trees traversable, the rest private. */
export const POOL_DIR_MODES: Record<string, number> = {
  buckets: 0o711,
  containers: 0o711,
  "containers-snapshots": 0o711,
};

export async function createPoolDirs(mountPath: string): Promise<void> {
  for (const d of POOL_DIRS) await mkdir(join(mountPath, d), { mode: POOL_DIR_MODES[d] ?? 0o700 }).catch((e) => (e.code === "EEXIST" ? undefined : Promise.reject(e)));
}

/** Remove the (empty) pool directories; a non-empty one stays and fails the call. */
export async function removePoolDirs(mountPath: string): Promise<void> {
  for (const d of POOL_DIRS) await rmdir(join(mountPath, d)).catch((e) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
}

/** Copy a tree keeping ownership, modes, xattrs, ACLs and hard links (`dst` must not exist). */
export async function copyTree(src: string, dst: string, signal?: AbortSignal): Promise<void> {
  await run("cp", ["-a", "--reflink=auto", "--", src, dst], { signal });
}

/** Where a restore builds the new content, and where the old content waits until the swap is done. */
export const restorePaths = (path: string) => ({ staged: join(dirname(path), `.${basename(path)}.restore`), old: join(dirname(path), `.${basename(path)}.old`) });

/**
 * Swap the staged tree into `path`: the old tree is renamed away first and renamed back if the
 * swap fails, so `path` always holds one complete tree. `remove` deletes a tree (a subvolume on btrfs).
 */
export async function swapIn(path: string, remove: (p: string) => Promise<void>): Promise<void> {
  const { staged, old } = restorePaths(path);
  await remove(old);
  await rename(path, old);
  try {
    await rename(staged, path);
  } catch (e) {
    await rename(old, path);
    throw e;
  }
  await remove(old);
}

/** After a crash in the middle of a restore: put the old tree back if the swap was half done, drop leftovers. */
export async function recoverSwap(path: string, remove: (p: string) => Promise<void>): Promise<void> {
  const { staged, old } = restorePaths(path);
  if (!existsSync(path) && existsSync(old)) await rename(old, path);
  if (existsSync(staged)) await remove(staged);
  if (existsSync(old)) await remove(old);
}

/** The parent's snapshot directory (mode 0700, as upstream); true if it was created now. */
export async function ensureSnapshotsDir(dir: string): Promise<boolean> {
  if (existsSync(dir)) return false;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return true;
}

/** Remove a parent's snapshot directory once its last snapshot is gone. */
export async function removeSnapshotsDirIfEmpty(dir: string): Promise<void> {
  await rmdir(dir).catch(() => {});
}

/** A parent volume's snapshots follow it when it is renamed. */
async function renameSnapshotsDir(mountPath: string, vol: Volume, newName: string): Promise<void> {
  const from = join(mountPath, snapshotsSubPath(vol));
  if (existsSync(from)) await rename(from, join(mountPath, snapshotsSubPath({ ...vol, name: newName })));
}

/** Rename a volume directory (dir) or subvolume (btrfs) and, for a parent, its snapshots with it. */
export async function renameVolumePath(mountPath: string, pathOf: (v: Volume) => string, vol: Volume, newName: string): Promise<void> {
  await rename(pathOf(vol), pathOf({ ...vol, name: newName }));
  if (isSnapshotVolume(vol)) return;
  try {
    await renameSnapshotsDir(mountPath, vol, newName);
  } catch (e) {
    await rename(pathOf({ ...vol, name: newName }), pathOf(vol));
    throw e;
  }
}

/** The raw disk of a block volume kept as a file in its directory (dir, btrfs): LXD's genericVFSGetVolumeDiskPath. */
export const diskFileOf = (volumeDir: string) => join(volumeDir, BLOCK_DISK_FILE);

/** A file-backed block volume's new disk (in its fresh directory or subvolume), of its size. */
export async function createDiskFile(volumeDir: string, vol: Volume): Promise<void> {
  await ensureBlockFile(diskFileOf(volumeDir), blockSizeOf(vol.config));
}

/** Grow a file-backed block volume's disk to `size` ("" or "0": unchanged), as LXD's SetVolumeQuota on block content. */
export async function resizeDiskFile(volumeDir: string, size: string): Promise<void> {
  const bytes = parseByteSize(size);
  if (bytes <= 0) return;
  await ensureBlockFile(diskFileOf(volumeDir), bytes);
}

class DirDriver implements Driver {
  readonly info = info;
  readonly mountPath: string;
  private readonly source: string;
  private readonly log: DriverEnv["log"];

  constructor(pool: PoolSpec, env: DriverEnv) {
    this.mountPath = poolMountPath(env, pool.name);
    this.source = pool.config.source || this.mountPath;
    this.log = env.log;
  }

  private get bound(): boolean {
    return this.source !== this.mountPath;
  }

  async createPool(): Promise<void> {
    await withRevert(async (revert) => {
      if (this.bound) {
        if (!existsSync(this.source)) throw new Error(`Source path '${this.source}' doesn't exist`);
        if ((await readdir(this.source)).length > 0) throw new Error(`Source path '${this.source}' isn't empty`);
      }
      if (existsSync(this.mountPath) && (await readdir(this.mountPath)).length > 0) throw new Error(`Storage pool directory "${this.mountPath}" already exists`);
      await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
      revert.add(() => rm(this.mountPath, { recursive: true, force: true }));
      if (await this.mountPool()) revert.add(() => this.unmountPool());
      await createPoolDirs(this.mountPath);
      revert.add(() => removePoolDirs(this.mountPath));
    });
  }

  async deletePool(): Promise<void> {
    await this.mountPool();
    await removePoolDirs(this.mountPath);
    await this.unmountPool();
    assertNoMountsUnder(this.mountPath);
    await rm(this.mountPath, { recursive: true, force: true });
  }

  async mountPool(): Promise<boolean> {
    if (!this.bound || isMountPoint(this.mountPath)) return false;
    if (!existsSync(this.source)) throw new Error(`Source path '${this.source}' doesn't exist`);
    await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
    await bindMount(this.source, this.mountPath);
    return true;
  }

  async unmountPool(): Promise<boolean> {
    if (!this.bound) return false;
    return unmountAll(this.mountPath);
  }

  usage() {
    return fsUsage(this.mountPath);
  }

  volumePath(vol: Volume): string {
    return join(this.mountPath, volumeSubPath(vol));
  }

  async hasVolume(vol: Volume): Promise<boolean> {
    return existsSync(this.volumePath(vol));
  }

  async createVolume(vol: Volume, fill?: (path: string) => Promise<void>): Promise<void> {
    const path = this.volumePath(vol);
    await withRevert(async (revert) => {
      await mkdir(path, { mode: 0o711 }).catch((e) => Promise.reject(e.code === "EEXIST" ? new Error(`Volume "${vol.name}" already exists on disk`) : e));
      revert.add(() => rm(path, { recursive: true, force: true }));
      if (isBlockVolume(vol)) await createDiskFile(path, vol);
      else await fill?.(path);
    });
  }

  async diskPath(vol: Volume): Promise<string> {
    return diskFileOf(this.volumePath(vol));
  }

  /** Block volumes: the disk grows. Filesystem volumes: no quotas on a plain directory (LXD without project quotas). */
  async setVolumeQuota(vol: Volume, size: string): Promise<void> {
    if (isBlockVolume(vol)) return resizeDiskFile(this.volumePath(vol), size);
    if (parseByteSize(size) > 0) this.log.warn({ volume: vol.name, size }, "The backing filesystem doesn't support quotas, skipping set quota");
  }

  async deleteVolume(vol: Volume): Promise<void> {
    const path = this.volumePath(vol);
    assertNoMountsUnder(path);
    await rm(path, { recursive: true, force: true });
    if (isSnapshotVolume(vol)) await removeSnapshotsDirIfEmpty(dirname(path));
  }

  async renameVolume(vol: Volume, newName: string): Promise<void> {
    await renameVolumePath(this.mountPath, (v) => this.volumePath(v), vol, newName);
  }

  async createSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const target = this.volumePath(snapshotVolume(vol, snapshot));
    if (existsSync(target)) throw new Error(`Volume "${vol.name}/${snapshot}" already exists on disk`);
    await withRevert(async (revert) => {
      if (await ensureSnapshotsDir(dirname(target))) revert.add(() => removeSnapshotsDirIfEmpty(dirname(target)));
      revert.add(() => rm(target, { recursive: true, force: true }));
      await copyTree(this.volumePath(vol), target, opts.signal);
    });
  }

  async restoreSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const path = this.volumePath(vol);
    const { staged } = restorePaths(path);
    const remove = (p: string) => rm(p, { recursive: true, force: true });
    await remove(staged);
    try {
      await copyTree(this.volumePath(snapshotVolume(vol, snapshot)), staged, opts.signal);
      await swapIn(path, remove);
    } catch (e) {
      await remove(staged);
      throw e;
    }
  }

  async recoverVolume(vol: Volume): Promise<void> {
    await recoverSwap(this.volumePath(vol), (p) => rm(p, { recursive: true, force: true }));
  }


  async exportVolume(vol: Volume, target: string, opts: SlowOpts & { link?: boolean } = {}): Promise<void> {
    if (isBlockVolume(vol)) return exportDisk(diskFileOf(this.volumePath(vol)), target, opts.signal);
    await copyTreeOut(await this.mountVolume(vol), target, opts);
  }
  async syncVolume(vol: Volume, source: string, opts: SlowOpts & { bwlimit?: string } = {}): Promise<void> {
    if (isBlockVolume(vol)) await copyDisk(source, diskFileOf(this.volumePath(vol)), opts.signal);
    else await localCopy(source, this.volumePath(vol), opts);
  }

  async mountVolume(vol: Volume): Promise<string> {
    return this.volumePath(vol);
  }

  async unmountVolume(): Promise<boolean> {
    return false;
  }
}

export const dirDriver: DriverDefinition = {
  info,
  probe: async () => "1",
  fillDefaults: (pool, env) => ({ ...pool.config, source: pool.config.source || poolMountPath(env, pool.name) }),
  load: (pool, env) => new DirDriver(pool, env),
};
