// cephfs: a pool is a directory ("cephfs.path", from source "<fs name>/<path>") of a CephFS,
// mounted at $LXD_DIR/storage-pools/<pool> with the kernel client where the kernel has one and
// with ceph-fuse otherwise (the pool's "volatile.cephfs.client" says which). Custom filesystem
// volumes are directories; snapshots are CephFS snapshots (<volume>/.snap/<name>), reached through
// a symlink at custom-snapshots/<volume>/<name>, as upstream; size is a CephFS quota.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rename, rm, rmdir, symlink, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { onPath, run } from "../../os/exec.js";
import { commonPoolKeys, commonVolumeKeys } from "../config.js";
import { parseByteSize } from "../../shared/units.js";
import { assertNoMountsUnder, fsUsage, isMountPoint, unmountAll } from "../host.js";
import { withRevert } from "../reverter.js";
import { localCopy } from "../rsync.js";
import { copyTreeOut } from "../tree-copy.js";
import { cephToolsVersion } from "./ceph.js";
import { createPoolDirs, poolMountPath, removePoolDirs } from "./dir.js";
import { isSnapshotVolume, snapshotsSubPath, snapshotVolume, volumeSubPath, type Driver, type DriverDefinition, type DriverEnv, type DriverInfo, type PoolSpec, type SlowOpts, type Volume } from "./types.js";

const any = () => {};

const info: DriverInfo = {
  name: "cephfs",
  remote: true,
  optimizedImages: false,
  poolKeys: {
    ...commonPoolKeys,
    "cephfs.cluster_name": { validate: any, doc: "Name of the Ceph cluster", default: "ceph" },
    "cephfs.path": { validate: any, doc: "The base path for the CephFS mount" },
    "cephfs.user.name": { validate: any, doc: "The Ceph user to use", default: "admin" },
    "volatile.cephfs.client": { validate: any, doc: "How the pool is mounted here: kernel or fuse (set by the server)" },
  },
  volumeKeys: { ...commonVolumeKeys },
  mutablePoolKeys: [],
};

/** The kernel has a CephFS client (loaded, or loadable). */
async function kernelClient(): Promise<boolean> {
  const has = () => /\tceph$/m.test(readFileSync("/proc/filesystems", "utf8"));
  if (has()) return true;
  await run("modprobe", ["-q", "ceph"], { reject: false }).catch(() => undefined);
  return has();
}

class CephfsDriver implements Driver {
  readonly info = info;
  readonly mountPath: string;
  private readonly fsName: string;
  private readonly fsPath: string;
  private readonly cluster: string;
  private readonly user: string;

  constructor(
    pool: PoolSpec,
    env: DriverEnv,
  ) {
    this.mountPath = poolMountPath(env, pool.name);
    const source = pool.config["cephfs.path"] || pool.config.source || "";
    const slash = source.indexOf("/");
    this.fsName = slash < 0 ? source : source.slice(0, slash);
    this.fsPath = slash < 0 ? "/" : "/" + source.slice(slash + 1).replace(/^\/+/, "");
    this.cluster = pool.config["cephfs.cluster_name"] || "ceph";
    this.user = pool.config["cephfs.user.name"] || "admin";
  }

  private ceph(args: string[], opts: SlowOpts = {}) {
    return run("ceph", ["--name", `client.${this.user}`, "--cluster", this.cluster, ...args], { signal: opts.signal });
  }

  /** Mount `path` of the filesystem at `target` with the kernel client or ceph-fuse; returns which. */
  private async mountAt(path: string, target: string, opts: SlowOpts): Promise<"kernel" | "fuse"> {
    if (await kernelClient()) {
      const key = (await this.ceph(["auth", "get-key", `client.${this.user}`], opts)).stdout.trim();
      const mons = JSON.parse((await this.ceph(["mon", "dump", "--format", "json"], opts)).stdout) as { mons: { public_addrs: { addrvec: { type: string; addr: string }[] } }[] };
      const addrs = mons.mons.flatMap((m) => m.public_addrs.addrvec.filter((a) => a.type === "v1").map((a) => a.addr));
      await run("mount", ["-t", "ceph", `${addrs.join(",")}:${path}`, target, "-o", `name=${this.user},secret=${key},mds_namespace=${this.fsName}`], { signal: opts.signal });
      return "kernel";
    }
    await run("ceph-fuse", ["--id", this.user, "--cluster", this.cluster, "--client_fs", this.fsName, "-r", path, target], { signal: opts.signal });
    return "fuse";
  }

