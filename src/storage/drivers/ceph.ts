// ceph: a pool is an OSD pool of a Ceph cluster (created, or an existing one taken over), marked
// in use by the placeholder image "lxd_<osd pool>"; volumes are rbd images ("custom_default_v1",
// "container_c1"); image volumes "image_<fingerprint>_<fs>" carry a protected snapshot "readonly"
// that instance volumes are cloned from; deleted images and snapshots that still hold clones are
// kept as zombies, as upstream. Everything goes through the `ceph` and `rbd` tools. Reaching a
// volume's content needs the kernel (`rbd map`); empty volumes are formatted in userspace and
// imported, so creating, snapshotting, renaming and deleting them works without it.
import { existsSync, statfsSync } from "node:fs";
import { mkdir, rename, rm, rmdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { onPath, run } from "../../os/exec.js";
import { commonPoolKeys, commonVolumeKeys, isBoolStrict } from "../config.js";
import { parseByteSize } from "../../shared/units.js";
import { isMountPoint, mountFs, mountTable, unmountAll } from "../host.js";
import { withRevert } from "../reverter.js";
import { localCopy } from "../rsync.js";
import { exportBlockVolume } from "../tree-copy.js";
import { CannotBeShrunk, copyDisk, diskSize, roundBlockSize } from "../block-disk.js";
import { blockFilesystem, Ceph, rbdImageName } from "./ceph-rbd.js";
import { createPoolDirs, poolMountPath, removePoolDirs } from "./dir.js";
import { isSnapshotVolume, snapshotsSubPath, snapshotVolume, volumeSubPath, type Driver, type DriverDefinition, type DriverEnv, type DriverInfo, type PoolSpec, type SlowOpts, type Volume, isBlockVolume } from "./types.js";

/** Upstream's default size of block volumes. */
const DEFAULT_BLOCK_SIZE = "10GiB";
const FILESYSTEMS = ["ext4", "xfs", "btrfs"];
const isFilesystem = (v: string) => {
  if (!FILESYSTEMS.includes(v)) throw new Error(`Invalid value "${v}" (not one of ${FILESYSTEMS.join(", ")})`);
};
const isPgNum = (v: string) => {
  if (!/^\d+$/.test(v)) throw new Error(`Invalid value "${v}" (not a number)`);
};
const RBD_FEATURES = ["layering", "striping", "exclusive-lock", "object-map", "fast-diff", "deep-flatten", "journaling", "data-pool"];
const isFeatures = (v: string) => {
  for (const f of v.split(",").map((x) => x.trim())) if (!RBD_FEATURES.includes(f)) throw new Error(`Invalid value "${v}" (unknown RBD feature "${f}")`);
};
const any = () => {};

const info: DriverInfo = {
  name: "ceph",
  remote: true,
  optimizedImages: true,
  poolKeys: {
    ...commonPoolKeys,
    "ceph.cluster_name": { validate: any, doc: "Name of the Ceph cluster", default: "ceph" },
    "ceph.osd.force_reuse": { validate: isBoolStrict, doc: "Force using an OSD storage pool already in use by another LXD" },
    "ceph.osd.pg_num": { validate: isPgNum, doc: "Number of placement groups for the OSD storage pool", default: "32" },
    "ceph.osd.pool_name": { validate: any, doc: "Name of the OSD storage pool" },
    "ceph.rbd.clone_copy": { validate: isBoolStrict, doc: "Copy with lightweight clones instead of full copies", default: "true" },
    "ceph.rbd.du": { validate: isBoolStrict, doc: "Use rbd du to obtain disk usage of stopped instances", default: "true" },
    "ceph.rbd.features": { validate: isFeatures, doc: "Comma-separated RBD features to enable on volumes", default: "layering" },
    "ceph.user.name": { validate: any, doc: "The Ceph user to use", default: "admin" },
    "volatile.pool.pristine": { validate: isBoolStrict, doc: "Whether the OSD pool was created (or found empty) by LXD" },
  },
  volumeKeys: {
    ...commonVolumeKeys,
    "block.filesystem": { validate: isFilesystem, doc: "Filesystem of the storage volume", default: "ext4" },
    "block.mount_options": { validate: any, doc: "Mount options for block devices", default: "discard" },
  },
  mutablePoolKeys: ["ceph.rbd.clone_copy", "ceph.rbd.du", "ceph.rbd.features", "ceph.osd.force_reuse"],
};

class CephDriver implements Driver {
  readonly info = info;
  readonly mountPath: string;
  private readonly ceph: Ceph;

  constructor(
    private readonly pool: PoolSpec,
    private readonly env: DriverEnv,
  ) {
    this.mountPath = poolMountPath(env, pool.name);
    const c = pool.config;
    this.ceph = new Ceph({ cluster: c["ceph.cluster_name"] || "ceph", user: c["ceph.user.name"] || "admin", osdPool: c["ceph.osd.pool_name"] || c.source || pool.name });
  }

  private image(vol: Volume, zombie = false): string {
    return rbdImageName(vol, blockFilesystem(vol, this.pool.config), zombie);
  }

  private get placeholder(): string {
    return `lxd_${this.ceph.client.osdPool}`;
  }

  private get features(): string[] {
    return (this.pool.config["ceph.rbd.features"] || "layering").split(",").flatMap((f) => ["--image-feature", f.trim()]);
  }

  async createPool(opts: SlowOpts = {}): Promise<Record<string, string>> {
    return withRevert(async (revert) => {
      const extra: Record<string, string> = {};
      if (!(await this.ceph.osdPoolExists())) {
        await this.ceph.ceph(["osd", "pool", "create", this.ceph.client.osdPool, this.pool.config["ceph.osd.pg_num"] || "32"], opts);
        revert.add(() => this.ceph.deleteOsdPool());
        await this.ceph.rbd(["pool", "init", this.ceph.client.osdPool], opts).catch((e: Error) => this.env.log.warn({ err: e }, "Failed to initialize pool"));
        await this.ceph.rbd(["create", ...this.features, "--size", "0B", this.ceph.spec(this.placeholder)], opts);
        extra["volatile.pool.pristine"] = "true";
      } else {
        if (await this.ceph.exists(this.placeholder)) {
          if (this.pool.config["ceph.osd.force_reuse"] !== "true") {
            throw new Error(`Pool '${this.ceph.client.osdPool}' in cluster '${this.ceph.client.cluster}' seems to be in use by another LXD instance. Use 'ceph.osd.force_reuse=true' to force`);
          }
          extra["volatile.pool.pristine"] = "false";
        } else {
          await this.ceph.rbd(["create", ...this.features, "--size", "0B", this.ceph.spec(this.placeholder)], opts);
          revert.add(() => this.ceph.rbd(["rm", "--no-progress", this.ceph.spec(this.placeholder)]));
          extra["volatile.pool.pristine"] = "true";
        }
        const pg = await this.ceph.ceph(["osd", "pool", "get", this.ceph.client.osdPool, "pg_num"], opts);
        const m = /pg_num:\s*(\d+)/.exec(pg.stdout);
        if (!m) throw new Error(`Failed to parse number of placement groups for pool: ${pg.stdout}`);
        extra["ceph.osd.pg_num"] = m[1];
      }
      await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
      revert.add(() => rm(this.mountPath, { recursive: true, force: true }));
      await createPoolDirs(this.mountPath);
      return extra;
    });
  }

  async deletePool(opts: SlowOpts = {}): Promise<void> {
    const exists = await this.ceph.osdPoolExists();
    if (!exists) this.env.log.warn({ pool: this.ceph.client.osdPool }, "Pool does not exist");
    // An OSD pool LXD created (or found empty) goes; one taken over keeps its images.
    if (exists && this.pool.config["volatile.pool.pristine"] === "true") await this.ceph.deleteOsdPool(opts);
    if (existsSync(this.mountPath)) await removePoolDirs(this.mountPath);
    await rmdir(this.mountPath).catch(() => {});
  }

  async mountPool(): Promise<boolean> {
    // Nothing to mount: the cluster is reached per command.
    return false;
  }

  async unmountPool(): Promise<boolean> {
    return false;
  }

  /** The mutable keys (clone_copy, du, features, force_reuse) only steer later commands. */
  async updatePool(): Promise<void> {}

  async usage() {
    const r = await this.ceph.ceph(["df", "--format", "json"]);
    const df = JSON.parse(r.stdout) as { pools: { name: string; stats: { bytes_used: number; max_avail: number } }[] };
    const p = df.pools.find((x) => x.name === this.ceph.client.osdPool);
    if (!p) throw new Error(`OSD pool "${this.ceph.client.osdPool}" not found in "ceph df"`);
    return { space: { used: p.stats.bytes_used, total: p.stats.bytes_used + p.stats.max_avail }, inodes: { used: 0, total: 0 } };
  }

  volumePath(vol: Volume): string {
    return join(this.mountPath, volumeSubPath(vol));
  }

  async hasVolume(vol: Volume): Promise<boolean> {
    if (!isSnapshotVolume(vol)) return this.ceph.exists(this.image(vol));
    const [image, snap] = this.image(vol).split("@");
    if (!(await this.ceph.exists(image))) return false;
    return (await this.ceph.snapshots(image)).some((s) => s.name === snap);
  }

  private sizeBytes(vol: Volume): number {
    const bytes = parseByteSize(vol.config.size || this.pool.config["volume.size"] || DEFAULT_BLOCK_SIZE);
    return isBlockVolume(vol) ? roundBlockSize(bytes) : bytes;
  }

  async createVolume(vol: Volume, fill?: (path: string) => Promise<void>, opts: SlowOpts = {}): Promise<void> {
    const image = this.image(vol);
    if (await this.ceph.exists(image)) throw new Error(`Volume "${vol.name}" already exists on disk`);
    // A deleted image volume still holding clones comes back from the dead, as upstream.
    if (vol.type === "image" && (await this.ceph.exists(this.image(vol, true)))) {
      await this.ceph.rbd(["mv", this.ceph.spec(this.image(vol, true)), this.ceph.spec(image)], opts);
      return;
    }
    // A block volume is an empty image: no filesystem, nothing to mount.
    if (isBlockVolume(vol)) return void (await this.ceph.rbd(["create", ...this.features, "--size", `${this.sizeBytes(vol)}B`, this.ceph.spec(image)], opts));
    await withRevert(async (revert) => {
      await mkdir(this.volumePath(vol), { recursive: true, mode: 0o711 });
      revert.add(() => rmdir(this.volumePath(vol)).catch(() => {}));
      if (!fill) {
        // An empty volume: format a sparse file in userspace and import it (no kernel mapping needed).
        await this.importFormatted(image, blockFilesystem(vol, this.pool.config), this.sizeBytes(vol), opts);
        revert.add(() => this.ceph.removeImage(image, image));
        return;
      }
      await this.ceph.rbd(["create", ...this.features, "--size", `${this.sizeBytes(vol)}B`, this.ceph.spec(image)], opts);
      revert.add(() => this.ceph.removeImage(image, image));
      const dev = await this.ceph.map(image, opts);
      revert.add(() => this.ceph.unmapAll(image));
      await mkfs(dev, blockFilesystem(vol, this.pool.config), opts);
      const path = await this.mountVolume(vol, opts);
      revert.add(() => unmountAll(path));
      await fill(path);
      if (vol.type === "image") {
        await this.unmountVolume(vol, opts);
        await this.ceph.rbd(["snap", "create", this.ceph.spec(`${image}@readonly`)], opts);
        await this.ceph.rbd(["snap", "protect", this.ceph.spec(`${image}@readonly`)], opts);
      }
    });
  }

  /** Make `image` an rbd image of `size` bytes holding an empty `fs`, built in a sparse file. */
  private async importFormatted(image: string, fs: string, size: number, opts: SlowOpts): Promise<void> {
    const dir = join(this.env.lxdDir, "disks");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `.rbd-${this.pool.name}-${image}.img`);
    try {
      await run("truncate", ["-s", String(size), file], { signal: opts.signal });
      await mkfs(file, fs, opts);
      await this.ceph.rbd(["import", "--no-progress", ...this.features, file, this.ceph.spec(image)], opts);
    } finally {
      await rm(file, { force: true });
    }
  }

  async createVolumeFromCopy(vol: Volume, source: Volume, opts: SlowOpts = {}): Promise<void> {
    const image = this.image(vol);
    const from = `${this.image(source)}@readonly`;
    if (this.pool.config["ceph.rbd.clone_copy"] === "false") await this.ceph.rbd(["cp", "--no-progress", this.ceph.spec(from), this.ceph.spec(image)], opts);
    else await this.ceph.rbd(["clone", ...this.features, this.ceph.spec(from), this.ceph.spec(image)], opts);
    await mkdir(this.volumePath(vol), { recursive: true, mode: 0o711 });
  }

  async deleteVolume(vol: Volume, opts: SlowOpts = {}): Promise<void> {
    await this.unmountVolume(vol, opts);
    if (isSnapshotVolume(vol)) {
      const [image, snap] = this.image(vol).split("@");
      if (await this.ceph.exists(image)) await this.ceph.removeSnapshotOrZombie(image, snap, opts);
      await rmdir(this.volumePath(vol)).catch(() => {});
      await rmdir(dirname(this.volumePath(vol))).catch(() => {});
      return;
    }
    const image = this.image(vol);
    await this.ceph.unmapAll(image, opts);
    await this.ceph.removeImage(image, this.image(vol, true), opts);
    await rmdir(this.volumePath(vol)).catch(() => {});
  }

  async renameVolume(vol: Volume, newName: string, opts: SlowOpts = {}): Promise<void> {
    const target = { ...vol, name: newName };
    const wasMounted = await this.unmountVolume(vol, opts);
    if (isSnapshotVolume(vol)) {
      await this.ceph.rbd(["snap", "rename", this.ceph.spec(this.image(vol)), this.ceph.spec(this.image(target))], opts);
    } else {
      await this.ceph.unmapAll(this.image(vol), opts);
      await this.ceph.rbd(["mv", this.ceph.spec(this.image(vol)), this.ceph.spec(this.image(target))], opts);
      if (existsSync(join(this.mountPath, snapshotsSubPath(vol)))) await rename(join(this.mountPath, snapshotsSubPath(vol)), join(this.mountPath, snapshotsSubPath(target)));
    }
    await rename(this.volumePath(vol), this.volumePath(target)).catch(() => mkdir(this.volumePath(target), { recursive: true, mode: 0o711 }));
    if (wasMounted) await this.mountVolume(target, opts);
  }

  async createSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const snap = snapshotVolume(vol, snapshot);
    if (await this.hasVolume(snap)) throw new Error(`Volume "${snap.name}" already exists on disk`);
    // A mounted volume is frozen for a consistent snapshot.
    const path = this.volumePath(vol);
    const frozen = isMountPoint(path) && (await run("fsfreeze", ["--freeze", path], { reject: false })).exitCode === 0;
    try {
      await this.ceph.rbd(["snap", "create", this.ceph.spec(this.image(snap))], opts);
    } finally {
      if (frozen) await run("fsfreeze", ["--unfreeze", path], { reject: false });
    }
    await mkdir(this.volumePath(snap), { recursive: true, mode: 0o700 });
  }

  async restoreSnapshot(vol: Volume, snapshot: string, opts: SlowOpts = {}): Promise<void> {
    const snap = snapshotVolume(vol, snapshot);
    if (!(await this.hasVolume(snap))) throw new Error("Snapshot not found");
    const wasMounted = await this.unmountVolume(vol, opts);
    try {
      await this.ceph.rbd(["snap", "rollback", "--no-progress", this.ceph.spec(this.image(snap))], opts);
    } finally {
      if (wasMounted) await this.mountVolume(vol, opts);
    }
  }

  async syncVolume(vol: Volume, source: string, opts: SlowOpts & { bwlimit?: string } = {}): Promise<void> {
    if (!isBlockVolume(vol)) return void (await localCopy(source, await this.mountVolume(vol, opts), opts));
    // A block volume's image grows to hold the source disk (never shrinks), then takes its bytes.
    const image = this.image(vol);
    const need = await diskSize(source);
    if (need > (await this.ceph.size(image))) await this.ceph.rbd(["resize", "--no-progress", "--size", `${need}B`, this.ceph.spec(image)], opts);
    try {
      await copyDisk(source, await this.diskPath(vol, opts), opts.signal);
    } finally {
      await this.ceph.unmapAll(image);
    }
  }

  /** A block volume's disk: its image (or snapshot) mapped by the kernel (the boundary). */
  async diskPath(vol: Volume, opts: SlowOpts = {}): Promise<string> {
    return this.ceph.map(this.image(vol), { ...opts, readOnly: isSnapshotVolume(vol) });
  }

  /** Copy the volume's content out (mounting a block volume for the copy when it wasn't); a block volume's image with `rbd export`. */
  async exportVolume(vol: Volume, target: string, opts: SlowOpts & { link?: boolean } = {}): Promise<void> {
    if (isBlockVolume(vol)) return void (await this.ceph.rbd(["export", "--no-progress", this.ceph.spec(this.image(vol)), target], opts));
    await exportBlockVolume(this, vol, target, opts, isMountPoint);
  }

  /** Map the image (the kernel's boundary) and mount its filesystem; a block volume's is only mapped. */
  async mountVolume(vol: Volume, opts: SlowOpts = {}): Promise<string> {
    if (isBlockVolume(vol)) return this.diskPath(vol, opts);
    const path = this.volumePath(vol);
    if (isMountPoint(path)) return path;
    const image = this.image(vol);
    const dev = await this.ceph.map(image, { ...opts, readOnly: isSnapshotVolume(vol) });
    try {
      await mkdir(path, { recursive: true, mode: 0o711 });
      const options = [isSnapshotVolume(vol) ? "ro" : "", vol.config["block.mount_options"] || "discard"].filter(Boolean).join(",");
      await mountFs(dev, path, blockFilesystem(vol, this.pool.config), options, opts.signal);
    } catch (e) {
      await this.ceph.unmapAll(image);
      throw e;
    }
    return path;
  }

  async unmountVolume(vol: Volume, opts: SlowOpts = {}): Promise<boolean> {
    if (isBlockVolume(vol)) {
      await this.ceph.unmapAll(this.image(vol), opts);
      return false;
    }
    const did = await unmountAll(this.volumePath(vol), opts.signal);
    if (did) await this.ceph.unmapAll(this.image(vol), opts);
    return did;
  }

  async volumeUsage(vol: Volume): Promise<number | undefined> {
    const path = this.volumePath(vol);
    if (isMountPoint(path)) {
      const s = statfsSync(path);
      return (s.blocks - s.bfree) * s.bsize;
    }
    if (this.pool.config["ceph.rbd.du"] === "false") return undefined;
    // rbd du of the image lists it and its snapshots: a volume counts them all, a snapshot itself, as upstream.
    const [image, snap] = this.image(vol).split("@");
    const du = await this.ceph.rbdJson<{ images: { name: string; snapshot?: string; used_size: number }[] }>(["du", this.ceph.spec(image)]).catch(() => undefined);
    if (!du) return undefined;
    return snap ? (du.images.find((i) => i.snapshot === snap)?.used_size ?? 0) : du.images.reduce((n, i) => n + i.used_size, 0);
  }

  /**
   * Resize: the image grows or shrinks with `rbd resize` and its filesystem with it, which needs
   * the image mapped; the mapping is done first so a host without rbd changes nothing.
   */
  async setVolumeQuota(vol: Volume, size: string, opts: SlowOpts = {}): Promise<void> {
    const image = this.image(vol);
    if (isBlockVolume(vol)) {
      // As LXD: "" or "0" changes nothing; the image grows, never shrinks.
      if (parseByteSize(size) <= 0) return;
      const want = roundBlockSize(parseByteSize(size));
      const have = await this.ceph.size(image);
      if (want === have) return;
      if (want < have) throw new CannotBeShrunk();
      return void (await this.ceph.rbd(["resize", "--no-progress", "--size", `${want}B`, this.ceph.spec(image)], opts));
    }
    const want = parseByteSize(size || this.pool.config["volume.size"] || DEFAULT_BLOCK_SIZE);
    const have = await this.ceph.size(image);
    if (want === have) return;
    const fs = blockFilesystem(vol, this.pool.config);
    if (want < have && fs !== "ext4") throw new Error(`Shrinking the storage volume is not supported for filesystem "${fs}"`);
    const mountedFrom = mountTable().find((m) => m.mountPoint === this.volumePath(vol))?.source;
    if (want < have && mountedFrom) throw new Error("Cannot shrink a mounted volume");
    const device = mountedFrom ?? (await this.ceph.map(image, opts));
    try {
      if (want > have) {
        await this.ceph.rbd(["resize", "--no-progress", "--size", `${want}B`, this.ceph.spec(image)], opts);
        await growFs(device, this.volumePath(vol), fs, opts);
      } else {
        await run("e2fsck", ["-f", "-y", device], { signal: opts.signal, reject: false });
        await run("resize2fs", [device, `${Math.floor(want / 1024)}K`], { signal: opts.signal });
        await this.ceph.rbd(["resize", "--no-progress", "--allow-shrink", "--size", `${want}B`, this.ceph.spec(image)], opts);
      }
    } finally {
      if (!mountedFrom) await this.ceph.unmapAll(image);
    }
  }
}

