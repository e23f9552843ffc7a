// The storage-volume API (/1.0/storage-pools/P/volumes): custom volumes created, updated,
// renamed and deleted with their records; PUT on instance volumes and their snapshots; lists,
// views and usage; and the custom-volume reads disk devices make.
import { KeyedLock } from "./keyed-lock.js";
import type { Logger } from "pino";
import type { InstancesPort, ProjectsPort } from "../ports.js";
import type { PoolRow, StorageRepo, VolumeRow } from "../db/storage-repo.js";
import type { EventHub } from "../operations/events.js";
import { BadRequest, Conflict, InternalError, NotFound } from "../shared/errors.js";
import { parseByteSize } from "../shared/units.js";
import { CONTENT_TYPES, type ContentType, type Driver, type DriverDefinition, type Volume } from "./drivers/types.js";
import { apiUrl } from "../shared/urls.js";
import { withRevert } from "./reverter.js";
import { assertVolumeType, storageName, validateVolumeName } from "./volume-names.js";

export interface StorageVolumeView {
  config: Record<string, string>;
  description: string;
  name: string;
  type: string;
  used_by: string[];
  location: string;
  content_type: string;
  project: string;
  created_at: string;
}

/** What the volume API needs of the pool tier. */
export interface VolumePools {
  readonly repo: StorageRepo;
  pool(name: string): PoolRow;
  definition(driver: string): DriverDefinition;
  driverFor(pool: PoolRow): Driver;
  getVolume(pool: string, project: string, type: string, name: string): VolumeRow;
  hostVolume(v: VolumeRow): Volume;
  removeVolume(driver: Driver, v: VolumeRow): Promise<void>;
  renameVolumeRows(v: VolumeRow, to: string): void;
  volumeProject(project: string, type: string): string;
  volumeUsedBy(pool: string, v: VolumeRow): string[];
  usedByDaemon(pool: string, volume: string): boolean;
}

export interface VolumeServiceDeps {
  pools: VolumePools;
  events: Pick<EventHub, "lifecycle">;
  log: Logger;
  projects: Pick<ProjectsPort, "allowVolumeCreation" | "allowVolumeUpdate">;
  instances: Pick<InstancesPort, "volumeUserRoots" | "snapshotExpiry">;
  clustered(): boolean;
}

/** Told when a custom volume is renamed or deleted (its backup files follow). */
export interface CustomVolumeListener {
  renamed(v: VolumeRow, to: string): void;
  deleted(v: VolumeRow): void;
}

export class VolumeService {
  readonly customVolumeListeners: CustomVolumeListener[] = [];
  private readonly pools: VolumePools;
  /** Custom volume changes on one pool, one at a time (two renames of one volume: the second gets 404). */
  private readonly locks = new KeyedLock();

  constructor(private readonly d: VolumeServiceDeps) {
    this.pools = d.pools;
  }

  private get repo(): StorageRepo {
    return this.pools.repo;
  }

  /** Custom volumes: create (POST .../volumes), with the pool's volume.* keys as defaults. */
  createCustomVolume(poolName: string, requestProject: string, req: { name: string; type: string; description: string; config: Record<string, string>; content_type: string }): Promise<void> {
    return this.locks.run(`volumes:${poolName}`, () => this.createCustomVolumeNow(poolName, requestProject, req));
  }

