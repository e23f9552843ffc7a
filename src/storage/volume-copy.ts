// Custom volume copies and moves on one server (LXD's CreateCustomVolumeFromCopy and the
// volume POST with another pool or project): a new volume on the target pool, each snapshot
// synced into it and snapshotted there (oldest first), then the source's current content.
// Works across pools, drivers and projects. With `refresh` an existing target keeps its
// snapshots of the same names (LXD 5.0.2 compares names only for volumes), loses the others,
// and gets the missing ones and the current content. The same steps serve the migration sink.
import { BadRequest, Conflict, NotFound } from "../shared/errors.js";
import type { VolumeRow } from "../db/storage-repo.js";
import { isBlockVolume, snapshotVolume } from "./drivers/types.js";
import { diskSize } from "./block-disk.js";
import type { PoolService } from "./pool-service.js";
import { validateVolumeName } from "./volume-names.js";
import { validateVolumeSnapshotName, type VolumeSnapshotService } from "./volume-snapshots.js";
import { ZERO_TIME } from "../instances/snapshots.js";

export interface VolumeCopyRequest {
  name: string;
  description: string;
  config: Record<string, string>;
  content_type: string;
}

export interface SnapshotSpec {
  name: string;
  description: string;
  config: Record<string, string>;
  expiresAt: string;
}

export class VolumeCopyService {
  constructor(
    /** The project whose custom volumes a request in `project` uses (features.storage.volumes). */
    private readonly volumesProject: (project: string) => string,
    private readonly pools: PoolService,
    private readonly snapshots: VolumeSnapshotService,
  ) {}

  private project(project: string): string {
    return this.volumesProject(project);
  }

  /**
   * The source row (a custom volume, or with `snapshots` one of its snapshots "vol/snap") or
   * LXD's 404. Moves and migrations take whole volumes only.
   */
  source(pool: string, project: string, name: string, opts: { snapshots?: boolean } = {}): VolumeRow {
    if (name.includes("/") && !opts.snapshots) throw new BadRequest("Copying a custom volume snapshot as a source is not supported here");
    return this.pools.getVolume(pool, this.project(project), "custom", name);
  }

  /** Synchronous checks of a copy request (target name free unless refreshing). */
  checkTarget(pool: string, project: string, req: VolumeCopyRequest, refresh: boolean): { exists: boolean } {
    validateVolumeName(req.name);
    this.pools.pool(pool);
    const existing = this.pools.repo.volume(pool, this.project(project), "custom", req.name);
    if (existing && !refresh) throw new Conflict("Volume by that name already exists");
    return { exists: !!existing && existing.state === "created" };
  }

  /** Host path of a volume or of one of its snapshots (read only): its tree, or a block volume's raw disk. */
  async path(row: VolumeRow, snapshot?: string): Promise<string> {
    const driver = this.pools.driverFor(this.pools.pool(row.pool));
    await driver.mountPool();
    const vol = this.pools.hostVolume(row);
    if (isBlockVolume(vol)) {
      if (!driver.diskPath) throw new BadRequest(`Content type "block" isn't supported here`);
      return driver.diskPath(snapshot ? snapshotVolume(vol, snapshot) : vol);
    }
    return snapshot ? driver.volumePath(snapshotVolume(vol, snapshot)) : driver.mountVolume(vol);
  }

  /**
   * The config of a copy's new volume: the request's or the source's; a block volume copied to
   * another pool gets its source disk's size as `size` (LXD's VolumeSize override: the target
   * disk must hold the source's).
   */
  private async targetConfig(src: VolumeRow, pool: string, given: Record<string, string>, config: Record<string, string>, snapshot?: string): Promise<Record<string, string>> {
    const out = { ...(Object.keys(given).length ? given : config) };
    if (src.contentType === "block" && src.pool !== pool) out.size = String(await diskSize(await this.path(src, snapshot)));
    return out;
  }

  /** Make the target volume an exact copy of the tree at `from`. */
  async sync(target: VolumeRow, from: string, signal?: AbortSignal): Promise<void> {
    const pool = this.pools.pool(target.pool);
    const driver = this.pools.driverFor(pool);
    await driver.mountPool();
    await driver.syncVolume(this.pools.hostVolume(target), from, { signal, bwlimit: pool.config["rsync.bwlimit"] || undefined });
  }

  /** The volume's current content becomes snapshot `spec` (its own description, config and expiry). */
  async snapshotAs(target: VolumeRow, spec: SnapshotSpec, signal?: AbortSignal, place?: () => Promise<void>): Promise<void> {
    validateVolumeSnapshotName(spec.name);
    const vol = target.name;
    await this.snapshots.create(target.pool, target.project, vol, spec.name, spec.expiresAt || ZERO_TIME, { signal, place });
    const row = this.pools.repo.volume(target.pool, target.project, "custom", `${vol}/${spec.name}`)!;
    this.pools.repo.updateVolume(row.id, { description: spec.description, config: spec.config });
  }

