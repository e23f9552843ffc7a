// Instance volumes: what the instances feature asks of storage (the instance part of StoragePort).
// Root volumes from images (through each pool's cached image volume where the driver can copy
// cheaply), their snapshots, copies in and out, and optimized streams; each change with a
// record first and a revert on failure.
import { KeyedLock } from "./keyed-lock.js";
import type { Readable } from "node:stream";
import type { ImagesPort, StoragePort } from "../ports.js";
import type { PoolRow, StorageRepo, VolumeRow } from "../db/storage-repo.js";
import { BadRequest, Conflict, NotFound } from "../shared/errors.js";
import { snapshotVolume, type Driver, type StagedStreams, type StreamSink, type Volume } from "./drivers/types.js";
import type { InstanceLinks } from "./instance-links.js";
import { withRevert } from "./reverter.js";
import { storageName } from "./volume-names.js";
import { outsideWriteLock } from "../shared/write-lock.js";

/** What instance volumes need of the pool tier. */
export interface InstanceVolumePools {
  readonly repo: StorageRepo;
  pool(name: string): PoolRow;
  listPools(): PoolRow[];
  driverFor(pool: PoolRow): Driver;
  hostVolume(v: VolumeRow): Volume;
  removeVolume(driver: Driver, v: VolumeRow): Promise<void>;
  renameVolumeRows(v: VolumeRow, to: string): void;
  streamType(pool: string): string | undefined;
  sendStreams(row: VolumeRow, snapshots: string[], out: StreamSink, opts?: { signal?: AbortSignal }): Promise<void>;
  receiveStreams(row: VolumeRow, snapshots: string[], next: (snapshot: string | undefined) => Readable | Promise<Readable>, opts?: { signal?: AbortSignal }): Promise<StagedStreams>;
}

type InstanceVolumePort = Omit<StoragePort, "assertPool" | "getPool" | "adoptVolume" | "adoptPools" | "claimLocalVolumes" | "mountCustomVolume" | "customVolumeConfig" | "customVolumeContentType">;

export class InstanceVolumes implements Required<InstanceVolumePort> {
  private readonly locks = new KeyedLock();

  constructor(
    private readonly pools: InstanceVolumePools,
    private readonly links: InstanceLinks,
    private readonly images: Pick<ImagesPort, "unpackInto">,
  ) {}

  private get repo(): StorageRepo {
    return this.pools.repo;
  }

  async createInstanceVolume(project: string, poolName: string, name: string, opts: { image?: string; signal?: AbortSignal; progress?: (percent: number) => void; size?: string }): Promise<string> {
    const pool = this.pools.pool(poolName);
    const driver = this.pools.driverFor(pool);
    if (this.repo.volume(poolName, project, "container", name)) throw new Conflict("Volume by that name already exists");
    await driver.mountPool();
    return withRevert(async (revert) => {
      this.repo.insertVolume({ pool: poolName, project, type: "container", name });
      const row = this.repo.volume(poolName, project, "container", name)!;
      revert.add(() => this.repo.deleteVolume(row.id));
      const vol = this.pools.hostVolume(row);
      if (opts.image && driver.info.optimizedImages && driver.createVolumeFromCopy) {
        const image = await this.ensureImageVolume(pool, driver, opts.image, opts);
        await driver.createVolumeFromCopy(vol, image, opts);
      } else {
        const fingerprint = opts.image;
        await driver.createVolume(vol, fingerprint ? (path) => this.unpack(fingerprint, path, opts) : undefined, opts);
      }
      revert.add(() => driver.deleteVolume(vol));
      if (opts.size && driver.setVolumeQuota) await driver.setVolumeQuota(vol, opts.size, opts);
      const path = await driver.mountVolume(vol, opts);
      await this.links.ensureInstance(project, name, path);
      revert.add(() => this.links.removeInstance(project, name));
      this.repo.setVolumeState(row.id, "created");
      return path;
    });
  }


  /** An image's files into a new volume: the long part of a create, and it writes no rows (other cluster members need not wait for it). */
  private unpack(fingerprint: string, path: string, opts: { signal?: AbortSignal; progress?: (percent: number) => void }): Promise<void> {
    return outsideWriteLock(() => this.images.unpackInto(fingerprint, path, opts));
  }

  /** The pool's cached copy of an image (optimized drivers): unpacked once, then copied cheaply per instance. */
  private ensureImageVolume(pool: PoolRow, driver: Driver, fingerprint: string, opts: { signal?: AbortSignal; progress?: (percent: number) => void }): Promise<Volume> {
    return this.locks.run(`${pool.name}/${fingerprint}`, async () => {
      const existing = this.repo.volume(pool.name, "default", "image", fingerprint);
      if (existing?.state === "created") return this.pools.hostVolume(existing);
      if (existing) await this.pools.removeVolume(driver, existing);
      return withRevert(async (revert) => {
        this.repo.insertVolume({ pool: pool.name, project: "default", type: "image", name: fingerprint });
        const row = this.repo.volume(pool.name, "default", "image", fingerprint)!;
        revert.add(() => this.repo.deleteVolume(row.id));
        const vol = this.pools.hostVolume(row);
        await driver.createVolume(vol, (path) => this.unpack(fingerprint, path, opts), opts);
        this.repo.setVolumeState(row.id, "created");
        return vol;
      });
    });
  }

