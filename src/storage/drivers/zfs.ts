// zfs: a pool is a zpool (on a loop file by default, or a block device) or an existing
// dataset; volumes are datasets mounted (mountpoint=legacy) under
// $LXD_DIR/storage-pools/<pool>/<type>/<name>; image volumes carry a @readonly snapshot that
// instance volumes are cloned from. Works only where the zfs kernel module and tools exist.
import { localCopy } from "../rsync.js";
import { existsSync, readFileSync, statfsSync } from "node:fs";
import { mkdir, open, readdir, rename, rm, rmdir, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { run, CommandError } from "../../os/exec.js";
import { commonPoolKeys, commonVolumeKeys, isBoolStrict, isSize } from "../config.js";
import { parseByteSize } from "../../shared/units.js";
import { isMountPoint, mountFs, unmountAll } from "../host.js";
import { withRevert } from "../reverter.js";
import { createPoolDirs, poolMountPath, removePoolDirs } from "./dir.js";
import { isSnapshotVolume, snapshotsSubPath, snapshotVolume, VOLUME_DIRS, volumeSubPath, type Driver, type DriverDefinition, type DriverEnv, type DriverInfo, type PoolSpec, type SlowOpts, type Volume, isBlockVolume } from "./types.js";
import { copyTreeOut } from "../tree-copy.js";
import { CannotBeShrunk, copyDisk, diskSize, exportDeviceDisk, roundBlockSize } from "../block-disk.js";

const info: DriverInfo = {
  name: "zfs",
  remote: false,
  optimizedImages: true,
  poolKeys: {
    ...commonPoolKeys,
    size: { validate: isSize, doc: "Size of the loop file backing the zpool" },
    "zfs.pool_name": { validate: () => {}, doc: "Name of the zpool (or dataset) to use" },
    "zfs.clone_copy": { validate: (v) => (v === "rebase" ? undefined : isBoolStrict(v)), doc: "Copy instances as clones" },
    "zfs.export": { validate: isBoolStrict, doc: "Export the zpool when unmounting", default: "true" },
  },
  volumeKeys: {
    ...commonVolumeKeys,
    "zfs.remove_snapshots": { validate: isBoolStrict, doc: "Remove snapshots as needed" },
    "zfs.use_refquota": { validate: isBoolStrict, doc: "Use refquota instead of quota" },
    "zfs.reserve_space": { validate: isBoolStrict, doc: "Use reservation/refreservation along with quota/refquota" },
    "zfs.blocksize": { validate: isSize, doc: "Size of the ZFS block" },
  },
  mutablePoolKeys: [],
};

/** Datasets every pool holds, as upstream. */
const POOL_DATASETS = ["containers", "images", "custom", "deleted", "virtual-machines", "deleted/containers", "deleted/images", "deleted/custom", "deleted/virtual-machines"];

const loopFile = (env: DriverEnv, pool: string) => join(env.lxdDir, "disks", `${pool}.img`);
const zfs = (args: string[], opts: SlowOpts = {}) => run("zfs", args, { signal: opts.signal });
const zpool = (args: string[], opts: SlowOpts = {}) => run("zpool", args, { signal: opts.signal });

async function datasetExists(name: string): Promise<boolean> {
  const r = await run("zfs", ["list", "-H", "-o", "name", name], { reject: false });
  return r.exitCode === 0;
}

class ZfsDriver implements Driver {
  readonly info = info;
  readonly mountPath: string;
  private readonly source: string;
  /** The zpool or dataset everything lives under. */
  private readonly root: string;
  private readonly kind: "loop" | "device" | "dataset";

  constructor(
    private readonly pool: PoolSpec,
    env: DriverEnv,
  ) {
    this.mountPath = poolMountPath(env, pool.name);
    this.source = pool.config.source ?? loopFile(env, pool.name);
    this.kind = this.source.startsWith("/dev/") ? "device" : this.source.startsWith("/") ? "loop" : "dataset";
    this.root = pool.config["zfs.pool_name"] || (this.kind === "dataset" ? this.source : pool.name);
  }

  /** A volume's dataset; a snapshot volume "<parent>/<snap>" is the zfs snapshot "<parent dataset>@snapshot-<snap>", as upstream. */
  private dataset(vol: Volume): string {
    if (isSnapshotVolume(vol)) {
      const [parent, snap] = vol.name.split("/", 2);
      return `${this.root}/${VOLUME_DIRS[vol.type]}/${parent}@snapshot-${snap}`;
    }
    return `${this.root}/${VOLUME_DIRS[vol.type]}/${vol.name}`;
  }

  private get zpoolName(): string {
    return this.root.split("/")[0];
  }

  async createPool(opts: SlowOpts = {}): Promise<void> {
    await withRevert(async (revert) => {
      if (this.kind === "loop") {
        if (existsSync(this.source)) throw new Error(`Storage pool loop file "${this.source}" already exists`);
        await mkdir(dirname(this.source), { recursive: true, mode: 0o700 });
        const fh = await open(this.source, "wx", 0o600);
        revert.add(() => unlink(this.source));
        try {
          await fh.truncate(parseByteSize(this.pool.config.size ?? ""));
        } finally {
          await fh.close();
        }
      }
      if (this.kind === "dataset") {
        if (await datasetExists(this.root)) {
          const children = await zfs(["list", "-H", "-r", "-d", "1", "-o", "name", this.root], opts);
          if (children.stdout.split("\n").filter(Boolean).length > 1) throw new Error(`Provided ZFS pool (or dataset) isn't empty`);
        } else {
          await zfs(["create", "-p", "-o", "mountpoint=legacy", this.root], opts);
          revert.add(() => zfs(["destroy", "-r", this.root]));
        }
      } else {
        await zpool(["create", "-f", "-m", "none", "-O", "compression=on", this.root, this.source], opts);
        revert.add(() => zpool(["destroy", this.root]));
      }
      for (const ds of POOL_DATASETS) await zfs(["create", "-o", "mountpoint=legacy", `${this.root}/${ds}`], opts);
      await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
      revert.add(() => rm(this.mountPath, { recursive: true, force: true }));
      await createPoolDirs(this.mountPath);
    });
  }

  async deletePool(opts: SlowOpts = {}): Promise<void> {
    if (this.kind === "dataset") {
      if (await datasetExists(this.root)) await zfs(["destroy", "-r", this.root], opts);
    } else {
      await this.mountPool(opts).catch(() => false);
      const imported = await run("zpool", ["list", "-H", "-o", "name", this.root], { reject: false });
      if (imported.exitCode === 0) await zpool(["destroy", this.root], opts);
      if (this.kind === "loop") await rm(this.source, { force: true });
    }
    if (existsSync(this.mountPath)) await removePoolDirs(this.mountPath);
    await rmdir(this.mountPath).catch(() => {});
  }

  async mountPool(opts: SlowOpts = {}): Promise<boolean> {
    const imported = await run("zpool", ["list", "-H", "-o", "name", this.zpoolName], { reject: false });
    if (imported.exitCode === 0) return false;
    const args = this.kind === "loop" ? ["import", "-d", dirname(this.source), this.zpoolName] : ["import", this.zpoolName];
    await zpool(args, opts);
    return true;
  }

  async unmountPool(opts: SlowOpts = {}): Promise<boolean> {
    // Volumes are mounted individually; the pool is exported when zfs.export allows it.
    for (const dir of Object.values(VOLUME_DIRS)) {
      const parent = join(this.mountPath, dir);
      for (const name of await readdir(parent).catch(() => [] as string[])) await unmountAll(join(parent, name), opts.signal);
    }
    if (this.kind === "dataset" || this.pool.config["zfs.export"] === "false") return false;
    const r = await run("zpool", ["export", this.zpoolName], { signal: opts.signal, reject: false });
    return r.exitCode === 0;
  }

  async usage() {
    const r = await zfs(["get", "-Hp", "-o", "value", "used,available", this.root]);
    const [used, available] = r.stdout.split("\n").map(Number);
    return { space: { used, total: used + available }, inodes: { used: 0, total: 0 } };
  }

  volumePath(vol: Volume): string {
    return join(this.mountPath, volumeSubPath(vol));
  }

  async hasVolume(vol: Volume): Promise<boolean> {
    return datasetExists(this.dataset(vol));
  }

  async createVolume(vol: Volume, fill?: (path: string) => Promise<void>, opts: SlowOpts = {}): Promise<void> {
    const ds = this.dataset(vol);
    // A block volume is a zvol, invisible (volmode=none) until its disk is asked for, as LXD's.
    if (isBlockVolume(vol)) return void (await zfs(["create", "-V", String(this.blockBytes(vol)), "-o", "volmode=none", ds], opts));
    await withRevert(async (revert) => {
      const props = ["-o", "mountpoint=legacy", "-o", "canmount=noauto"];
      if (vol.config.size) props.push("-o", `${vol.config["zfs.use_refquota"] === "true" ? "refquota" : "quota"}=${parseByteSize(vol.config.size)}`);
      await zfs(["create", ...props, ds], opts);
      revert.add(() => this.destroyDataset(ds));
      const path = await this.mountVolume(vol, opts);
      revert.add(() => unmountAll(path));
      await fill?.(path);
      if (vol.type === "image") {
        await this.unmountVolume(vol, opts);
        await zfs(["snapshot", `${ds}@readonly`], opts);
        await zfs(["set", "readonly=on", ds], opts);
      }
    });
  }

  async createVolumeFromCopy(vol: Volume, source: Volume, opts: SlowOpts = {}): Promise<void> {
    const ds = this.dataset(vol);
    await zfs(["clone", "-o", "mountpoint=legacy", "-o", "canmount=noauto", `${this.dataset(source)}@readonly`, ds], opts);
    try {
      await this.mountVolume(vol, opts);
    } catch (e) {
      await this.destroyDataset(ds);
      throw e;
    }
  }

  /** Destroy a dataset; one with dependent clones (an image in use) is parked under deleted/. */
  private async destroyDataset(ds: string, opts: SlowOpts = {}): Promise<void> {
    if (!(await datasetExists(ds))) return;
    try {
      await zfs(["destroy", "-r", ds], opts);
    } catch (e) {
      if (!(e instanceof CommandError) || !/dependent clones/.test(e.stderr)) throw e;
      const parked = ds.replace(`${this.root}/`, `${this.root}/deleted/`);
      await zfs(["rename", ds, parked], opts);
    }
  }

  async deleteVolume(vol: Volume, opts: SlowOpts = {}): Promise<void> {
    await this.unmountVolume(vol, opts);
    if (isSnapshotVolume(vol)) {
      if (await datasetExists(this.dataset(vol))) await zfs(["destroy", this.dataset(vol)], opts);
      await rmdir(this.volumePath(vol)).catch(() => {});
      await rmdir(dirname(this.volumePath(vol))).catch(() => {});
      return;
    }
    await this.destroyDataset(this.dataset(vol), opts);
    await rmdir(this.volumePath(vol)).catch(() => {});
  }

  async renameVolume(vol: Volume, newName: string, opts: SlowOpts = {}): Promise<void> {
    const target = { ...vol, name: newName };
    const wasMounted = await this.unmountVolume(vol, opts);
    // A parent's snapshots follow it in zfs; their mount directories are moved along.
    if (!isSnapshotVolume(vol)) for (const snap of await this.snapshotNames(vol)) await this.unmountVolume(snapshotVolume(vol, snap), opts);
    await zfs(["rename", this.dataset(vol), this.dataset(target)], opts);
    await rename(this.volumePath(vol), this.volumePath(target)).catch(() => mkdir(this.volumePath(target), { recursive: true, mode: 0o711 }));
    if (!isSnapshotVolume(vol) && existsSync(join(this.mountPath, snapshotsSubPath(vol)))) await rename(join(this.mountPath, snapshotsSubPath(vol)), join(this.mountPath, snapshotsSubPath(target)));
    if (wasMounted) await this.mountVolume(target, opts);
  }

  /** A volume's snapshot names, oldest first. */
  private async snapshotNames(vol: Volume): Promise<string[]> {
    const r = await run("zfs", ["list", "-H", "-t", "snapshot", "-o", "name", "-s", "createtxg", "-d", "1", this.dataset(vol)], { reject: false });
    if (r.exitCode !== 0) return [];
    return r.stdout
      .split("\n")
      .map((l) => l.split("@")[1] ?? "")
      .filter((n) => n.startsWith("snapshot-"))
      .map((n) => n.slice("snapshot-".length));
  }

  /** Snapshots are zfs snapshots "@snapshot-<name>" (read-only by nature). */
  async createSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const snap = snapshotVolume(vol, snapshot);
    if (await datasetExists(this.dataset(snap))) throw new Error(`Volume "${snap.name}" already exists on disk`);
    await zfs(["snapshot", this.dataset(snap)], opts);
  }

  /** A rollback, which zfs allows from the newest snapshot only (upstream's refusal otherwise). */
  async restoreSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const names = await this.snapshotNames(vol);
    if (!names.includes(snapshot)) throw new Error("Snapshot not found");
    if (names[names.length - 1] !== snapshot) throw new Error("ZFS can only restore from the latest snapshot. Delete newer snapshots or copy the snapshot into a new volume instead");
    const wasMounted = await this.unmountVolume(vol, opts);
    try {
      await zfs(["rollback", this.dataset(snapshotVolume(vol, snapshot))], opts);
    } finally {
      if (wasMounted) await this.mountVolume(vol, opts);
    }
  }


  async exportVolume(vol: Volume, target: string, opts: SlowOpts & { link?: boolean } = {}): Promise<void> {
    if (isBlockVolume(vol)) return exportDeviceDisk(this, vol, target, opts);
    await copyTreeOut(await this.mountVolume(vol), target, opts);
  }
  async syncVolume(vol: Volume, source: string, opts: SlowOpts & { bwlimit?: string } = {}): Promise<void> {
    if (!isBlockVolume(vol)) return void (await localCopy(source, await this.mountVolume(vol, opts), opts));
    // The zvol grows to hold the source disk (never shrinks), then takes its bytes.
    const need = await diskSize(source);
    if (need > (await this.volsize(vol))) await zfs(["set", `volsize=${need}`, this.dataset(vol)], opts);
    await copyDisk(source, await this.diskPath(vol, opts), opts.signal);
  }

  private blockBytes(vol: Volume): number {
    return roundBlockSize(parseByteSize(vol.config.size || this.pool.config["volume.size"] || "10GiB"));
  }

  private async volsize(vol: Volume): Promise<number> {
    return Number((await zfs(["get", "-Hp", "-o", "value", "volsize", this.dataset(vol)])).stdout.trim());
  }

  /**
   * A block volume's disk: its zvol made visible (volmode=dev; a snapshot through its parent's
   * snapdev=visible) and the device udev creates for it.
   */
  async diskPath(vol: Volume, opts: SlowOpts = {}): Promise<string> {
    const ds = this.dataset(vol);
    if (isSnapshotVolume(vol)) await zfs(["set", "snapdev=visible", ds.split("@")[0]], opts);
    else await zfs(["set", "volmode=dev", ds], opts);
    const dev = join("/dev/zvol", ds);
    for (let i = 0; i < 100 && !existsSync(dev); i++) await new Promise((r) => setTimeout(r, 100));
    if (!existsSync(dev)) throw new Error(`Failed to find the device of ZFS volume "${ds}"`);
    return dev;
  }

  /** Block volumes: the zvol grows to `size` ("" or "0": unchanged), never shrinks. Filesystems: the dataset's quota (or refquota). */
  async setVolumeQuota(vol: Volume, size: string, opts: SlowOpts = {}): Promise<void> {
    const bytes = parseByteSize(size);
    if (isBlockVolume(vol)) {
      if (bytes <= 0) return;
      const want = roundBlockSize(bytes);
      const have = await this.volsize(vol);
      if (want === have) return;
      if (want < have) throw new CannotBeShrunk();
      return void (await zfs(["set", `volsize=${want}`, this.dataset(vol)], opts));
    }
    const key = vol.config["zfs.use_refquota"] === "true" ? "refquota" : "quota";
    await zfs(["set", `${key}=${bytes > 0 ? bytes : "none"}`, this.dataset(vol)], opts);
  }

  async mountVolume(vol: Volume, opts: SlowOpts = {}): Promise<string> {
    if (isBlockVolume(vol)) return this.diskPath(vol, opts);
    const path = this.volumePath(vol);
    if (isMountPoint(path)) return path;
    await mkdir(path, { recursive: true, mode: 0o711 });
    await mountFs(this.dataset(vol), path, "zfs", isSnapshotVolume(vol) ? "ro" : "", opts.signal);
    return path;
  }

  async unmountVolume(vol: Volume, opts: SlowOpts = {}): Promise<boolean> {
    if (isBlockVolume(vol)) {
      // The zvol goes invisible again (a snapshot's devices with its parent's snapdev).
      const ds = this.dataset(vol);
      if (await datasetExists(isSnapshotVolume(vol) ? ds.split("@")[0] : ds)) await run("zfs", ["set", isSnapshotVolume(vol) ? "snapdev=hidden" : "volmode=none", isSnapshotVolume(vol) ? ds.split("@")[0] : ds], { signal: opts.signal, reject: false });
      return false;
    }
    return unmountAll(this.volumePath(vol), opts.signal);
  }

  async volumeUsage(vol: Volume): Promise<number | undefined> {
    const r = await run("zfs", ["get", "-Hp", "-o", "value", "used", this.dataset(vol)], { reject: false });
    return r.exitCode === 0 ? Number(r.stdout) : undefined;
  }
}

