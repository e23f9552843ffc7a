// Custom volume snapshots (LXD's /1.0/storage-pools/{pool}/volumes/custom/{vol}/snapshots):
// rows "<vol>/<snap>" in storage_volumes with their own expires_at, made through the driver's
// snapshot capability. A row is 'creating' until its volume exists, so a crash leaves nothing
// half-made after the pool service's recovery.
import { BadRequest, Conflict, InternalError, NotFound } from "../shared/errors.js";
import type { Logger } from "pino";
import type { Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import type { ClusterPort, InstancesPort, ScheduledSubject } from "../ports.js";
import type { VolumeRow } from "../db/storage-repo.js";
import { expiryFrom, nextSnapshotName, parseExpiry, ZERO_TIME } from "../instances/snapshots.js";
import { snapshotVolume, type Driver } from "./drivers/types.js";
import type { PoolService } from "./pool-service.js";
import { withRevert } from "./reverter.js";
import { apiUrl } from "../shared/urls.js";


export const volumeSnapshotUrl = (pool: string, project: string, vol: string, snap: string) => apiUrl(project, "storage-pools", pool, "volumes", "custom", vol, "snapshots", snap);

/**
 * LXD's pool.ValidateName for snapshot names, plus the reserved names "." and "..", which
 * upstream 5.0.2 takes and then writes outside the volume's snapshot directory.
 */
export function validateVolumeSnapshotName(name: string): void {
  if (name.includes("/")) throw new BadRequest('Storage name cannot contain "/"');
  if (/\s/u.test(name)) throw new BadRequest("Storage name cannot contain white space");
  if (name === "." || name === "..") throw new BadRequest(`Invalid storage volume snapshot name: "${name}" is reserved`);
  if (name.includes("\0") || name.length > 255) throw new BadRequest("Invalid storage volume snapshot name");
}

/** The only volume type with snapshots through this API, as upstream. */
export function assertCustomType(type: string): void {
  if (type !== "custom") throw new BadRequest(`Invalid storage volume type "${type}"`);
}

export interface VolumeSnapshotView {
  description: string;
  expires_at: string | null;
  name: string;
  config: Record<string, string>;
  content_type: string;
  created_at: string;
}

type SnapshotDriver = Driver & Required<Pick<Driver, "createSnapshot" | "restoreSnapshot">>;

export class VolumeSnapshotService {
  constructor(
    private readonly deps: { db: Db; log: Logger; events: EventHub; cluster: Pick<ClusterPort, "leads" | "owns">; instances: Pick<InstancesPort, "runningVolumeUsers"> },
    private readonly pools: PoolService,
  ) {}

  private get repo() {
    return this.pools.repo;
  }

  private capable(driver: Driver): SnapshotDriver {
    if (!driver.createSnapshot || !driver.restoreSnapshot) throw new BadRequest(`Storage driver "${driver.info.name}" does not support snapshots here`);
    return driver as SnapshotDriver;
  }

  /** Snapshot rows of a volume (created ones), oldest first. */
  list(pool: string, project: string, vol: string): VolumeRow[] {
    return this.repo
      .volumes({ pool, project, type: "custom" })
      .filter((v) => v.state === "created" && v.name.startsWith(`${vol}/`))
      .sort((a, b) => a.id - b.id);
  }

  /** The snapshot row or LXD's 404. */
  require(pool: string, project: string, vol: string, snap: string): VolumeRow {
    this.pools.pool(pool);
    const row = this.repo.volume(pool, project, "custom", `${vol}/${snap}`);
    if (!row || row.state !== "created") throw new NotFound("Storage pool volume not found");
    return row;
  }

  /** Single view (GET .../snapshots/{snap}): created_at is never filled by upstream 5.0.2. */
  view(row: VolumeRow): VolumeSnapshotView {
    return {
      description: row.description,
      expires_at: row.expiresAt,
      name: row.name.slice(row.name.indexOf("/") + 1),
      config: row.config,
      content_type: row.contentType,
      created_at: ZERO_TIME,
    };
  }

  /** The list view (recursion=1): full names, no content type, expires_at only when set. */
  listView(row: VolumeRow): VolumeSnapshotView {
    return { description: row.description, expires_at: row.expiresAt === ZERO_TIME ? null : row.expiresAt, name: row.name, config: row.config, content_type: "", created_at: ZERO_TIME };
  }

  etag(row: VolumeRow): unknown {
    return [row.description, row.expiresAt];
  }

  /**
   * Check a create request (in upstream's order) and settle the name and expiry. A manual
   * snapshot without a name is "snap<N>", whatever snapshots.pattern says (as upstream).
   */
  checkCreate(pool: string, project: string, type: string, vol: string, req: { name: string; expires_at?: string | null }, pattern = "snap%d"): { name: string; expiresAt: string } {
    assertCustomType(type);
    if (this.pools.usedByDaemon(pool, vol)) throw new BadRequest("Volumes used by LXD itself cannot have snapshots");
    const poolRow = this.pools.pool(pool);
    const existing = this.repo
      .volumes({ pool, project, type: "custom" })
      .filter((v) => v.name.startsWith(`${vol}/`))
      .map((v) => v.name.slice(vol.length + 1));
    const name = req.name || nextSnapshotName(pattern, existing);
    validateVolumeSnapshotName(name);
    if (existing.includes(name)) throw new Conflict(`Snapshot "${name}" already in use`);
    const parent = this.repo.volume(pool, project, "custom", vol);
    if (!parent || parent.state !== "created") throw new NotFound("Storage pool volume not found");
    this.capable(this.pools.driverFor(poolRow));
    const expiresAt = req.expires_at ? parseExpiry(req.expires_at) : this.expiryOf(parent);
    return { name, expiresAt };
  }

  private expiryOf(parent: VolumeRow): string {
    try {
      return expiryFrom(parent.config["snapshots.expiry"] ?? "", new Date());
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
  }

  /** The body of the "Creating storage volume snapshot" operation. */
  async create(pool: string, project: string, vol: string, snap: string, expiresAt: string, opts: { signal?: AbortSignal; place?: () => Promise<void> } = {}): Promise<void> {
    const parent = this.repo.volume(pool, project, "custom", vol);
    if (!parent || parent.state !== "created") throw new NotFound("Parent volume doesn't exist");
    if (this.repo.volume(pool, project, "custom", `${vol}/${snap}`)) throw new Conflict("Snapshot by that name already exists");
    const driver = this.capable(this.pools.driverFor(this.pools.pool(pool)));
    const hostVol = this.pools.hostVolume(parent);
    await driver.mountPool();
    await withRevert(async (revert) => {
      this.repo.insertVolume({ pool, project, type: "custom", name: `${vol}/${snap}`, description: parent.description, config: parent.config, contentType: parent.contentType, expiresAt });
      const row = this.repo.volume(pool, project, "custom", `${vol}/${snap}`)!;
      revert.add(() => this.repo.deleteVolume(row.id));
      revert.add(() => driver.deleteVolume(snapshotVolume(hostVol, snap)));
      // A received optimized stream is moved into place instead of snapshotting the volume.
      if (opts.place) await opts.place();
      else await driver.createSnapshot(hostVol, snap, opts);
      this.repo.setVolumeState(row.id, "created");
    });
    this.deps.events.lifecycle("storage-volume-snapshot-created", volumeSnapshotUrl(pool, project, vol, snap), { project });
  }

  /** Sync checks of a rename request (the rest fails the operation, as upstream). */
  checkRename(type: string, to: string): void {
    assertCustomType(type);
    if (to === "") throw new BadRequest("No name provided");
    if (to.includes("/")) throw new BadRequest("Storage volume names may not contain slashes");
    validateVolumeSnapshotName(to);
  }

  async rename(pool: string, project: string, vol: string, snap: string, to: string): Promise<void> {
    const row = this.repo.volume(pool, project, "custom", `${vol}/${snap}`);
    if (!row || row.state !== "created") {
      throw new Error(`Storage volume "${vol}/${snap}" in project "${project}" of type "custom" does not exist on pool "${pool}": Storage volume not found`);
    }
    if (this.repo.volume(pool, project, "custom", `${vol}/${to}`)) throw new Error("UNIQUE constraint failed: storage_volumes_snapshots.storage_volume_id, storage_volumes_snapshots.name");
    const driver = this.pools.driverFor(this.pools.pool(pool));
    const parentVol = this.pools.hostVolume({ ...row, name: vol });
    const from = snapshotVolume(parentVol, snap);
    const target = snapshotVolume(parentVol, to);
    await driver.mountPool();
    await withRevert(async (revert) => {
      this.repo.beginRename(row.id, `${vol}/${to}`);
      revert.add(() => this.repo.beginRename(row.id, null));
      await driver.renameVolume(from, target.name);
      revert.add(() => driver.renameVolume(target, from.name));
      this.repo.renameVolume(row.id, `${vol}/${to}`);
    });
    this.deps.events.lifecycle("storage-volume-snapshot-renamed", volumeSnapshotUrl(pool, project, vol, to), { project, context: { old_name: snap } });
  }

  /** PUT replaces description and expiry; PATCH keeps what the body leaves out. */
  update(pool: string, project: string, vol: string, snap: string, req: { description?: string | null; expires_at?: string | null }, mode: "replace" | "merge"): void {
    const row = this.require(pool, project, vol, snap);
    const description = mode === "merge" && req.description == null ? row.description : (req.description ?? "");
    const expiresAt = mode === "merge" && req.expires_at === undefined ? row.expiresAt : parseExpiry(req.expires_at);
    this.deps.db.transaction(() => {
      this.repo.updateVolume(row.id, { description, config: row.config });
      this.repo.setVolumeExpiry(row.id, expiresAt);
    })();
    this.deps.events.lifecycle("storage-volume-snapshot-updated", volumeSnapshotUrl(pool, project, vol, snap), { project });
  }

  async delete(pool: string, project: string, vol: string, snap: string): Promise<void> {
    const row = this.require(pool, project, vol, snap);
    const driver = this.pools.driverFor(this.pools.pool(pool));
    await driver.mountPool();
    await this.pools.removeVolume(driver, row);
    this.deps.events.lifecycle("storage-volume-snapshot-deleted", volumeSnapshotUrl(pool, project, vol, snap), { project });
  }

  /**
   * Replace a custom volume's content with a snapshot's. Refused while an instance using the
   * volume runs, as upstream; the driver swaps a staged copy in, so a failure changes nothing.
   */
  async restore(pool: string, project: string, vol: string, snap: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const parent = this.repo.volume(pool, project, "custom", vol);
    if (!parent || parent.state !== "created") throw new NotFound("Storage pool volume not found");
    if (snap.includes("/")) throw new InternalError("Invalid snapshot name");
    const row = this.repo.volume(pool, project, "custom", `${vol}/${snap}`);
    if (!row || row.state !== "created") throw new InternalError("Snapshot not found");
    if (this.deps.instances.runningVolumeUsers(pool, project, vol).length > 0) throw new InternalError("Cannot restore custom volume used by running instances");
    const driver = this.capable(this.pools.driverFor(this.pools.pool(pool)));
    await driver.mountPool();
    await driver.restoreSnapshot(this.pools.hostVolume(parent), snap, opts);
    this.deps.events.lifecycle("storage-volume-restored", apiUrl(project, "storage-pools", pool, "volumes", "custom", vol), { project, context: { snapshot: snap } });
  }

  /** Custom volumes with snapshots.schedule (SnapshotScheduleSource). */
  scheduled(): ScheduledSubject[] {
    return this.repo
      .volumes({ type: "custom" })
      .filter((v) => v.state === "created" && !v.name.includes("/") && (v.config["snapshots.schedule"] ?? "").trim() !== "")
      .map((v) => ({
        key: `volume:${v.id}`,
        id: v.id,
        schedule: v.config["snapshots.schedule"],
        // A volume that lives on a member is snapshotted there; one on a shared pool by the leader.
        member: v.node || undefined,
        take: async () => {
          const pattern = v.config["snapshots.pattern"] || "snap%d";
          if (pattern.split("%d").length > 2) throw new Error("Snapshot pattern may contain '%d' only once");
          const { name, expiresAt } = this.checkCreate(v.pool, v.project, "custom", v.name, { name: "" }, pattern);
          await this.create(v.pool, v.project, v.name, name, expiresAt);
        },
      }));
  }

  /** Snapshots whose expires_at has passed. */
  expired(now = Date.now()): VolumeRow[] {
    return this.repo
      .volumes({ type: "custom" })
      .filter((v) => v.state === "created" && v.name.includes("/") && v.expiresAt !== ZERO_TIME && new Date(v.expiresAt).getTime() <= now);
  }

  /** Whether this daemon prunes a volume's snapshots and backups: its member, or the leader for shared pools. */
  prunesHere(v: { node: string }): boolean {
    return v.node ? this.deps.cluster.owns(v.node) : this.deps.cluster.leads();
  }

  /** Delete expired snapshots (the scheduler calls this every minute, as upstream's task). */
  async pruneExpired(): Promise<void> {
    for (const v of this.expired()) {
      if (!this.prunesHere(v)) continue;
      const [vol, snap] = v.name.split("/", 2);
      await this.delete(v.pool, v.project, vol, snap).catch((e) => this.deps.log.warn({ err: e, pool: v.pool, volume: v.name }, "cannot delete expired volume snapshot"));
    }
  }
}