async function mkfs(target: string, fs: string, opts: SlowOpts): Promise<void> {
  const args: Record<string, string[]> = {
    ext4: ["-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0"],
    xfs: ["-q", "-f", "-K"],
    btrfs: ["-q", "-f", "-K"],
  };
  await run(`mkfs.${fs}`, [...(args[fs] ?? []), target], { signal: opts.signal });
}

async function growFs(device: string, mountPath: string, fs: string, opts: SlowOpts): Promise<void> {
  if (fs === "ext4") await run("resize2fs", [device], { signal: opts.signal });
  else if (fs === "xfs") await run("xfs_growfs", [mountPath], { signal: opts.signal });
  else await run("btrfs", ["filesystem", "resize", "max", mountPath], { signal: opts.signal });
}

/** "ceph version 16.2.15 (…) pacific (stable)" → "16.2.15" */
export async function cephVersion(tool: string): Promise<string | undefined> {
  const r = await run(tool, ["--version"], { reject: false }).catch(() => undefined);
  if (r?.exitCode !== 0) return undefined;
  return /version (\d+(?:\.\d+)*)/.exec(r.stdout)?.[1];
}

let toolsVersion: Promise<string | undefined> | undefined;

/**
 * The Ceph version as LXD's ceph and cephfs drivers read it: both tools on the PATH, the version
 * from `rbd --version` (a small binary; `ceph` is a Python program that takes a second to start),
 * asked once per daemon.
 */