/** LXD's default loop size: a fifth of the free space, between 5 and 30 GiB. */
function defaultLoopSizeGiB(path: string): number {
  const st = statfsSync(path);
  const freeGiB = Math.floor((st.bavail * st.bsize) / 2 ** 30);
  if (freeGiB > 30) return 30;
  if (freeGiB > 5) return Math.floor(freeGiB / 5) || 5;
  return 5;
}

export const zfsDriver: DriverDefinition = {
  info,
  async probe() {
    // The module's version file answers without spawning; the tools must be installed too.
    const version = readFileSafe("/sys/module/zfs/version");
    if (!version) return undefined;
    const tools = (await run("zfs", ["version"], { reject: false }).catch(() => undefined))?.exitCode === 0;
    return tools ? version.trim().split("-")[0] : undefined;
  },
  async unavailableReason() {
    // As upstream: try to load the module and report why that failed.
    const r = await run("modprobe", ["-b", "zfs"], { reject: false }).catch((e: Error) => ({ exitCode: -1, stderr: e.message }));
    if (r.exitCode !== 0) return `Error loading "zfs" module: Failed to run: modprobe -b zfs: exit status ${r.exitCode} (${r.stderr.trim()})`;
    return `Required tool 'zfs' is missing`;
  },
  fillDefaults(pool, env) {
    const config = { ...pool.config };
    if (!config.source) {
      config.source = loopFile(env, pool.name);
      if (!config.size) config.size = `${defaultLoopSizeGiB(env.lxdDir)}GiB`;
    }
    if (!config["zfs.pool_name"]) config["zfs.pool_name"] = config.source.startsWith("/") ? pool.name : config.source;
    return config;
  },
  load: (pool, env) => new ZfsDriver(pool, env),
};

function readFileSafe(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}