  /** Run `body` with the filesystem's root mounted at a private temporary directory. */
  private async withRoot<T>(body: (root: string) => Promise<T>, opts: SlowOpts): Promise<T> {
    const tmp = await mkdtemp(join(tmpdir(), "lxd_cephfs_"));
    const mnt = join(tmp, "mount");
    await mkdir(mnt, { mode: 0o700 });
    try {
      await this.mountAt("/", mnt, opts);
      try {
        return await body(mnt);
      } finally {
        await unmountAll(mnt);
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async createPool(opts: SlowOpts = {}): Promise<Record<string, string>> {
    if (!this.fsName) throw new Error("Missing required source name/path");
    const fsExists = await run("ceph", ["--name", `client.${this.user}`, "--cluster", this.cluster, "fs", "get", this.fsName], { reject: false });
    if (fsExists.exitCode !== 0) throw new Error(`The requested '${this.fsName}' CEPHFS doesn't exist`);
    return withRevert(async (revert) => {
      const client = await this.withRoot(async (root) => {
        const dir = join(root, this.fsPath);
        const created = !existsSync(dir);
        await mkdir(dir, { recursive: true, mode: 0o755 });
        if (created) revert.add(() => this.withRoot((r) => rmdir(join(r, this.fsPath)), {}));
        if (readdirSync(dir).length > 0) throw new Error("Only empty CEPHFS paths can be used as a LXD storage pool");
        return (await kernelClient()) ? "kernel" : "fuse";
      }, opts);
      await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
      revert.add(() => rm(this.mountPath, { recursive: true, force: true }));
      await this.mountPool(opts);
      revert.add(() => this.unmountPool());
      await createPoolDirs(this.mountPath);
      return { "volatile.cephfs.client": client };
    });
  }

  async deletePool(opts: SlowOpts = {}): Promise<void> {
    if (isMountPoint(this.mountPath)) {
      await removePoolDirs(this.mountPath);
      await this.unmountPool(opts);
    }
    // The pool's directory in the filesystem goes once empty.
    const exists = await run("ceph", ["--name", `client.${this.user}`, "--cluster", this.cluster, "fs", "get", this.fsName], { reject: false });
    if (exists.exitCode === 0 && this.fsPath !== "/") {
      await this.withRoot(async (root) => {
        const dir = join(root, this.fsPath);
        if (existsSync(dir) && readdirSync(dir).length === 0) await rmdir(dir);
      }, opts);
    }
    await rmdir(this.mountPath).catch(() => {});
  }

  async mountPool(opts: SlowOpts = {}): Promise<boolean> {
    if (isMountPoint(this.mountPath)) return false;
    await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
    await this.mountAt(this.fsPath, this.mountPath, opts);
    return true;
  }

  async unmountPool(opts: SlowOpts = {}): Promise<boolean> {
    return unmountAll(this.mountPath, opts.signal);
  }

  async usage() {
    const u = await fsUsage(this.mountPath);
    return { space: u.space, inodes: { used: 0, total: 0 } };
  }

  volumePath(vol: Volume): string {
    return join(this.mountPath, volumeSubPath(vol));
  }

  /** The CephFS snapshot directory behind a snapshot volume. */
  private cephSnapPath(vol: Volume): string {
    const [parent, snap] = vol.name.split("/", 2);
    return join(this.volumePath({ ...vol, name: parent }), ".snap", snap);
  }

  async hasVolume(vol: Volume): Promise<boolean> {
    return existsSync(isSnapshotVolume(vol) ? this.cephSnapPath(vol) : this.volumePath(vol));
  }

  async createVolume(vol: Volume, fill?: (path: string) => Promise<void>, opts: SlowOpts = {}): Promise<void> {
    const path = this.volumePath(vol);
    if (existsSync(path)) throw new Error(`Volume "${vol.name}" already exists on disk`);
    await withRevert(async (revert) => {
      await mkdir(path, { mode: 0o711 });
      revert.add(() => rm(path, { recursive: true, force: true }));
      if (vol.config.size) await this.setVolumeQuota(vol, vol.config.size);
      await fill?.(path);
    });
  }

  async syncVolume(vol: Volume, source: string, opts: SlowOpts & { bwlimit?: string } = {}): Promise<void> {
    await localCopy(source, this.volumePath(vol), opts);
  }

  async deleteVolume(vol: Volume): Promise<void> {
    if (isSnapshotVolume(vol)) {
      if (existsSync(this.cephSnapPath(vol))) await rmdir(this.cephSnapPath(vol));
      await unlink(this.volumePath(vol)).catch(() => {});
      await rmdir(dirname(this.volumePath(vol))).catch(() => {});
      return;
    }
    const path = this.volumePath(vol);
    assertNoMountsUnder(path);
    // A volume's CephFS snapshots must go before its directory can.
    for (const snap of await readdir(join(path, ".snap")).catch(() => [] as string[])) await this.deleteVolume(snapshotVolume(vol, snap));
    await rm(path, { recursive: true, force: true });
  }

  async renameVolume(vol: Volume, newName: string): Promise<void> {
    const target = { ...vol, name: newName };
    if (isSnapshotVolume(vol)) {
      await rename(this.cephSnapPath(vol), this.cephSnapPath(target));
      await unlink(this.volumePath(vol)).catch(() => {});
      await symlink(this.cephSnapPath(target), this.volumePath(target));
      return;
    }
    await rename(this.volumePath(vol), this.volumePath(target));
    // The snapshots follow the directory; their links are remade to point at the new name.
    const oldLinks = join(this.mountPath, snapshotsSubPath(vol));
    if (!existsSync(oldLinks)) return;
    await rename(oldLinks, join(this.mountPath, snapshotsSubPath(target)));
    for (const snap of await readdir(join(this.mountPath, snapshotsSubPath(target)))) {
      const link = this.volumePath(snapshotVolume(target, snap));
      await unlink(link);
      await symlink(this.cephSnapPath(snapshotVolume(target, snap)), link);
    }
  }

  async createSnapshot(vol: Volume, snapshot: string): Promise<void> {
    const snap = snapshotVolume(vol, snapshot);
    if (existsSync(this.cephSnapPath(snap))) throw new Error(`Volume "${snap.name}" already exists on disk`);
    await mkdir(this.cephSnapPath(snap), { mode: 0o711 });
    await mkdir(join(this.mountPath, snapshotsSubPath(vol)), { recursive: true, mode: 0o700 });
    await symlink(this.cephSnapPath(snap), this.volumePath(snap));
  }

  /** Copy the snapshot's tree back in place, as upstream (the volume's directory carries its snapshots, so it is never swapped). */
  async restoreSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const snap = this.cephSnapPath(snapshotVolume(vol, snapshot));
    if (!existsSync(snap)) throw new Error("Snapshot not found");
    await localCopy(snap, this.volumePath(vol), opts);
  }

  async exportVolume(vol: Volume, target: string, opts: SlowOpts & { link?: boolean } = {}): Promise<void> {
    await copyTreeOut(await this.mountVolume(vol), target, opts);
  }

  async mountVolume(vol: Volume): Promise<string> {
    return this.volumePath(vol);
  }

  async unmountVolume(): Promise<boolean> {
    return false;
  }

  /** Bytes below the volume, from CephFS's recursive statistics. */
  async volumeUsage(vol: Volume): Promise<number | undefined> {
    const r = await run("getfattr", ["--only-values", "-n", "ceph.dir.rbytes", this.volumePath(vol)], { reject: false });
    return r.exitCode === 0 ? Number(r.stdout.trim()) : undefined;
  }

  async setVolumeQuota(vol: Volume, size: string): Promise<void> {
    const bytes = size ? parseByteSize(size) : 0;
    await run("setfattr", ["-n", "ceph.quota.max_bytes", "-v", String(bytes), this.volumePath(vol)]);
  }
}

export const cephfsDriver: DriverDefinition = {
  info,
  async probe() {
    // The kernel client or ceph-fuse mounts it; the ceph tool talks to the cluster. With the
    // tools installed, the version and the kernel client are asked at once (two processes in
    // parallel, not one after the other on the daemon's start-up path).
    if (!onPath("ceph") || !onPath("rbd")) return undefined;
    const [version, kernel] = await Promise.all([cephToolsVersion(), kernelClient()]);
    if (!version) return undefined;
    if (kernel) return version;
    return onPath("ceph-fuse") ? version : undefined;
  },
  async unavailableReason() {
    return `Required tool 'ceph-fuse' is missing (and the kernel has no ceph module)`;
  },
  fillDefaults(pool) {
    const config = { ...pool.config };
    if (!config.source) throw new Error("Missing required source name/path");
    if (config["cephfs.path"] && config["cephfs.path"] !== config.source) throw new Error(`cephfs.path must match the source`);
    config["volatile.initial_source"] = config.source;
    config["cephfs.cluster_name"] ||= "ceph";
    config["cephfs.user.name"] ||= "admin";
    config["cephfs.path"] = config.source;
    return config;
  },
  load: (pool, env) => new CephfsDriver(pool, env),
};