  private async createCustomVolumeNow(poolName: string, requestProject: string, req: { name: string; type: string; description: string; config: Record<string, string>; content_type: string }): Promise<void> {
    const project = this.pools.volumeProject(requestProject, "custom");
    const pool = this.pools.pool(poolName);
    if (req.type === "") throw new BadRequest("You must provide a storage volume type of the storage volume");
    assertVolumeType(req.type);
    if (req.type !== "custom") throw new BadRequest(`Currently not allowed to create storage volumes of type "${req.type}"`);
    validateVolumeName(req.name);
    const contentType = parseContentType(req.content_type);
    if (this.repo.volume(poolName, project, "custom", req.name)) throw new Conflict("Volume by that name already exists");
    const def = this.pools.definition(pool.driver);
    const config = { ...req.config };
    for (const [k, v] of Object.entries(pool.config)) {
      const key = k.slice(7);
      // As LXD's fillVolumeConfig: the filesystem keys stay off block volumes.
      if (k.startsWith("volume.") && config[key] === undefined && !(contentType === "block" && FILESYSTEM_ONLY_KEYS.includes(key))) config[key] = v;
    }
    const driver = this.pools.driverFor(pool);
    if (contentType === "block" && !driver.diskPath) throw new BadRequest(`Content type "block" isn't supported here`);
    driver.fillVolumeConfig?.(config, contentType);
    const diskName = storageName(project, "custom", req.name);
    this.d.projects.allowVolumeCreation(project, req.name, config);
    checkVolumeConfig(def, diskName, config, InternalError, contentType);
    await driver.mountPool();
    await withRevert(async (revert) => {
      this.repo.insertVolume({ pool: poolName, project, type: "custom", name: req.name, description: req.description, config, contentType });
      const row = this.repo.volume(poolName, project, "custom", req.name)!;
      revert.add(() => this.repo.deleteVolume(row.id));
      await driver.createVolume(this.pools.hostVolume(row));
      this.repo.setVolumeState(row.id, "created");
    });
    this.d.events.lifecycle("storage-volume-created", `/1.0/storage-pools/${poolName}/volumes/custom/${req.name}`, { project });
  }

  updateCustomVolume(poolName: string, requestProject: string, type: string, name: string, req: { description: string; config: Record<string, string> }, mode: "replace" | "merge"): Promise<void> {
    return this.locks.run(`volumes:${poolName}`, () => this.updateCustomVolumeNow(poolName, requestProject, type, name, req, mode));
  }

  private async updateCustomVolumeNow(poolName: string, requestProject: string, type: string, name: string, req: { description: string; config: Record<string, string> }, mode: "replace" | "merge"): Promise<void> {
    const project = this.pools.volumeProject(requestProject, type);
    const v = this.pools.getVolume(poolName, project, type, name);
    if (v.type === "container" && mode === "replace") return this.updateInstanceVolumeConfig(v, req);
    if (v.type !== "custom") throw new BadRequest(mode === "merge" ? `Invalid storage volume type "${v.type}"` : `Storage volumes of type "${v.type}" cannot be updated with the storage API`);
    const pool = this.pools.pool(poolName);
    const config = mode === "replace" ? { ...req.config } : { ...v.config, ...req.config };
    for (const k of Object.keys(config)) if (config[k] === "") delete config[k];
    this.d.projects.allowVolumeUpdate(project, name, config);
    // LXD's UpdateCustomVolume validates in the pool backend: its errors are 500s (measured with LXD 5.0.2).
    checkVolumeConfig(this.pools.definition(pool.driver), storageName(project, v.type, v.name), config, InternalError, parseContentType(v.contentType));
    this.checkShifting(poolName, project, name, v.config, config);
    const description = mode === "merge" && req.description === "" ? v.description : req.description;
    if ((config.size ?? "") !== (v.config.size ?? "")) {
      const driver = this.pools.driverFor(pool);
      if (driver.setVolumeQuota) {
        await driver.mountPool();
        try {
          await driver.setVolumeQuota(this.pools.hostVolume(v), config.size ?? "");
        } catch (e) {
          throw new InternalError((e as Error).message);
        }
      } else if (config.size) {
        // As upstream on filesystems without project quotas: stored, not enforced.
        this.d.log.warn({ pool: poolName, volume: name, size: config.size }, "The backing filesystem doesn't support quotas, skipping set quota");
      }
    }
    this.repo.updateVolume(v.id, { description, config });
    this.d.events.lifecycle("storage-volume-updated", `/1.0/storage-pools/${poolName}/volumes/custom/${name}`, { project });
  }