  /** Drop the cached image volumes of an image on every pool (the image was deleted). */
  async deleteImageVolumes(fingerprint: string): Promise<void> {
    for (const pool of this.pools.listPools()) {
      const v = this.repo.volume(pool.name, "default", "image", fingerprint);
      if (v) await this.locks.run(`${pool.name}/${fingerprint}`, () => this.pools.removeVolume(this.pools.driverFor(pool), v));
    }
  }

  private instanceVolume(project: string, pool: string, name: string): { row: VolumeRow; driver: Driver; vol: Volume } {
    const p = this.pools.pool(pool);
    const row = this.repo.volume(pool, project, "container", name);
    if (!row || row.state !== "created") throw new NotFound("Storage pool volume not found");
    return { row, driver: this.pools.driverFor(p), vol: this.pools.hostVolume(row) };
  }

  async mountInstanceVolume(project: string, pool: string, name: string): Promise<string> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    await driver.mountPool();
    return driver.mountVolume(vol);
  }

  async setInstanceVolumeQuota(project: string, pool: string, name: string, size: string): Promise<void> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    if (!driver.setVolumeQuota) return;
    await driver.mountPool();
    await driver.setVolumeQuota(vol, size);
  }

  async renameInstanceVolume(project: string, pool: string, from: string, to: string): Promise<void> {
    const { row, driver, vol } = this.instanceVolume(project, pool, from);
    if (this.repo.volume(pool, project, "container", to)) throw new Conflict("Volume by that name already exists");
    await withRevert(async (revert) => {
      const newName = storageName(project, "container", to);
      this.repo.beginRename(row.id, to);
      revert.add(() => this.repo.beginRename(row.id, null));
      await driver.renameVolume(vol, newName);
      revert.add(() => driver.renameVolume({ ...vol, name: newName }, vol.name));
      this.pools.renameVolumeRows(row, to);
      revert.add(() => this.pools.renameVolumeRows({ ...row, name: to }, from));
      await this.links.removeInstance(project, from);
      revert.add(() => this.links.ensureInstance(project, from, driver.volumePath(vol)));
      await this.links.ensureInstance(project, to, driver.volumePath({ ...vol, name: newName }));
      await this.links.removeSnapshots(project, from);
      revert.add(() => this.links.ensureSnapshots(driver.mountPath, project, from));
      await this.links.ensureSnapshots(driver.mountPath, project, to);
    });
  }

  async deleteInstanceVolume(project: string, pool: string, name: string): Promise<void> {
    const { row, driver } = this.instanceVolume(project, pool, name);
    await driver.mountPool();
    for (const snap of this.repo.volumes({ pool, project, type: "container" })) {
      if (snap.name.startsWith(`${name}/`)) await this.pools.removeVolume(driver, snap);
    }
    await this.links.removeSnapshots(project, name);
    await this.pools.removeVolume(driver, row);
  }

  async instanceVolumeUsage(project: string, pool: string, name: string): Promise<number | undefined> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    return driver.volumeUsage?.(vol);
  }

  /** An instance volume's (or its snapshot's) config, for copies and migrations to carry. */
  instanceVolumeConfig(project: string, pool: string, name: string, snapshot?: string): { description: string; config: Record<string, string> } {
    const v = this.repo.volume(pool, project, "container", snapshot ? `${name}/${snapshot}` : name);
    return { description: v?.description ?? "", config: { ...(v?.config ?? {}) } };
  }

  /** Set an instance volume's (or its snapshot's) config as a copy or migration brought it. */
  setInstanceVolumeConfig(project: string, pool: string, name: string, snapshot: string | undefined, vol: { description: string; config: Record<string, string> }): void {
    const v = this.repo.volume(pool, project, "container", snapshot ? `${name}/${snapshot}` : name);
    if (v) this.repo.updateVolume(v.id, { description: vol.description, config: vol.config });
  }

  // ---- instance snapshots ----

  private snapshotCapable(driver: Driver): Required<Pick<Driver, "createSnapshot" | "restoreSnapshot">> & Driver {
    if (!driver.createSnapshot || !driver.restoreSnapshot) throw new BadRequest(`Storage driver "${driver.info.name}" does not support snapshots here`);
    return driver as Required<Pick<Driver, "createSnapshot" | "restoreSnapshot">> & Driver;
  }

  /** Snapshot an instance volume: a 'creating' record first, so a crash leaves nothing behind after recovery. */
  async createInstanceSnapshot(project: string, pool: string, name: string, snapshot: string, opts: { signal?: AbortSignal; place?: () => Promise<void> } = {}): Promise<void> {
    const { row, driver, vol } = this.instanceVolume(project, pool, name);
    const capable = this.snapshotCapable(driver);
    const snapName = `${name}/${snapshot}`;
    if (this.repo.volume(pool, project, "container", snapName)) throw new Conflict("Volume by that name already exists");
    await driver.mountPool();
    await withRevert(async (revert) => {
      this.repo.insertVolume({ pool, project, type: "container", name: snapName, description: "", config: row.config });
      const snapRow = this.repo.volume(pool, project, "container", snapName)!;
      revert.add(() => this.repo.deleteVolume(snapRow.id));
      revert.add(() => driver.deleteVolume(snapshotVolume(vol, snapshot)));
      // A received optimized stream is moved into place instead of snapshotting the volume.
      if (opts.place) await opts.place();
      else await capable.createSnapshot(vol, snapshot, opts);
      await this.links.ensureSnapshots(driver.mountPath, project, name);
      this.repo.setVolumeState(snapRow.id, "created");
    });
  }

  /** Delete a snapshot volume; nothing to do if it is already gone (crash recovery). */
  async deleteInstanceSnapshot(project: string, pool: string, name: string, snapshot: string): Promise<void> {
    const p = this.pools.pool(pool);
    const row = this.repo.volume(pool, project, "container", `${name}/${snapshot}`);
    if (!row) return;
    const driver = this.pools.driverFor(p);
    await driver.mountPool();
    await this.pools.removeVolume(driver, row);
    await this.links.ensureSnapshots(driver.mountPath, project, name);
  }

  async renameInstanceSnapshot(project: string, pool: string, name: string, from: string, to: string): Promise<void> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    const row = this.repo.volume(pool, project, "container", `${name}/${from}`);
    if (!row || row.state !== "created") throw new NotFound("Storage pool volume snapshot not found");
    if (this.repo.volume(pool, project, "container", `${name}/${to}`)) throw new Conflict("Volume by that name already exists");
    const oldVol = snapshotVolume(vol, from);
    const newVol = snapshotVolume(vol, to);
    await withRevert(async (revert) => {
      this.repo.beginRename(row.id, `${name}/${to}`);
      revert.add(() => this.repo.beginRename(row.id, null));
      await driver.renameVolume(oldVol, newVol.name);
      revert.add(() => driver.renameVolume(newVol, oldVol.name));
      this.repo.renameVolume(row.id, `${name}/${to}`);
    });
  }

  /** Replace an instance volume's content with a snapshot's (the instance must be stopped). */
  async restoreInstanceSnapshot(project: string, pool: string, name: string, snapshot: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    const capable = this.snapshotCapable(driver);
    const row = this.repo.volume(pool, project, "container", `${name}/${snapshot}`);
    if (!row || row.state !== "created") throw new NotFound("Storage pool volume snapshot not found");
    await driver.mountPool();
    await capable.restoreSnapshot(vol, snapshot, opts);
    // As LXD: the snapshot volume's description and config become the volume's again.
    const main = this.repo.volume(pool, project, "container", name);
    if (main && (main.description !== row.description || JSON.stringify(main.config) !== JSON.stringify(row.config))) {
      this.repo.updateVolume(main.id, { description: row.description, config: { ...row.config } });
    }
  }

  /** Path of a snapshot volume (read it only: copies, publish). */
  async mountInstanceSnapshot(project: string, pool: string, name: string, snapshot: string): Promise<string> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    const row = this.repo.volume(pool, project, "container", `${name}/${snapshot}`);
    if (!row || row.state !== "created") throw new NotFound("Storage pool volume snapshot not found");
    await driver.mountPool();
    return driver.volumePath(snapshotVolume(vol, snapshot));
  }

  // ---- copies in and out ----

  /** Make an instance volume an exact copy of the tree at `source` (the pool's rsync.bwlimit applies). */
  async syncInstanceVolume(project: string, pool: string, name: string, source: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    await driver.mountPool();
    const bwlimit = this.pools.pool(pool).config["rsync.bwlimit"] || undefined;
    // The copy is the long part of a local copy or refresh, and writes no rows.
    await outsideWriteLock(() => driver.syncVolume(vol, source, { signal: opts.signal, bwlimit }));
  }

  /** Copy an instance volume or snapshot out of the pool (backups, publish) through its driver. */
  async exportInstanceVolume(project: string, pool: string, name: string, snapshot: string | undefined, target: string, opts: { link?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    if (snapshot !== undefined && this.repo.volume(pool, project, "container", `${name}/${snapshot}`)?.state !== "created") throw new NotFound("Storage pool volume snapshot not found");
    await driver.mountPool();
    await driver.exportVolume(snapshot === undefined ? vol : snapshotVolume(vol, snapshot), target, opts);
  }

  instanceStreamType(pool: string): string | undefined {
    return this.pools.streamType(pool);
  }

  sendInstanceStreams(project: string, pool: string, name: string, snapshots: string[], out: StreamSink, opts: { signal?: AbortSignal } = {}): Promise<void> {
    return this.pools.sendStreams(this.instanceVolume(project, pool, name).row, snapshots, out, opts);
  }

  receiveInstanceStreams(project: string, pool: string, name: string, snapshots: string[], next: (snapshot: string | undefined) => Readable | Promise<Readable>, opts: { signal?: AbortSignal } = {}): Promise<StagedStreams> {
    return this.pools.receiveStreams(this.instanceVolume(project, pool, name).row, snapshots, next, opts);
  }
}
