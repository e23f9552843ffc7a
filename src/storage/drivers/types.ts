// The storage driver contract: a driver only touches the host, through Volume values.
// It knows nothing of the database, projects or API objects (the pool service does).
import type { Logger } from "pino";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { KeyTable } from "../../config/keys.js";

export const VOLUME_TYPES = ["container", "virtual-machine", "image", "custom"] as const;
export type VolumeType = (typeof VOLUME_TYPES)[number];

/** What a volume holds: a filesystem tree, or (custom block volumes) a raw disk. */
export const CONTENT_TYPES = ["filesystem", "block"] as const;
export type ContentType = (typeof CONTENT_TYPES)[number];

/** A volume as the host sees it. `name` is the on-disk name (e.g. "c1", "proj_c1", "default_vol", a fingerprint). */
export interface Volume {
  type: VolumeType;
  name: string;
  config: Record<string, string>;
  /** "block": a raw disk of `size` bytes (LXD's default 10GiB), no filesystem; absent: "filesystem". */
  contentType?: ContentType;
}

export const isBlockVolume = (vol: Volume): boolean => vol.contentType === "block";

/** Directory of each volume type inside a pool, as upstream lays it out. */
export const VOLUME_DIRS: Record<VolumeType, string> = {
  container: "containers",
  "virtual-machine": "virtual-machines",
  image: "images",
  custom: "custom",
};

/** Snapshot volumes are named "<parent>/<snapshot>" and live below "<type dir>-snapshots/". */
export const isSnapshotVolume = (vol: Volume): boolean => vol.name.includes("/");

/** A volume's path relative to the pool mount: containers/c1, containers-snapshots/c1/snap0, ... */
export function volumeSubPath(vol: Volume): string {
  return join(isSnapshotVolume(vol) ? `${VOLUME_DIRS[vol.type]}-snapshots` : VOLUME_DIRS[vol.type], vol.name);
}

/** The directory holding a (parent) volume's snapshots, relative to the pool mount. */
export const snapshotsSubPath = (vol: Volume): string => join(`${VOLUME_DIRS[vol.type]}-snapshots`, vol.name);

/** The snapshot `snapshot` of a parent volume, as a volume. */
export const snapshotVolume = (vol: Volume, snapshot: string): Volume => ({ ...vol, name: `${vol.name}/${snapshot}` });

/** Every directory a pool holds. */
export const POOL_DIRS = [
  "buckets",
  "containers",
  "containers-snapshots",
  "custom",
  "custom-snapshots",
  "images",
  "virtual-machines",
  "virtual-machines-snapshots",
];

export interface DriverInfo {
  name: string;
  /** Storage spread across hosts (ceph). */
  remote: boolean;
  /** Image volumes are kept and instance volumes made as cheap copies of them (createVolumeFromCopy). */
  optimizedImages: boolean;
  /** Pool config keys (without volume.*); unknown keys are rejected. */
  poolKeys: KeyTable;
  /** Volume config keys; also accepted on the pool as volume.KEY defaults. */
  volumeKeys: KeyTable;
  /** Pool keys that may change after creation besides user.*, volume.* and rsync.*. */
  mutablePoolKeys: string[];
}

export interface PoolUsage {
  space: { used: number; total: number };
  inodes: { used: number; total: number };
}

export interface DriverEnv {
  /** $LXD_DIR */
  lxdDir: string;
  log: Logger;
}

export interface SlowOpts {
  signal?: AbortSignal;
}

/** A driver bound to one pool (name + config). */
export interface Driver {
  readonly info: DriverInfo;
  /** Where the pool is mounted: $LXD_DIR/storage-pools/<pool>. */
  readonly mountPath: string;
  /**
   * Create the pool's storage on the host. Undoes its own partial work on failure. May return
   * config keys learnt while creating (ceph: volatile.pool.pristine, an existing pool's pg_num)
   * for the pool service to store.
   */
  createPool(opts?: SlowOpts): Promise<void | Record<string, string>>;
  /** Remove the pool's storage (and for loop-backed pools, the loop file). */
  deletePool(opts?: SlowOpts): Promise<void>;
  /** Make the pool usable (mount). Idempotent; returns true if it mounted something. */
  mountPool(opts?: SlowOpts): Promise<boolean>;
  /** Release the pool (unmount). Idempotent. */
  unmountPool(opts?: SlowOpts): Promise<boolean>;
  usage(): Promise<PoolUsage>;
  /** Apply changed mutable pool keys (info.mutablePoolKeys) to the host. */
  updatePool?(previous: Record<string, string>, next: Record<string, string>, opts?: SlowOpts): Promise<void>;

  /**
   * Optional: defaults a new custom volume's config records (block.filesystem on block drivers,
   * for filesystem content only), after the pool's volume.* keys.
   */
  fillVolumeConfig?(config: Record<string, string>, contentType: ContentType): void;