  /** UpdateCustomVolume's rules for security.shifted (an idmapped mount cannot be swapped under a running container). */
  private checkShifting(pool: string, project: string, name: string, before: Record<string, string>, after: Record<string, string>): void {
    const on = (v: string | undefined) => ["true", "1", "yes", "on"].includes((v ?? "").toLowerCase());
    const changed = Object.keys({ ...before, ...after }).some((k) => before[k] !== after[k]);
    if (!changed) return;
    if (on(after["security.unmapped"]) && on(after["security.shifted"])) throw new InternalError("security.unmapped and security.shifted are mutually exclusive");
    if ((before["security.shifted"] ?? "") === (after["security.shifted"] ?? "")) return;
    const users = this.d.instances.volumeUserRoots(pool, project, name);
    if (users.some((u) => u.running)) throw new InternalError("Cannot modify shifting with running instances using the volume");
  }

  /**
   * PUT on an instance's volume (LXD's UpdateInstance on the pool): the config is validated as
   * a volume's, and size, size.state and block.filesystem cannot change there.
   */
  private updateInstanceVolumeConfig(v: VolumeRow, req: { description: string; config: Record<string, string> }): void {
    const pool = this.pools.pool(v.pool);
    const config = { ...req.config };
    for (const k of Object.keys(config)) if (config[k] === "") delete config[k];
    checkVolumeConfig(this.pools.definition(pool.driver), storageName(v.project, v.type, v.name), config, InternalError);
    for (const key of ["size", "size.state", "block.filesystem"]) {
      if ((config[key] ?? "") !== (v.config[key] ?? "")) throw new InternalError(`Instance volume "${key}" property cannot be changed`);
    }
    this.repo.updateVolume(v.id, { description: req.description, config });
    this.d.events.lifecycle("storage-volume-updated", `/1.0/storage-pools/${v.pool}/volumes/${v.type}/${v.name}`, { project: v.project });
  }

  /**
   * PUT/PATCH on an instance snapshot's volume (LXD's UpdateInstanceSnapshot): only the
   * description changes; the expiry belongs to the instance snapshot.
   */
  updateInstanceSnapshotVolume(v: VolumeRow, description: string): void {
    if (description !== v.description) this.repo.updateVolume(v.id, { description, config: v.config });
    const [parent, snap] = [v.name.slice(0, v.name.indexOf("/")), v.name.slice(v.name.indexOf("/") + 1)];
    this.d.events.lifecycle("storage-volume-snapshot-updated", `/1.0/storage-pools/${v.pool}/volumes/${v.type}/${parent}/snapshots/${snap}`, { project: v.project });
  }

  renameCustomVolume(poolName: string, requestProject: string, type: string, name: string, to: string): Promise<void> {
    return this.locks.run(`volumes:${poolName}`, () => this.renameCustomVolumeNow(poolName, requestProject, type, name, to));
  }

  private async renameCustomVolumeNow(poolName: string, requestProject: string, type: string, name: string, to: string): Promise<void> {
    const project = this.pools.volumeProject(requestProject, type);
    const v = this.pools.getVolume(poolName, project, type, name);
    if (v.type !== "custom") throw new BadRequest(`Storage volumes of type "${v.type}" cannot be renamed with the storage API`);
    validateVolumeName(to);
    if (this.repo.volume(poolName, project, "custom", to)) throw new Conflict("Volume by that name already exists");
    if (this.pools.usedByDaemon(poolName, name)) throw new InternalError("Volume is used by LXD itself and cannot be renamed");
    if (this.pools.volumeUsedBy(poolName, v).length > 0) throw new BadRequest("Volume is still in use");
    const driver = this.pools.driverFor(this.pools.pool(poolName));
    const vol = this.pools.hostVolume(v);
    const newDiskName = storageName(project, "custom", to);
    await withRevert(async (revert) => {
      this.repo.beginRename(v.id, to);
      revert.add(() => this.repo.beginRename(v.id, null));
      await driver.renameVolume(vol, newDiskName);
      revert.add(() => driver.renameVolume({ ...vol, name: newDiskName }, vol.name));
      this.pools.renameVolumeRows(v, to);
    });
    for (const l of this.customVolumeListeners) l.renamed(v, to);
    this.d.events.lifecycle("storage-volume-renamed", `/1.0/storage-pools/${poolName}/volumes/custom/${to}`, { project, context: { old_name: name } });
  }