  /** Snapshots of an existing target to delete, and of the source to send, by name (LXD 5.0.2 for volumes). */
  async refreshPlan<S extends { name: string }>(target: VolumeRow, source: S[]): Promise<S[]> {
    const names = new Set(source.map((s) => s.name));
    const ours = this.snapshots.list(target.pool, target.project, target.name).map((r) => r.name.slice(target.name.length + 1));
    for (const s of ours) if (!names.has(s)) await this.snapshots.delete(target.pool, target.project, target.name, s);
    const kept = new Set(ours.filter((s) => names.has(s)));
    return source.filter((s) => !kept.has(s.name));
  }

  /** Create the (empty) target volume for a copy or migration. */
  async createTarget(pool: string, project: string, req: VolumeCopyRequest): Promise<VolumeRow> {
    await this.pools.volumes.createCustomVolume(pool, project, { name: req.name, type: "custom", description: req.description, config: req.config, content_type: req.content_type || "filesystem" });
    return this.pools.repo.volume(pool, this.project(project), "custom", req.name)!;
  }

  /** The target row of a refresh. */
  target(pool: string, project: string, name: string): VolumeRow {
    const row = this.pools.repo.volume(pool, this.project(project), "custom", name);
    if (!row || row.state !== "created") throw new NotFound("Storage pool volume not found");
    return row;
  }

  /** POST .../volumes/custom with source.type=copy: the body of the operation. */
  async copy(pool: string, project: string, req: VolumeCopyRequest, from: { pool: string; project: string; name: string; volumeOnly: boolean; refresh: boolean }, signal?: AbortSignal): Promise<void> {
    if (from.name.includes("/")) return this.copyFromSnapshot(pool, project, req, from, signal);
    const src = this.source(from.pool, from.project, from.name);
    const refresh = from.refresh && this.checkTarget(pool, project, req, true).exists;
    const snaps = from.volumeOnly ? [] : this.snapshots.list(src.pool, src.project, src.name);
    const specs = snaps.map((s) => ({ name: s.name.slice(src.name.length + 1), description: s.description, config: s.config, expiresAt: s.expiresAt }));
    let target: VolumeRow;
    let toSend = specs;
    if (refresh) {
      target = this.target(pool, project, req.name);
      toSend = await this.refreshPlan(target, specs);
    } else {
      const config = await this.targetConfig(src, pool, req.config, src.config);
      target = await this.createTarget(pool, project, { ...req, content_type: src.contentType, config, description: req.description || src.description });
    }
    try {
      for (const s of toSend) {
        await this.sync(target, await this.path(src, s.name), signal);
        await this.snapshotAs(target, s, signal);
      }
      await this.sync(target, await this.path(src), signal);
    } catch (e) {
      if (!refresh) await this.pools.volumes.deleteCustomVolume(target.pool, target.project, "custom", target.name).catch(() => {});
      throw e;
    }
  }

  /**
   * A copy of one snapshot ("vol/snap") as a new volume without snapshots, as LXD's
   * CreateCustomVolumeFromCopy with a snapshot source: its content, and its config and
   * description unless the request gives its own.
   */
  private async copyFromSnapshot(pool: string, project: string, req: VolumeCopyRequest, from: { pool: string; project: string; name: string }, signal?: AbortSignal): Promise<void> {
    const snap = this.source(from.pool, from.project, from.name, { snapshots: true });
    const [parentName, snapName] = from.name.split("/");
    const parent = this.source(from.pool, from.project, parentName);
    const config = await this.targetConfig(parent, pool, req.config, snap.config, snapName);
    const target = await this.createTarget(pool, project, { ...req, content_type: parent.contentType, config, description: req.description || snap.description });
    try {
      await this.sync(target, await this.path(parent, snapName), signal);
    } catch (e) {
      await this.pools.volumes.deleteCustomVolume(target.pool, target.project, "custom", target.name).catch(() => {});
      throw e;
    }
  }

  /**
   * POST .../volumes/custom/{vol} with another pool or project (and maybe a new name): a copy
   * with the snapshots, then the source goes. Refused while the volume is in use, as LXD.
   */
  async move(pool: string, project: string, name: string, to: { pool: string; project: string; name: string }, signal?: AbortSignal): Promise<void> {
    const src = this.source(pool, project, name);
    await this.copy(to.pool, to.project, { name: to.name, description: src.description, config: src.config, content_type: src.contentType }, { pool, project, name, volumeOnly: false, refresh: false }, signal);
    await this.pools.volumes.deleteCustomVolume(pool, project, "custom", name);
  }

  /** Synchronous checks of a move. */
  checkMove(pool: string, project: string, name: string, to: { pool: string; project: string; name: string }): void {
    const src = this.source(pool, project, name);
    if (this.pools.volumeUsedBy(pool, src).length > 0) throw new BadRequest("Volume is still in use");
    if (to.pool === pool && this.project(to.project) === src.project && to.name === name) throw new BadRequest("Volume already exists in the target");
    this.checkTarget(to.pool, to.project, { name: to.name, description: "", config: {}, content_type: "filesystem" }, false);
  }
}