export function cephToolsVersion(): Promise<string | undefined> {
  if (!onPath("ceph") || !onPath("rbd")) return Promise.resolve(undefined);
  return (toolsVersion ??= cephVersion("rbd"));
}

export const cephDriver: DriverDefinition = {
  info,
  probe() {
    // The tools are what the driver needs; the kernel's rbd support is asked only when mapping.
    return cephToolsVersion();
  },
  async unavailableReason() {
    return `Required tool 'rbd' is missing`;
  },
  fillDefaults(pool) {
    const config = { ...pool.config };
    if (config.source && config["ceph.osd.pool_name"] && config.source !== config["ceph.osd.pool_name"]) {
      throw new Error(`The "source" and "ceph.osd.pool_name" property must not differ for Ceph OSD storage pools`);
    }
    config["volatile.initial_source"] = config.source ?? "";
    if (!config["volatile.initial_source"]) delete config["volatile.initial_source"];
    config["ceph.cluster_name"] ||= "ceph";
    config["ceph.user.name"] ||= "admin";
    config["ceph.osd.pg_num"] ||= "32";
    config["ceph.osd.pool_name"] = config.source || config["ceph.osd.pool_name"] || pool.name;
    config.source = config["ceph.osd.pool_name"];
    return config;
  },
  load: (pool, env) => new CephDriver(pool, env),
};