  deleteCustomVolume(poolName: string, requestProject: string, type: string, name: string): Promise<void> {
    return this.locks.run(`volumes:${poolName}`, () => this.deleteCustomVolumeNow(poolName, requestProject, type, name));
  }

  private async deleteCustomVolumeNow(poolName: string, requestProject: string, type: string, name: string): Promise<void> {
    const project = this.pools.volumeProject(requestProject, type);
    const v = this.pools.getVolume(poolName, project, type, name);
    if (v.type !== "custom") throw new BadRequest(`Storage volumes of type "${v.type}" cannot be deleted with the storage API`);
    if (this.pools.volumeUsedBy(poolName, v).length > 0) throw new BadRequest("The storage volume is still in use");
    const driver = this.pools.driverFor(this.pools.pool(poolName));
    await driver.mountPool();
    // Its snapshots go first (newest first), then the volume.
    const snaps = this.repo.volumes({ pool: poolName, project, type: "custom" }).filter((s) => s.name.startsWith(`${v.name}/`));
    for (const snap of snaps.sort((a, b) => b.id - a.id)) await this.pools.removeVolume(driver, snap);
    await this.pools.removeVolume(driver, v);
    for (const l of this.customVolumeListeners) l.deleted(v);
    this.d.events.lifecycle("storage-volume-deleted", `/1.0/storage-pools/${poolName}/volumes/custom/${name}`, { project });
  }

  /** GET .../volumes/{type}/{name}/state: usage when the driver can tell, else upstream's "Not supported". */
  async volumeState(poolName: string, project: string, type: string, name: string): Promise<{ usage: { used?: number; total: number } }> {
    const pool = this.pools.pool(poolName);
    assertVolumeType(type);
    const v = this.repo.volume(poolName, this.pools.volumeProject(project, type), type, name);
    if (!v || v.state !== "created") {
      throw new NotFound(`Storage volume "${name}" in project "${project}" of type "${type}" does not exist on pool "${poolName}": Storage volume not found`);
    }
    const used = await this.pools.driverFor(pool).volumeUsage?.(this.pools.hostVolume(v));
    if (used === undefined) throw new InternalError("Not supported");
    // As upstream: used left out when zero, total the volume's size (0 without one).
    const total = v.config.size ? parseByteSize(v.config.size) : 0;
    return { usage: used > 0 ? { used, total } : { total } };
  }

  volumeView(v: VolumeRow): StorageVolumeView {
    return {
      config: v.config,
      description: v.description,
      name: v.name,
      type: v.type,
      used_by: this.pools.volumeUsedBy(v.pool, v),
      location: this.d.clustered() ? v.node : "none",
      content_type: v.contentType,
      project: v.project,
      created_at: v.createdAt,
    };
  }

  volumeUrl(v: VolumeRow): string {
    const [parent, snap] = v.name.split("/");
    return snap === undefined ? apiUrl(v.project, "storage-pools", v.pool, "volumes", v.type, parent) : apiUrl(v.project, "storage-pools", v.pool, "volumes", v.type, parent, "snapshots", snap);
  }

  /** GET .../volumes/{type}/{name}/snapshots: the snapshot volumes of a volume. */
  listVolumeSnapshots(pool: string, project: string, type: string, name: string): VolumeRow[] {
    const parent = this.pools.getVolume(pool, project, type, name);
    return this.repo.volumes({ pool, project: parent.project, type }).filter((v) => v.state === "created" && v.name.startsWith(`${name}/`));
  }