  volumePath(vol: Volume): string;
  hasVolume(vol: Volume): Promise<boolean>;
  /**
   * Create an empty volume and run `fill` on its mount path; the volume is removed if fill fails.
   * A block volume (custom, content type block) is an empty raw disk of its `size` (LXD's
   * default 10GiB), rounded up to 8KiB; `fill` is not run for it.
   */
  createVolume(vol: Volume, fill?: (path: string) => Promise<void>, opts?: SlowOpts): Promise<void>;
  /**
   * Make the volume's content an exact copy of the tree at `source` (a path outside this
   * volume, only read): ownership by number, modes, ACLs, xattrs, hard links, devices, sparse
   * files; entries `source` lacks are removed. Copies between pools, drivers and projects, and
   * incremental refreshes, go through here. For a block volume `source` is a raw disk (a file
   * or a device, only read): its bytes replace the volume's; a file disk takes the source's
   * length (as LXD's dd), a device grows first when it is smaller.
   */
  syncVolume(vol: Volume, source: string, opts?: SlowOpts & { bwlimit?: string }): Promise<void>;
  /**
   * The raw disk of a block volume or of one of its snapshots (LXD's GetVolumeDiskPath): a file
   * (dir, btrfs) or a device (made available: LV activated, zvol or RBD mapped). Read it, or
   * write it in place. A driver without this method has no block volumes.
   */
  diskPath?(vol: Volume, opts?: SlowOpts): Promise<string>;
  /**
   * Copy the volume's content to `target`, a new path outside the pool, as cheaply as the
   * driver can (`link`: the caller only reads, so hard links may share the files). A block
   * volume's raw disk is copied to the new file `target` (sparse where the disk reads zeros).
   */
  exportVolume(vol: Volume, target: string, opts?: SlowOpts & { link?: boolean }): Promise<void>;
  /** Optional capability: a cheap writable copy of `source` (btrfs snapshot). */
  createVolumeFromCopy?(vol: Volume, source: Volume, opts?: SlowOpts): Promise<void>;
  /** Delete a volume; for a snapshot volume also its parent's snapshot directory once empty. */
  deleteVolume(vol: Volume, opts?: SlowOpts): Promise<void>;
  /** Rename a volume (a parent volume's snapshots follow it; a snapshot stays with its parent). */
  renameVolume(vol: Volume, newName: string, opts?: SlowOpts): Promise<void>;
  /** Optional capability: snapshot `vol` as "<vol.name>/<snapshot>" (read-only where the driver can). */
  createSnapshot?(vol: Volume, snapshot: string, opts?: SlowOpts): Promise<void>;
  /**
   * Optional capability: replace the volume's content with its snapshot's. The new content is
   * built beside the volume and swapped in, so a failure leaves the old content in place.
   */
  restoreSnapshot?(vol: Volume, snapshot: string, opts?: SlowOpts): Promise<void>;
  /** Finish or undo a restore swap a crash interrupted (at pool start). */
  recoverVolume?(vol: Volume): Promise<void>;
  /** Mount the volume (where it has its own mount) and return its path. */
  mountVolume(vol: Volume, opts?: SlowOpts): Promise<string>;
  unmountVolume(vol: Volume, opts?: SlowOpts): Promise<boolean>;
  /** Bytes used, when the driver can tell cheaply. */
  volumeUsage?(vol: Volume): Promise<number | undefined>;
  /**
   * Optional capability: enforce `size` (LXD's byte size string; "" or "0" lifts the limit) on
   * a filesystem volume. Drivers without it store `size` unenforced, as LXD on filesystems
   * without quotas (dir has it for block volumes only, and logs LXD's warning for a
   * filesystem; drivers that enforce it report volumeUsage). On a block volume (every driver with diskPath has it then): the disk grows
   * to `size` ("" or "0": nothing changes); a smaller size is refused with LXD's
   * "Block volumes cannot be shrunk: Cannot be shrunk".
   */
  setVolumeQuota?(vol: Volume, size: string, opts?: SlowOpts): Promise<void>;
  /**
   * Optional capability (btrfs): the filesystem's own send streams of the volume's `snapshots`
   * (oldest first, each on the previous) and of the volume (on the last snapshot), after the
   * header listing them. Used by optimized migration and optimized backups.
   */
  sendStreams?(vol: Volume, snapshots: string[], out: StreamSink, opts?: SlowOpts): Promise<void>;
  /**
   * Optional capability (btrfs): receive such streams (`next` gives each one: the snapshots in
   * order, then the volume as undefined) into a staging area inside the pool, each checked to
   * be exactly the one subvolume expected. Nothing is in place until the caller places it.
   */
  receiveStreams?(vol: Volume, snapshots: string[], next: (snapshot: string | undefined) => Readable | Promise<Readable>, opts?: SlowOpts): Promise<StagedStreams>;
}

/** Where sendStreams writes: the header first, then one stream per subvolume (snapshot undefined: the volume). */
export interface StreamSink {
  header(subvolumes: { path: string; snapshot: string; readonly: boolean; uuid: string }[]): Promise<void>;
  stream(snapshot: string | undefined, data: Readable): Promise<void>;
}

/** Received streams waiting in the pool's staging area. */
export interface StagedStreams {
  /** Move a received snapshot to its place ("<vol>/<snapshot>", read-only). */
  placeSnapshot(snapshot: string): Promise<void>;
  /** Replace the volume's subvolume with the received one, made writable (the volume's `size` applied again). */
  placeVolume(): Promise<void>;
  /** Delete whatever was not placed, and the staging area. */
  discard(): Promise<void>;
}

/** The pool as a driver receives it. */
export interface PoolSpec {
  name: string;
  config: Record<string, string>;
}

export interface DriverDefinition {
  info: DriverInfo;
  /**
   * Find the host tools once at start: the version string to report, or undefined when the
   * driver can't work on this host (tools or kernel module missing).
   */
  probe(): Promise<string | undefined>;
  /** Why the driver can't be used here (asked when a pool is created while probe found nothing). */
  unavailableReason?(): Promise<string>;
  /** Fill in defaults for a new pool (source, size); throws LXD's message for bad combinations. */
  fillDefaults(pool: PoolSpec, env: DriverEnv): Record<string, string>;
  load(pool: PoolSpec, env: DriverEnv): Driver;
}
