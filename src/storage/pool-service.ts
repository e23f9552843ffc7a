// The database-aware storage tier: pools and volume records, orchestration of drivers with
// a revert on failure, crash recovery at start, and the StoragePort other features use.
import { lstat, mkdir, readdir, readlink, symlink, unlink } from "node:fs/promises";
import { join } from "node:path";
import { BadRequest, Conflict, InternalError, NotFound } from "../shared/errors.js";
import type { Logger } from "pino";
import type { Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import type { Paths } from "../daemon/paths.js";
import type { Ports, StoragePort } from "../ports.js";
import type { StorageEnvironment } from "../daemon/server-service.js";
import { ProfileRepo } from "../db/profile-repo.js";
import { StorageRepo, type PoolRow, type VolumeRow } from "../db/storage-repo.js";
import { MemberConfigRepo } from "../db/member-config-repo.js";
import { validatePoolConfig } from "./config.js";
import { parseByteSize } from "../shared/units.js";
import { storageDrivers } from "./drivers/index.js";
import { snapshotsSubPath, snapshotVolume, VOLUME_TYPES, type Driver, type DriverDefinition, type DriverEnv, type PoolUsage, type StagedStreams, type StreamSink, type Volume, type VolumeType } from "./drivers/types.js";
import type { Readable } from "node:stream";
import { withRevert } from "./reverter.js";
import type { RecoverPoolSpec, UnknownVolume } from "./recover.js";
import { PoolRecovery } from "./recover-pools.js";
import { apiUrl } from "../shared/urls.js";

export interface StoragePoolView {
  config: Record<string, string>;
  description: string;
  name: string;
  driver: string;
  used_by: string[] | null;
  status: string;
  locations: string[];
}

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


/** On-disk name of a volume, as upstream: instances "<project>_<name>" outside the default project, custom volumes always prefixed. */
export function storageName(project: string, type: string, name: string): string {
  if (type === "image") return name;
  if (type === "custom" || project !== "default") return `${project}_${name}`;
  return name;
}

/** LXD's db.NodeSpecificStorageConfig: the pool keys each cluster member has its own value of. */
export const MEMBER_SPECIFIC_POOL_KEYS = ["size", "source", "volatile.initial_source", "zfs.pool_name", "lvm.thinpool_name", "lvm.vg_name"];

export function validatePoolName(name: string): void {
  if (name === "") throw new BadRequest("No name provided");
  if (name.includes("/")) throw new BadRequest("Storage pool names may not contain slashes");
  if (/\s/.test(name)) throw new BadRequest("Storage name cannot contain white space");
  if (name === "." || name === ".." || name.includes("\0")) throw new BadRequest(`Invalid storage pool name "${name}"`);
}

/** `url` with LXD's `target=<member>` query argument (api.URL.Target: none for "" or "none"). */
function withTarget(url: string, member: string): string {
  if (member === "" || member === "none") return url;
  return `${url}${url.includes("?") ? "&" : "?"}target=${encodeURIComponent(member)}`;
}

/** Serialises work per key (one image volume unpacked once when instances are created concurrently). */
class KeyedLock {
  private tails = new Map<string, Promise<unknown>>();
  async run<T>(key: string, body: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(body, body);
    const tail = next.catch(() => {});
    this.tails.set(key, tail);
    try {
      return await next;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** What the pool service uses of the daemon (and of the other features' ports). */
export interface PoolServiceDeps {
  db: Db;
  log: Logger;
  events: EventHub;
  paths: Pick<Paths, "dir" | "containers">;
  /** The server's cached GET /1.0 (storage info) is stale. */
  server: { invalidate(): void };
  ports: Pick<Ports, "cluster" | "images" | "instances" | "projects">;
}

export class PoolService implements StoragePort {
  readonly repo: StorageRepo;
  /** Each member's state and own config of a pool (clustered). */
  readonly members: MemberConfigRepo;
  private readonly profiles: ProfileRepo;
  private readonly env: DriverEnv;
  private readonly versions = new Map<string, string>();
  private readonly locks = new KeyedLock();
  private readonly recovery: PoolRecovery;
  /** Told when a custom volume is renamed or deleted (its backup files follow). */
  readonly customVolumeListeners: { renamed(v: VolumeRow, to: string): void; deleted(v: VolumeRow): void }[] = [];

  constructor(
    private readonly core: PoolServiceDeps,
    private readonly drivers: Record<string, DriverDefinition> = storageDrivers,
  ) {
    this.repo = new StorageRepo(core.db);
    this.members = new MemberConfigRepo(core.db, "pool");
    // In a cluster, a custom volume on a pool that is not shared lives on the member that made it.
    this.repo.volumeNode = (pool, type) => {
      const cluster = this.core.ports.cluster;
      if (type !== "custom" || !cluster?.clustered()) return "";
      const row = this.repo.pool(pool);
      return row && !this.definition(row.driver).info.remote ? cluster.name() : "";
    };
    this.profiles = new ProfileRepo(core.db);
    this.env = { lxdDir: core.paths.dir, log: core.log };
    this.recovery = new PoolRecovery(core, this);
  }

  /** Probe driver tools once, finish work a crash interrupted, mount every pool. */
  async start(): Promise<void> {
    await Promise.all(
      Object.entries(this.drivers).map(async ([name, def]) => {
        const version = await def.probe().catch(() => undefined);
        if (version !== undefined) this.versions.set(name, version);
      }),
    );
    for (const pool of this.repo.pools()) {
      try {
        await this.recoverPool(pool);
      } catch (e) {
        this.core.log.error({ err: e, pool: pool.name }, "cannot bring up storage pool");
      }
    }
    this.core.server.invalidate();
  }

  private async recoverPool(pool: PoolRow): Promise<void> {
    // A cluster pool not yet created everywhere: only members where it was created have it on disk.
    if (pool.state === "pending" || pool.state === "errored") {
      if (this.members.get(pool.name, this.core.ports.cluster.name() ?? "")?.state === "created") await this.driverFor(pool).mountPool();
      return;
    }
    const driver = this.driverFor(pool);
    if (pool.state !== "created") {
      this.core.log.warn({ pool: pool.name, state: pool.state }, "finishing storage pool change interrupted by a crash");
      await driver.deletePool().catch((e) => this.core.log.warn({ err: e, pool: pool.name }, "cleanup of interrupted pool failed"));
      this.repo.deletePool(pool.name);
      return;
    }
    await driver.mountPool();
    for (const vol of this.repo.volumes({ pool: pool.name })) {
      if (vol.renamingTo) await this.recoverRename(driver, vol);
      if (vol.state === "created") {
        if ((vol.type === "container" || vol.type === "custom") && !isSnapshotName(vol.name)) await driver.recoverVolume?.(this.hostVolume(vol));
        continue;
      }
      this.core.log.warn({ pool: pool.name, volume: vol.name, type: vol.type, state: vol.state }, "removing volume left half-done by a crash");
      await this.removeVolume(driver, vol);
    }
  }

  /** A rename a crash interrupted: keep whichever name the disk has. */
  private async recoverRename(driver: Driver, vol: VolumeRow): Promise<void> {
    const from = vol.name;
    const to = vol.renamingTo!;
    const done = !(await driver.hasVolume(this.hostVolume(vol))) && (await driver.hasVolume(this.hostVolume({ ...vol, name: to })));
    this.core.log.warn({ volume: from, to, done }, "finishing storage volume rename interrupted by a crash");
    if (done) {
      this.renameVolumeRows(vol, to);
      vol.name = to;
    } else {
      this.repo.beginRename(vol.id, null);
    }
    if (vol.type === "container" && !isSnapshotName(from)) {
      await this.removeSnapshotsSymlink(vol.project, done ? from : to);
      await this.ensureSnapshotsSymlink(driver, vol.project, vol.name);
      // The rename began only because nothing was called `to`, so a stray link of either name is ours.
      await this.removeInstanceSymlink(vol.project, done ? from : to);
      await this.ensureInstanceSymlink(vol.project, vol.name, driver.volumePath(this.hostVolume(vol)));
    }
    vol.renamingTo = null;
  }

  /**
   * Pools stay mounted across a plain daemon restart (containers may still use them); after
   * `lxd shutdown` stopped every instance they are unmounted, as upstream.
   */
  async stop(opts: { stopInstances: boolean }): Promise<void> {
    if (!opts.stopInstances) return;
    for (const pool of this.listPools()) {
      await this.driverFor(pool)
        .unmountPool()
        .catch((e) => this.core.log.warn({ err: e, pool: pool.name }, "cannot unmount storage pool"));
    }
  }

  // ---- drivers ----

  supported(): { name: string; version: string; remote: boolean }[] {
    return Object.entries(this.drivers)
      .filter(([name]) => this.versions.has(name))
      .map(([name, def]) => ({ name, version: this.versions.get(name)!, remote: def.info.remote }));
  }

  definition(driver: string): DriverDefinition {
    const def = this.drivers[driver];
    if (!def) throw new InternalError("Unknown driver");
    return def;
  }

  driverFor(pool: { name: string; driver: string; config: Record<string, string> }): Driver {
    return this.definition(pool.driver).load({ name: pool.name, config: this.memberConfig(pool) }, this.env);
  }

  /**
   * A pool's config on this member: the shared config with this member's own keys over it (LXD:
   * member-specific pool config). Pools that came with a join keep the `source` chosen then.
   */
  memberConfig(pool: { name: string; config: Record<string, string> }): Record<string, string> {
    const cluster = this.core.ports.cluster;
    if (!cluster?.clustered()) return pool.config;
    const own = this.members.get(pool.name, cluster.name());
    if (own) return { ...pool.config, ...own.config };
    const source = cluster.poolSource(pool.name);
    return source ? { ...pool.config, source } : pool.config;
  }

  /**
   * A member that joined a cluster: bring up every pool the cluster has on this host, each
   * with this member's own default source. Returns the local sources chosen.
   */
  async adoptPools(): Promise<Record<string, string>> {
    const sources: Record<string, string> = {};
    for (const pool of this.repo.pools()) {
      if (pool.state !== "created") continue;
      const def = this.definition(pool.driver);
      const local = def.fillDefaults({ name: pool.name, config: { ...pool.config, source: "" } }, this.env);
      if (local.source) sources[pool.name] = local.source;
      const driver = def.load({ name: pool.name, config: local }, this.env);
      await driver.createPool().catch((e) => this.core.log.debug({ err: e, pool: pool.name }, "pool create on join (may exist)"));
      await driver.mountPool();
    }
    this.core.server.invalidate();
    return sources;
  }

  environment(): StorageEnvironment {
    const used = [...new Set(this.repo.pools().filter((p) => p.state === "created").map((p) => p.driver))];
    return {
      storage: used.join(" | "),
      storage_version: used.map((d) => this.versions.get(d) ?? "").join(" | "),
      storage_supported_drivers: this.supported().map((d) => ({ Name: d.name, Version: d.version, Remote: d.remote })),
    };
  }

  // ---- pools ----

  /** The pool row or LXD's 404 (storage-internal: volume snapshots and backups use it too). */
  pool(name: string): PoolRow {
    const pool = this.repo.pool(name);
    if (!pool || pool.state !== "created") throw new NotFound("Storage pool not found");
    return pool;
  }

  // ---- `lxd recover` (POST /internal/recover/validate and /import): recover-pools.ts ----

  recoverValidate(specs: RecoverPoolSpec[]): Promise<{ UnknownVolumes: UnknownVolume[]; DependencyErrors: string[] }> {
    return this.recovery.validate(specs);
  }

  recoverImport(specs: RecoverPoolSpec[]): Promise<void> {
    return this.recovery.import(specs);
  }

  /**
   * A driver for a pool the database lost, from what `lxd recover`'s user says it is (LXD's
   * temporary pool: nothing recorded). LXD's errors for an unknown driver or bad config.
   */
  temporaryDriver(name: string, driver: string, config: Record<string, string>): Driver {
    validatePoolName(name);
    const def = this.drivers[driver];
    if (!def || !this.versions.has(driver)) throw new InternalError(`Failed to initialise unknown pool ${JSON.stringify(name)}: Unknown driver`);
    try {
      validatePoolConfig(def.info.poolKeys, def.info.volumeKeys, config);
    } catch (e) {
      throw new InternalError(`Failed config validation for unknown pool ${JSON.stringify(name)}: ${(e as Error).message}`);
    }
    return def.load({ name, config }, this.env);
  }

  /**
   * `lxd recover`: records for a volume (and its snapshots) that exist on disk but not in the
   * database; rows left from before are replaced. An instance volume gets its
   * $LXD_DIR/containers symlink back. Returns the volume's mount path.
   */
  async adoptVolume(
    poolName: string,
    project: string,
    type: "container" | "custom",
    name: string,
    vol: { description: string; config: Record<string, string> },
    snapshots: { name: string; description: string; config: Record<string, string> }[],
  ): Promise<string> {
    const driver = this.driverFor(this.pool(poolName));
    await driver.mountPool();
    const fresh = (volName: string, v: { description: string; config: Record<string, string> }) => {
      const old = this.repo.volume(poolName, project, type, volName);
      if (old) this.repo.deleteVolume(old.id);
      this.repo.insertVolume({ pool: poolName, project, type, name: volName, description: v.description, config: v.config });
      const row = this.repo.volume(poolName, project, type, volName)!;
      this.repo.setVolumeState(row.id, "created");
      return row;
    };
    const main = fresh(name, vol);
    for (const s of snapshots) fresh(`${name}/${s.name}`, s);
    const path = await driver.mountVolume(this.hostVolume(main));
    if (type === "container") await this.ensureInstanceSymlink(project, name, path);
    return path;
  }

  listPools(): PoolRow[] {
    return this.repo.pools().filter((p) => p.state === "created");
  }

  poolView(pool: PoolRow): StoragePoolView {
    const usedBy = this.poolUsedBy(pool.name);
    return {
      config: pool.config,
      description: pool.description,
      name: pool.name,
      driver: pool.driver,
      used_by: usedBy.length ? usedBy : null,
      status: "Created",
      locations: ["none"],
    };
  }

  getPool(name: string): StoragePoolView {
    return this.poolView(this.pool(name));
  }

  poolUsedBy(pool: string): string[] {
    const out: string[] = [];
    for (const v of this.repo.volumes({ pool }).filter((v) => v.state === "created")) {
      // As LXD's storagePools.UsedBy: a custom volume (or snapshot) is listed itself, with its member as `target`.
      if (v.type === "custom") out.push(withTarget(this.volumeUrl(v), v.node));
      else out.push(...this.volumeUsedBy(pool, v));
    }
    out.push(...this.core.ports.instances.usedBy({ pool }));
    for (const p of this.profiles.all()) {
      if (Object.values(p.devices).some((d) => d.type === "disk" && d.pool === pool)) out.push(apiUrl(p.project, "profiles", p.name));
    }
    return [...new Set(out)];
  }

  async createPool(req: { name: string; driver: string; description: string; config: Record<string, string> }): Promise<void> {
    validatePoolName(req.name);
    if (req.driver === "") throw new BadRequest("No driver provided");
    const def = this.definition(req.driver);
    if (!this.versions.has(req.driver)) {
      throw new InternalError((await def.unavailableReason?.()) ?? `Storage driver "${req.driver}" is not available on this host`);
    }
    if (this.repo.pool(req.name)) throw new Conflict("The storage pool already exists: The record already exists");
    let config: Record<string, string>;
    try {
      validatePoolConfig(def.info.poolKeys, def.info.volumeKeys, req.config);
      config = def.fillDefaults({ name: req.name, config: req.config }, this.env);
    } catch (e) {
      throw new InternalError((e as Error).message);
    }
    this.repo.insertPool({ name: req.name, driver: req.driver, description: req.description, config });
    try {
      const learnt = await def.load({ name: req.name, config }, this.env).createPool();
      if (learnt && Object.keys(learnt).length > 0) this.repo.updatePool(req.name, { config: { ...config, ...learnt } });
    } catch (e) {
      this.repo.deletePool(req.name);
      throw new InternalError((e as Error).message);
    }
    this.repo.updatePool(req.name, { state: "created" });
    this.core.server.invalidate();
    this.core.events.lifecycle("storage-pool-created", `/1.0/storage-pools/${req.name}`);
  }

  /** PUT replaces config; PATCH merges it. Description is replaced either way, as upstream. */
  async updatePool(name: string, req: { description: string; config: Record<string, string> }, mode: "replace" | "merge"): Promise<void> {
    const pool = this.pool(name);
    const def = this.definition(pool.driver);
    const next = mode === "replace" ? { ...req.config } : { ...pool.config, ...req.config };
    for (const k of Object.keys(next)) if (next[k] === "") delete next[k];
    try {
      validatePoolConfig(def.info.poolKeys, def.info.volumeKeys, next);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    if ((next.source ?? "") !== (pool.config.source ?? "")) throw new InternalError("Pool source cannot be changed when not in pending state");
    const changed = [...new Set([...Object.keys(pool.config), ...Object.keys(next)])].filter((k) => pool.config[k] !== next[k]);
    for (const key of changed) {
      const free = key.startsWith("user.") || key.startsWith("volume.") || key.startsWith("rsync.") || key === "volatile.initial_source";
      if (!free && !def.info.mutablePoolKeys.includes(key)) throw new BadRequest(`Pool config "${key}" cannot be changed`);
    }
    const driver = this.driverFor(pool);
    if (changed.some((k) => def.info.mutablePoolKeys.includes(k))) {
      if (!driver.updatePool) throw new BadRequest(`Pool config "${changed[0]}" cannot be changed`);
      await driver.updatePool(pool.config, next);
    }
    this.repo.updatePool(name, { description: req.description, config: next });
    this.core.events.lifecycle("storage-pool-updated", `/1.0/storage-pools/${name}`);
  }

  async deletePool(name: string): Promise<void> {
    const pool = this.pool(name);
    const volumes = this.repo.volumes({ pool: name });
    const inUse = this.poolUsedBy(name).filter((u) => !u.startsWith("/1.0/images/"));
    if (inUse.length > 0 || volumes.some((v) => v.type !== "image")) throw new BadRequest("The storage pool is currently in use");
    this.repo.updatePool(name, { state: "deleting" });
    try {
      await this.deletePoolHere(pool);
    } catch (e) {
      this.repo.updatePool(name, { state: "created" });
      throw e;
    }
    this.repo.deletePool(name);
    this.core.server.invalidate();
    this.core.events.lifecycle("storage-pool-deleted", `/1.0/storage-pools/${name}`);
  }

  /**
   * This member's part of a cluster-wide pool update (the member asked writes the record): the
   * changed keys the driver can change, applied to this member's pool with its own keys kept.
   */
  async applyUpdateHere(name: string, shared: Record<string, string>): Promise<void> {
    const pool = this.pool(name);
    const def = this.definition(pool.driver);
    const cur = this.memberConfig(pool);
    const own = Object.fromEntries(Object.entries(cur).filter(([k]) => MEMBER_SPECIFIC_POOL_KEYS.includes(k)));
    const next = { ...shared, ...own };
    const changed = [...new Set([...Object.keys(cur), ...Object.keys(next)])].filter((k) => cur[k] !== next[k] && def.info.mutablePoolKeys.includes(k));
    const driver = this.driverFor(pool);
    if (changed.length > 0 && driver.updatePool) await driver.updatePool(cur, next);
  }

  /** Remove a pool from this host (its image volumes with it); the records are the caller's. */
  async deletePoolHere(pool: PoolRow): Promise<void> {
    const driver = this.driverFor(pool);
    try {
      await driver.mountPool();
      for (const vol of this.repo.volumes({ pool: pool.name }).filter((v) => v.type === "image")) await this.removeVolume(driver, vol);
      await driver.deletePool();
    } catch (e) {
      throw new InternalError((e as Error).message);
    }
  }

  async resources(name: string): Promise<PoolUsage> {
    const pool = this.pool(name);
    const driver = this.driverFor(pool);
    return driver.usage();
  }

  // ---- volumes (API) ----

  volumeUsedBy(pool: string, v: VolumeRow): string[] {
    if (v.type === "container" || v.type === "virtual-machine") {
      const [parent, snap] = v.name.split("/");
      return [snap === undefined ? apiUrl(v.project, "instances", parent) : apiUrl(v.project, "instances", parent, "snapshots", snap)];
    }
    if (v.type === "image") return [`/1.0/images/${v.name}`];
    const out = [...(this.core.ports.instances.volumeUsedBy?.(pool, v.project, v.name) ?? [])];
    for (const p of this.profiles.all()) {
      if (p.project !== v.project) continue;
      if (Object.values(p.devices).some((d) => d.type === "disk" && d.pool === pool && d.source === v.name)) out.push(apiUrl(p.project, "profiles", p.name));
    }
    return out;
  }

  /** Custom volumes: create (POST .../volumes), with the pool's volume.* keys as defaults. */
  /** The project whose custom volumes `project` uses (the default project's without features.storage.volumes). */
  private volumeProject(project: string, type: string): string {
    if (type === "image") return "default";
    return type === "custom" ? (this.core.ports.projects.effectiveProject(project, "storage.volumes") ?? project) : project;
  }

  createCustomVolume(poolName: string, requestProject: string, req: { name: string; type: string; description: string; config: Record<string, string>; content_type: string }): Promise<void> {
    return this.locks.run(`volumes:${poolName}`, () => this.createCustomVolumeNow(poolName, requestProject, req));
  }

  private async createCustomVolumeNow(poolName: string, requestProject: string, req: { name: string; type: string; description: string; config: Record<string, string>; content_type: string }): Promise<void> {
    const project = this.volumeProject(requestProject, "custom");
    const pool = this.pool(poolName);
    if (req.type === "") throw new BadRequest("You must provide a storage volume type of the storage volume");
    assertVolumeType(req.type);
    if (req.type !== "custom") throw new BadRequest(`Currently not allowed to create storage volumes of type "${req.type}"`);
    validateVolumeName(req.name);
    if (req.content_type !== "filesystem") throw new BadRequest(`Content type "${req.content_type}" isn't supported here`);
    if (this.repo.volume(poolName, project, "custom", req.name)) throw new Conflict("Volume by that name already exists");
    const def = this.definition(pool.driver);
    const config = { ...req.config };
    for (const [k, v] of Object.entries(pool.config)) {
      if (k.startsWith("volume.") && config[k.slice(7)] === undefined) config[k.slice(7)] = v;
    }
    const driver = this.driverFor(pool);
    driver.fillVolumeConfig?.(config);
    const diskName = storageName(project, "custom", req.name);
    this.core.ports.projects.allowVolumeCreation?.(project, req.name, config);
    checkVolumeConfig(def, diskName, config);
    await driver.mountPool();
    await withRevert(async (revert) => {
      this.repo.insertVolume({ pool: poolName, project, type: "custom", name: req.name, description: req.description, config });
      const row = this.repo.volume(poolName, project, "custom", req.name)!;
      revert.add(() => this.repo.deleteVolume(row.id));
      await driver.createVolume(this.hostVolume(row));
      this.repo.setVolumeState(row.id, "created");
    });
    this.core.events.lifecycle("storage-volume-created", `/1.0/storage-pools/${poolName}/volumes/custom/${req.name}`, { project });
  }

  updateCustomVolume(poolName: string, requestProject: string, type: string, name: string, req: { description: string; config: Record<string, string> }, mode: "replace" | "merge"): Promise<void> {
    return this.locks.run(`volumes:${poolName}`, () => this.updateCustomVolumeNow(poolName, requestProject, type, name, req, mode));
  }

  private async updateCustomVolumeNow(poolName: string, requestProject: string, type: string, name: string, req: { description: string; config: Record<string, string> }, mode: "replace" | "merge"): Promise<void> {
    const project = this.volumeProject(requestProject, type);
    const v = this.getVolume(poolName, project, type, name);
    if (v.type === "container" && mode === "replace") return this.updateInstanceVolumeConfig(v, req);
    if (v.type !== "custom") throw new BadRequest(mode === "merge" ? `Invalid storage volume type "${v.type}"` : `Storage volumes of type "${v.type}" cannot be updated with the storage API`);
    const pool = this.pool(poolName);
    const config = mode === "replace" ? { ...req.config } : { ...v.config, ...req.config };
    for (const k of Object.keys(config)) if (config[k] === "") delete config[k];
    this.core.ports.projects.allowVolumeUpdate?.(project, name, config);
    checkVolumeConfig(this.definition(pool.driver), storageName(project, v.type, v.name), config, BadRequest);
    this.checkShifting(poolName, project, name, v.config, config);
    const description = mode === "merge" && req.description === "" ? v.description : req.description;
    if ((config.size ?? "") !== (v.config.size ?? "")) {
      const driver = this.driverFor(pool);
      if (driver.setVolumeQuota) {
        await driver.mountPool();
        try {
          await driver.setVolumeQuota(this.hostVolume(v), config.size ?? "");
        } catch (e) {
          throw new InternalError((e as Error).message);
        }
      } else if (config.size) {
        // As upstream on filesystems without project quotas: stored, not enforced.
        this.core.log.warn({ pool: poolName, volume: name, size: config.size }, "The backing filesystem doesn't support quotas, skipping set quota");
      }
    }
    this.repo.updateVolume(v.id, { description, config });
    this.core.events.lifecycle("storage-volume-updated", `/1.0/storage-pools/${poolName}/volumes/custom/${name}`, { project });
  }

  /** UpdateCustomVolume's rules for security.shifted (an idmapped mount cannot be swapped under a running container). */
  private checkShifting(pool: string, project: string, name: string, before: Record<string, string>, after: Record<string, string>): void {
    const on = (v: string | undefined) => ["true", "1", "yes", "on"].includes((v ?? "").toLowerCase());
    const changed = Object.keys({ ...before, ...after }).some((k) => before[k] !== after[k]);
    if (!changed) return;
    if (on(after["security.unmapped"]) && on(after["security.shifted"])) throw new InternalError("security.unmapped and security.shifted are mutually exclusive");
    if ((before["security.shifted"] ?? "") === (after["security.shifted"] ?? "")) return;
    const users = this.core.ports.instances.volumeUserRoots?.(pool, project, name) ?? [];
    if (users.some((u) => u.running)) throw new InternalError("Cannot modify shifting with running instances using the volume");
  }

  /**
   * PUT on an instance's volume (LXD's UpdateInstance on the pool): the config is validated as
   * a volume's, and size, size.state and block.filesystem cannot change there.
   */
  private updateInstanceVolumeConfig(v: VolumeRow, req: { description: string; config: Record<string, string> }): void {
    const pool = this.pool(v.pool);
    const config = { ...req.config };
    for (const k of Object.keys(config)) if (config[k] === "") delete config[k];
    checkVolumeConfig(this.definition(pool.driver), storageName(v.project, v.type, v.name), config, InternalError);
    for (const key of ["size", "size.state", "block.filesystem"]) {
      if ((config[key] ?? "") !== (v.config[key] ?? "")) throw new InternalError(`Instance volume "${key}" property cannot be changed`);
    }
    this.repo.updateVolume(v.id, { description: req.description, config });
    this.core.events.lifecycle("storage-volume-updated", `/1.0/storage-pools/${v.pool}/volumes/${v.type}/${v.name}`, { project: v.project });
  }

  /**
   * PUT/PATCH on an instance snapshot's volume (LXD's UpdateInstanceSnapshot): only the
   * description changes; the expiry belongs to the instance snapshot.
   */
  updateInstanceSnapshotVolume(v: VolumeRow, description: string): void {
    if (description !== v.description) this.repo.updateVolume(v.id, { description, config: v.config });
    const [parent, snap] = [v.name.slice(0, v.name.indexOf("/")), v.name.slice(v.name.indexOf("/") + 1)];
    this.core.events.lifecycle("storage-volume-snapshot-updated", `/1.0/storage-pools/${v.pool}/volumes/${v.type}/${parent}/snapshots/${snap}`, { project: v.project });
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

  renameCustomVolume(poolName: string, requestProject: string, type: string, name: string, to: string): Promise<void> {
    return this.locks.run(`volumes:${poolName}`, () => this.renameCustomVolumeNow(poolName, requestProject, type, name, to));
  }

  private async renameCustomVolumeNow(poolName: string, requestProject: string, type: string, name: string, to: string): Promise<void> {
    const project = this.volumeProject(requestProject, type);
    const v = this.getVolume(poolName, project, type, name);
    if (v.type !== "custom") throw new BadRequest(`Storage volumes of type "${v.type}" cannot be renamed with the storage API`);
    validateVolumeName(to);
    if (this.repo.volume(poolName, project, "custom", to)) throw new Conflict("Volume by that name already exists");
    if (this.volumeUsedBy(poolName, v).length > 0) throw new BadRequest("Volume is still in use");
    const driver = this.driverFor(this.pool(poolName));
    const vol = this.hostVolume(v);
    const newDiskName = storageName(project, "custom", to);
    await withRevert(async (revert) => {
      this.repo.beginRename(v.id, to);
      revert.add(() => this.repo.beginRename(v.id, null));
      await driver.renameVolume(vol, newDiskName);
      revert.add(() => driver.renameVolume({ ...vol, name: newDiskName }, vol.name));
      this.renameVolumeRows(v, to);
    });
    for (const l of this.customVolumeListeners) l.renamed(v, to);
    this.core.events.lifecycle("storage-volume-renamed", `/1.0/storage-pools/${poolName}/volumes/custom/${to}`, { project, context: { old_name: name } });
  }

  deleteCustomVolume(poolName: string, requestProject: string, type: string, name: string): Promise<void> {
    return this.locks.run(`volumes:${poolName}`, () => this.deleteCustomVolumeNow(poolName, requestProject, type, name));
  }

  private async deleteCustomVolumeNow(poolName: string, requestProject: string, type: string, name: string): Promise<void> {
    const project = this.volumeProject(requestProject, type);
    const v = this.getVolume(poolName, project, type, name);
    if (v.type !== "custom") throw new BadRequest(`Storage volumes of type "${v.type}" cannot be deleted with the storage API`);
    if (this.volumeUsedBy(poolName, v).length > 0) throw new BadRequest("The storage volume is still in use");
    const driver = this.driverFor(this.pool(poolName));
    await driver.mountPool();
    // Its snapshots go first (newest first), then the volume.
    const snaps = this.repo.volumes({ pool: poolName, project, type: "custom" }).filter((s) => s.name.startsWith(`${v.name}/`));
    for (const snap of snaps.sort((a, b) => b.id - a.id)) await this.removeVolume(driver, snap);
    await this.removeVolume(driver, v);
    for (const l of this.customVolumeListeners) l.deleted(v);
    this.core.events.lifecycle("storage-volume-deleted", `/1.0/storage-pools/${poolName}/volumes/custom/${name}`, { project });
  }

  /** GET .../volumes/{type}/{name}/state: usage when the driver can tell, else upstream's "Not supported". */
  async volumeState(poolName: string, project: string, type: string, name: string): Promise<{ usage: { used?: number; total: number } }> {
    const pool = this.pool(poolName);
    assertVolumeType(type);
    const v = this.repo.volume(poolName, this.volumeProject(project, type), type, name);
    if (!v || v.state !== "created") {
      throw new NotFound(`Storage volume "${name}" in project "${project}" of type "${type}" does not exist on pool "${poolName}": Storage volume not found`);
    }
    const used = await this.driverFor(pool).volumeUsage?.(this.hostVolume(v));
    if (used === undefined) throw new InternalError("Not supported");
    // As upstream: used left out when zero, total the volume's size (0 without one).
    const total = v.config.size ? parseByteSize(v.config.size) : 0;
    return { usage: used > 0 ? { used, total } : { total } };
  }

  customVolumeConfig(poolName: string, project: string, name: string): Record<string, string> {
    return { ...this.getVolume(poolName, project, "custom", name).config };
  }

  /** Host path of a custom volume, for disk devices attaching it (mounted first if the driver needs to). */
  async mountCustomVolume(poolName: string, project: string, name: string): Promise<string> {
    const v = this.getVolume(poolName, project, "custom", name);
    const driver = this.driverFor(this.pool(poolName));
    await driver.mountPool();
    return driver.mountVolume(this.hostVolume(v));
  }

  volumeView(v: VolumeRow): StorageVolumeView {
    return {
      config: v.config,
      description: v.description,
      name: v.name,
      type: v.type,
      used_by: this.volumeUsedBy(v.pool, v),
      location: this.core.ports.cluster.clustered() ? v.node : "none",
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
    const parent = this.getVolume(pool, project, type, name);
    return this.repo.volumes({ pool, project: parent.project, type }).filter((v) => v.state === "created" && v.name.startsWith(`${name}/`));
  }

  /** A snapshot volume as upstream shows it in the storage API (name without the parent). */
  volumeSnapshotView(v: VolumeRow, full: boolean): Record<string, unknown> {
    const snap = v.name.slice(v.name.indexOf("/") + 1);
    const expiry = this.core.ports.instances.snapshotExpiry?.(v.project, v.name.slice(0, v.name.indexOf("/")), snap) ?? "0001-01-01T00:00:00Z";
    return { description: v.description, expires_at: expiry, name: full ? snap : v.name, config: v.config, content_type: v.contentType, created_at: v.createdAt };
  }

  getVolumeSnapshot(pool: string, project: string, type: string, name: string, snapshot: string): VolumeRow {
    this.getVolume(pool, project, type, name);
    const v = this.repo.volume(pool, this.volumeProject(project, type), type, `${name}/${snapshot}`);
    if (!v || v.state !== "created") throw new NotFound("Storage pool volume snapshot not found");
    return v;
  }

  /** Volumes of a project on a pool (image volumes belong to every project). */
  listVolumes(pool: string, project: string, type?: string): VolumeRow[] {
    this.pool(pool);
    if (type !== undefined) assertVolumeType(type);
    const custom = this.volumeProject(project, "custom");
    return this.repo.volumes({ pool, type }).filter((v) => v.state === "created" && (v.type === "image" || (v.type === "custom" ? v.project === custom : v.project === project)));
  }

  getVolume(pool: string, project: string, type: string, name: string): VolumeRow {
    this.pool(pool);
    assertVolumeType(type);
    const v = this.repo.volume(pool, this.volumeProject(project, type), type, name);
    if (!v || v.state !== "created") throw new NotFound("Storage pool volume not found");
    return v;
  }

  hostVolume(v: { project: string; type: string; name: string; config: Record<string, string> }): Volume {
    return { type: v.type as VolumeType, name: storageName(v.project, v.type, v.name), config: v.config };
  }

  /** Delete a volume from disk and its record (used for cleanup; the record goes even if the disk was already clean). */
  async removeVolume(driver: Driver, v: VolumeRow): Promise<void> {
    this.repo.setVolumeState(v.id, "deleting");
    await driver.deleteVolume(this.hostVolume(v));
    if (v.type === "container" && !isSnapshotName(v.name)) await this.removeInstanceSymlink(v.project, v.name);
    this.repo.deleteVolume(v.id);
  }

  // ---- StoragePort ----

  assertPool(pool: string): void {
    this.pool(pool);
  }

  private instanceSymlink(project: string, name: string): string {
    return join(this.core.paths.containers, storageName(project, "container", name));
  }

  /** $LXD_DIR/containers/<name> → the volume, as upstream keeps it. */
  private async ensureInstanceSymlink(project: string, name: string, target: string): Promise<void> {
    const link = this.instanceSymlink(project, name);
    const current = await readlink(link).catch(() => undefined);
    if (current === target) return;
    if (current !== undefined) await unlink(link);
    await mkdir(this.core.paths.containers, { recursive: true });
    await symlink(target, link);
  }

  private snapshotsSymlink(project: string, name: string): string {
    return join(this.core.paths.dir, "snapshots", storageName(project, "container", name));
  }

  /** $LXD_DIR/snapshots/<name> → the instance's snapshot directory, while it has one (as upstream). */
  private async ensureSnapshotsSymlink(driver: Driver, project: string, name: string): Promise<void> {
    const target = join(driver.mountPath, snapshotsSubPath({ type: "container", name: storageName(project, "container", name), config: {} }));
    const link = this.snapshotsSymlink(project, name);
    const hasSnapshots = (await readdir(target).catch(() => [])).length > 0;
    const current = await readlink(link).catch(() => undefined);
    if (!hasSnapshots) {
      if (current !== undefined) await unlink(link);
      return;
    }
    if (current === target) return;
    if (current !== undefined) await unlink(link);
    await mkdir(join(this.core.paths.dir, "snapshots"), { recursive: true, mode: 0o700 });
    await symlink(target, link);
  }

  private async removeSnapshotsSymlink(project: string, name: string): Promise<void> {
    const st = await lstat(this.snapshotsSymlink(project, name)).catch(() => undefined);
    if (st?.isSymbolicLink()) await unlink(this.snapshotsSymlink(project, name));
  }

  /** Rename a volume's row and its snapshots' rows together. */
  private renameVolumeRows(v: VolumeRow, to: string): void {
    this.core.db.transaction(() => {
      this.repo.renameVolume(v.id, to);
      for (const snap of this.repo.volumes({ pool: v.pool, project: v.project, type: v.type })) {
        if (snap.name.startsWith(`${v.name}/`)) this.repo.renameVolume(snap.id, `${to}${snap.name.slice(v.name.length)}`);
      }
    })();
  }

  private async removeInstanceSymlink(project: string, name: string): Promise<void> {
    const link = this.instanceSymlink(project, name);
    const st = await lstat(link).catch(() => undefined);
    if (st?.isSymbolicLink()) await unlink(link);
  }

  async createInstanceVolume(project: string, poolName: string, name: string, opts: { image?: string; signal?: AbortSignal; progress?: (percent: number) => void; size?: string }): Promise<string> {
    const pool = this.pool(poolName);
    const driver = this.driverFor(pool);
    if (this.repo.volume(poolName, project, "container", name)) throw new Conflict("Volume by that name already exists");
    await driver.mountPool();
    return withRevert(async (revert) => {
      this.repo.insertVolume({ pool: poolName, project, type: "container", name });
      const row = this.repo.volume(poolName, project, "container", name)!;
      revert.add(() => this.repo.deleteVolume(row.id));
      const vol = this.hostVolume(row);
      if (opts.image && driver.info.optimizedImages && driver.createVolumeFromCopy) {
        const image = await this.ensureImageVolume(pool, driver, opts.image, opts);
        await driver.createVolumeFromCopy(vol, image, opts);
      } else {
        const fingerprint = opts.image;
        await driver.createVolume(vol, fingerprint ? (path) => this.images().unpackInto(fingerprint, path, opts) : undefined, opts);
      }
      revert.add(() => driver.deleteVolume(vol));
      if (opts.size && driver.setVolumeQuota) await driver.setVolumeQuota(vol, opts.size, opts);
      const path = await driver.mountVolume(vol, opts);
      await this.ensureInstanceSymlink(project, name, path);
      revert.add(() => this.removeInstanceSymlink(project, name));
      this.repo.setVolumeState(row.id, "created");
      return path;
    });
  }

  private images() {
    const images = this.core.ports.images;
    if (!images) throw new InternalError("Image support is not loaded");
    return images;
  }

  /** The pool's cached copy of an image (optimized drivers): unpacked once, then copied cheaply per instance. */
  private ensureImageVolume(pool: PoolRow, driver: Driver, fingerprint: string, opts: { signal?: AbortSignal; progress?: (percent: number) => void }): Promise<Volume> {
    return this.locks.run(`${pool.name}/${fingerprint}`, async () => {
      const existing = this.repo.volume(pool.name, "default", "image", fingerprint);
      if (existing?.state === "created") return this.hostVolume(existing);
      if (existing) await this.removeVolume(driver, existing);
      return withRevert(async (revert) => {
        this.repo.insertVolume({ pool: pool.name, project: "default", type: "image", name: fingerprint });
        const row = this.repo.volume(pool.name, "default", "image", fingerprint)!;
        revert.add(() => this.repo.deleteVolume(row.id));
        const vol = this.hostVolume(row);
        await driver.createVolume(vol, (path) => this.images().unpackInto(fingerprint, path, opts), opts);
        this.repo.setVolumeState(row.id, "created");
        return vol;
      });
    });
  }

  /** Drop the cached image volumes of an image on every pool (the image was deleted). */
  async deleteImageVolumes(fingerprint: string): Promise<void> {
    for (const pool of this.listPools()) {
      const v = this.repo.volume(pool.name, "default", "image", fingerprint);
      if (v) await this.locks.run(`${pool.name}/${fingerprint}`, () => this.removeVolume(this.driverFor(pool), v));
    }
  }

  private instanceVolume(project: string, pool: string, name: string): { row: VolumeRow; driver: Driver; vol: Volume } {
    const p = this.pool(pool);
    const row = this.repo.volume(pool, project, "container", name);
    if (!row || row.state !== "created") throw new NotFound("Storage pool volume not found");
    return { row, driver: this.driverFor(p), vol: this.hostVolume(row) };
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
      this.renameVolumeRows(row, to);
      revert.add(() => this.renameVolumeRows({ ...row, name: to }, from));
      await this.removeInstanceSymlink(project, from);
      revert.add(() => this.ensureInstanceSymlink(project, from, driver.volumePath(vol)));
      await this.ensureInstanceSymlink(project, to, driver.volumePath({ ...vol, name: newName }));
      await this.removeSnapshotsSymlink(project, from);
      revert.add(() => this.ensureSnapshotsSymlink(driver, project, from));
      await this.ensureSnapshotsSymlink(driver, project, to);
    });
  }

  async deleteInstanceVolume(project: string, pool: string, name: string): Promise<void> {
    const { row, driver } = this.instanceVolume(project, pool, name);
    await driver.mountPool();
    for (const snap of this.repo.volumes({ pool, project, type: "container" })) {
      if (snap.name.startsWith(`${name}/`)) await this.removeVolume(driver, snap);
    }
    await this.removeSnapshotsSymlink(project, name);
    await this.removeVolume(driver, row);
  }

  // ---- instance snapshots (StoragePort) ----

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
      await this.ensureSnapshotsSymlink(driver, project, name);
      this.repo.setVolumeState(snapRow.id, "created");
    });
  }

  /** Delete a snapshot volume; nothing to do if it is already gone (crash recovery). */
  async deleteInstanceSnapshot(project: string, pool: string, name: string, snapshot: string): Promise<void> {
    const p = this.pool(pool);
    const row = this.repo.volume(pool, project, "container", `${name}/${snapshot}`);
    if (!row) return;
    const driver = this.driverFor(p);
    await driver.mountPool();
    await this.removeVolume(driver, row);
    await this.ensureSnapshotsSymlink(driver, project, name);
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

  /** Make an instance volume an exact copy of the tree at `source` (the pool's rsync.bwlimit applies). */
  async syncInstanceVolume(project: string, pool: string, name: string, source: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    await driver.mountPool();
    await driver.syncVolume(vol, source, { signal: opts.signal, bwlimit: this.pool(pool).config["rsync.bwlimit"] || undefined });
  }

  /** Copy an instance volume or snapshot out of the pool (backups, publish) through its driver. */
  async exportInstanceVolume(project: string, pool: string, name: string, snapshot: string | undefined, target: string, opts: { link?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    if (snapshot !== undefined && this.repo.volume(pool, project, "container", `${name}/${snapshot}`)?.state !== "created") throw new NotFound("Storage pool volume snapshot not found");
    await driver.mountPool();
    await driver.exportVolume(snapshot === undefined ? vol : snapshotVolume(vol, snapshot), target, opts);
  }

  /** Path of a snapshot volume (read it only: copies, publish). */
  async mountInstanceSnapshot(project: string, pool: string, name: string, snapshot: string): Promise<string> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    const row = this.repo.volume(pool, project, "container", `${name}/${snapshot}`);
    if (!row || row.state !== "created") throw new NotFound("Storage pool volume snapshot not found");
    await driver.mountPool();
    return driver.volumePath(snapshotVolume(vol, snapshot));
  }

  // ---- optimized streams (btrfs send/receive) ----

  /** The pool driver's optimized stream type ("btrfs"), or undefined when it has none (rsync only). */
  streamType(pool: string): string | undefined {
    const driver = this.driverFor(this.pool(pool));
    return driver.sendStreams && driver.receiveStreams ? driver.info.name : undefined;
  }

  private streamDriver(pool: string): Required<Pick<Driver, "sendStreams" | "receiveStreams">> & Driver {
    const driver = this.driverFor(this.pool(pool));
    if (!driver.sendStreams || !driver.receiveStreams) throw new InternalError(`Storage driver "${driver.info.name}" has no optimized transfer`);
    return driver as Required<Pick<Driver, "sendStreams" | "receiveStreams">> & Driver;
  }

  /** Send a volume (row) and its `snapshots` as the driver's streams. */
  async sendStreams(row: VolumeRow, snapshots: string[], out: StreamSink, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const driver = this.streamDriver(row.pool);
    await driver.mountPool();
    await driver.sendStreams(this.hostVolume(row), snapshots, out, opts);
  }

  /** Receive streams for a volume (row) and its `snapshots` into the pool's staging area. */
  async receiveStreams(row: VolumeRow, snapshots: string[], next: (snapshot: string | undefined) => Readable | Promise<Readable>, opts: { signal?: AbortSignal } = {}): Promise<StagedStreams> {
    const driver = this.streamDriver(row.pool);
    await driver.mountPool();
    return driver.receiveStreams(this.hostVolume(row), snapshots, next, opts);
  }

  instanceStreamType(pool: string): string | undefined {
    return this.streamType(pool);
  }

  sendInstanceStreams(project: string, pool: string, name: string, snapshots: string[], out: StreamSink, opts: { signal?: AbortSignal } = {}): Promise<void> {
    return this.sendStreams(this.instanceVolume(project, pool, name).row, snapshots, out, opts);
  }

  receiveInstanceStreams(project: string, pool: string, name: string, snapshots: string[], next: (snapshot: string | undefined) => Readable | Promise<Readable>, opts: { signal?: AbortSignal } = {}): Promise<StagedStreams> {
    return this.receiveStreams(this.instanceVolume(project, pool, name).row, snapshots, next, opts);
  }

  async instanceVolumeUsage(project: string, pool: string, name: string): Promise<number | undefined> {
    const { driver, vol } = this.instanceVolume(project, pool, name);
    return driver.volumeUsage?.(vol);
  }
}

const isSnapshotName = (name: string) => name.includes("/");

export function validateVolumeName(name: string): void {
  if (name === "") throw new BadRequest("No name provided");
  if (name.includes("/")) throw new BadRequest("Storage volume names may not contain slashes");
  if (name === "." || name === ".." || name.includes("\0")) throw new BadRequest(`Invalid storage volume name "${name}"`);
}

/** A volume's config against its driver's volume keys: "Invalid option for volume ..." as upstream. */
function checkVolumeConfig(def: DriverDefinition, diskName: string, config: Record<string, string>, Err: new (m: string) => Error = InternalError): void {
  for (const [key, value] of Object.entries(config)) {
    if (key.startsWith("user.")) continue;
    const spec = def.info.volumeKeys[key];
    if (!spec) throw new Err(`Invalid option for volume "${diskName}" option "${key}"`);
    if (value === "") continue;
    try {
      spec.validate(value);
    } catch (e) {
      throw new Err(`Invalid value for volume "${diskName}" option "${key}": ${(e as Error).message}`);
    }
  }
}

export function assertVolumeType(type: string): asserts type is VolumeType {
  if (!(VOLUME_TYPES as readonly string[]).includes(type)) throw new BadRequest("Invalid storage volume type name");
}