  /** A snapshot volume as upstream shows it in the storage API (name without the parent). */
  volumeSnapshotView(v: VolumeRow, full: boolean): Record<string, unknown> {
    const snap = v.name.slice(v.name.indexOf("/") + 1);
    const expiry = this.d.instances.snapshotExpiry(v.project, v.name.slice(0, v.name.indexOf("/")), snap) ?? "0001-01-01T00:00:00Z";
    return { description: v.description, expires_at: expiry, name: full ? snap : v.name, config: v.config, content_type: v.contentType, created_at: v.createdAt };
  }

  getVolumeSnapshot(pool: string, project: string, type: string, name: string, snapshot: string): VolumeRow {
    this.pools.getVolume(pool, project, type, name);
    const v = this.repo.volume(pool, this.pools.volumeProject(project, type), type, `${name}/${snapshot}`);
    if (!v || v.state !== "created") throw new NotFound("Storage pool volume snapshot not found");
    return v;
  }

  /** Volumes of a project on a pool (image volumes belong to every project). */
  listVolumes(pool: string, project: string, type?: string, everywhere = true): VolumeRow[] {
    this.pools.pool(pool);
    if (type !== undefined) assertVolumeType(type);
    const custom = this.pools.volumeProject(project, "custom");
    return this.repo.volumes({ pool, type, everywhere }).filter((v) => v.state === "created" && (v.type === "image" || (v.type === "custom" ? v.project === custom : v.project === project)));
  }

  customVolumeConfig(poolName: string, project: string, name: string): Record<string, string> {
    return { ...this.pools.getVolume(poolName, project, "custom", name).config };
  }

  customVolumeContentType(poolName: string, project: string, name: string): string | undefined {
    try {
      return this.pools.getVolume(poolName, project, "custom", name).contentType;
    } catch {
      return undefined;
    }
  }

  /** Host path of a custom volume, for disk devices attaching it (mounted first if the driver needs to). */
  async mountCustomVolume(poolName: string, project: string, name: string): Promise<string> {
    const v = this.pools.getVolume(poolName, project, "custom", name);
    const driver = this.pools.driverFor(this.pools.pool(poolName));
    await driver.mountPool();
    return driver.mountVolume(this.pools.hostVolume(v));
  }
}

/**
 * Keys that only mean something on a filesystem (LXD's validateVolumeCommonRules): unknown on a
 * custom block volume, and not taken from the pool's volume.* defaults for one.
 */
export const FILESYSTEM_ONLY_KEYS = ["security.shifted", "security.unmapped", "block.filesystem", "block.mount_options", "volatile.idmap.last", "volatile.idmap.next"];

/** A request's content type ("" is filesystem), or LXD's 400. */
export function parseContentType(name: string): ContentType {
  if (name === "") return "filesystem";
  if (!(CONTENT_TYPES as readonly string[]).includes(name)) throw new BadRequest("Invalid volume content type name");
  return name as ContentType;
}

/** A volume's config against its driver's volume keys: "Invalid option for volume ..." as upstream. */
function checkVolumeConfig(def: DriverDefinition, diskName: string, config: Record<string, string>, Err: new (m: string) => Error = InternalError, contentType: ContentType = "filesystem"): void {
  for (const [key, value] of Object.entries(config)) {
    if (key.startsWith("user.")) continue;
    const spec = contentType === "block" && FILESYSTEM_ONLY_KEYS.includes(key) ? undefined : def.info.volumeKeys[key];
    if (!spec) throw new Err(`Invalid option for volume "${diskName}" option "${key}"`);
    if (value === "") continue;
    try {
      spec.validate(value);
    } catch (e) {
      throw new Err(`Invalid value for volume "${diskName}" option "${key}": ${(e as Error).message}`);
    }
  }
}
