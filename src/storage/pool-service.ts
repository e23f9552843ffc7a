// The database-aware storage tier: pools (created, updated, deleted, mounted at start with the
// work a crash interrupted finished), the drivers behind them, and the volume records every part
// shares. Its parts: `volumes` (the storage-volume API), `instanceVolumes` (what instances get,
// through StoragePort: port.ts) and `recovery` (`lxd recover`).
import type { Readable } from "node:stream";
import { BadRequest, Conflict, InternalError, NotFound } from "../shared/errors.js";
import type { Logger } from "pino";
import type { Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import type { Paths } from "../daemon/paths.js";
import type { Ports } from "../ports.js";
import type { StorageEnvironment } from "../daemon/server-service.js";
import { DAEMON_STORAGE_KEYS } from "./daemon-storage-keys.js";
import { ProfileRepo } from "../db/profile-repo.js";
import { StorageRepo, type PoolRow, type VolumeRow } from "../db/storage-repo.js";
import { MemberConfigRepo } from "../db/member-config-repo.js";
import { validatePoolConfig } from "./config.js";
import { storageDrivers } from "./drivers/index.js";
import type { Driver, DriverDefinition, DriverEnv, PoolUsage, StagedStreams, StreamSink, Volume, VolumeType } from "./drivers/types.js";
import { InstanceLinks } from "./instance-links.js";
import { InstanceVolumes } from "./instance-volumes.js";
import type { RecoverPoolSpec, UnknownVolume } from "./recover.js";
import { PoolRecovery } from "./recover-pools.js";
import { assertVolumeType, isSnapshotName, storageName, validatePoolName } from "./volume-names.js";
import { VolumeService } from "./volume-service.js";
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

/** LXD's db.NodeSpecificStorageConfig: the pool keys each cluster member has its own value of. */
export const MEMBER_SPECIFIC_POOL_KEYS = ["size", "source", "volatile.initial_source", "zfs.pool_name", "lvm.thinpool_name", "lvm.vg_name"];

/** `url` with LXD's `target=<member>` query argument (api.URL.Target: none for "" or "none"). */
function withTarget(url: string, member: string): string {
  if (member === "" || member === "none") return url;
  return `${url}${url.includes("?") ? "&" : "?"}target=${encodeURIComponent(member)}`;
}

/** What the pool service uses of the daemon (and of the other features' ports). */
export interface PoolServiceDeps {
  db: Db;
  log: Logger;
  events: EventHub;
  paths: Pick<Paths, "dir" | "containers">;
  /** The server's cached GET /1.0 (storage info) is stale. */
  server: { invalidate(): void; get(key: string): string | undefined };
  ports: Pick<Ports, "cluster" | "images" | "instances" | "projects">;
}

export class PoolService {
  readonly repo: StorageRepo;
  /** Each member's state and own config of a pool (clustered). */
  readonly members: MemberConfigRepo;
  /** The storage-volume API: custom volumes, PUT on instance volumes, volume lists. */
  readonly volumes: VolumeService;
  /** Instance volumes, their snapshots and the pools' image volumes (StoragePort). */
  readonly instanceVolumes: InstanceVolumes;
  /** `lxd recover` over pools. */
  readonly recovery: PoolRecovery;
  private readonly profiles: ProfileRepo;
  private readonly env: DriverEnv;
  private readonly versions = new Map<string, string>();
  /** The drivers' probes, begun at construction (start() awaits them). */
  private readonly probing: Promise<void>;
  private readonly links: InstanceLinks;

  constructor(
    private readonly core: PoolServiceDeps,
    private readonly drivers: Record<string, DriverDefinition> = storageDrivers,
  ) {
    this.repo = new StorageRepo(core.db);
    this.members = new MemberConfigRepo(core.db, "pool");
    // In a cluster, every volume on a pool that is not shared (custom, instance, image) lives on the
    // member that made it, as LXD keys them by node: no member mistakes another's for its own.
    this.repo.volumeNode = (pool) => {
      const cluster = this.core.ports.cluster;
      if (!cluster?.clustered()) return "";
      const row = this.repo.pool(pool);
      return row && !this.definition(row.driver).info.remote ? cluster.name() : "";
    };
    this.profiles = new ProfileRepo(core.db);
    this.env = { lxdDir: core.paths.dir, log: core.log };
    this.links = new InstanceLinks(core.paths);
    this.recovery = new PoolRecovery(core, this, this.links);
    this.volumes = new VolumeService({ pools: this, events: core.events, log: core.log, projects: core.ports.projects, instances: core.ports.instances, clustered: () => core.ports.cluster.clustered() });
    this.instanceVolumes = new InstanceVolumes(this, this.links, core.ports.images);
    // The drivers' tools are asked once, from here: their processes run while the daemon sets up
    // its other services and routes, and start() waits for them before any pool is brought up.
    this.probing = Promise.all(
      Object.entries(this.drivers).map(async ([name, def]) => {
        const version = await def.probe().catch(() => undefined);
        if (version !== undefined) this.versions.set(name, version);
      }),
    ).then(() => undefined);
  }

  /**
   * Wait for the driver tools' probe, finish work a crash interrupted, mount every pool.
   * `leftovers: false` (a cluster member, not yet back in the cluster): volumes a crash left half
   * done are settled later by recoverLeftovers(), under the cluster write lock.
   */
  async start(opts: { leftovers: boolean } = { leftovers: true }): Promise<void> {
    await this.probing;
    for (const pool of this.repo.pools()) {
      try {
        await this.recoverPool(pool, opts.leftovers);
      } catch (e) {
        this.core.log.error({ err: e, pool: pool.name }, "cannot bring up storage pool");
      }
    }
    this.core.server.invalidate();
  }

  /**
   * A cluster member's volumes a crash left half done (unfinished creates, deletes, renames),
   * those `here` says are its own; a shared pool's (no member) are left to whoever did them.
   */
  async recoverLeftovers(here: (node: string) => boolean): Promise<void> {
    for (const pool of this.repo.pools()) {
      if (pool.state !== "created") continue;
      const driver = this.driverFor(pool);
      for (const vol of this.repo.volumes({ pool: pool.name })) {
        if (!vol.node || !here(vol.node) || (vol.state === "created" && !vol.renamingTo)) continue;
        await this.recoverLeftover(driver, vol).catch((e) => this.core.log.warn({ err: e, pool: pool.name, volume: vol.name }, "cannot settle volume left half-done by a crash"));
      }
    }
  }

  private async recoverPool(pool: PoolRow, leftovers: boolean): Promise<void> {
    // A cluster pool not yet created everywhere: only members where it was created have it on disk.
    if (pool.state === "pending" || pool.state === "errored") {
      if (this.members.get(pool.name, this.core.ports.cluster.name())?.state === "created") await this.driverFor(pool).mountPool();
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
      if (leftovers) await this.recoverLeftover(driver, vol);
      if (vol.state === "created" && !vol.renamingTo && (vol.type === "container" || vol.type === "custom") && !isSnapshotName(vol.name)) await driver.recoverVolume?.(this.hostVolume(vol));
    }
  }

  /** A volume's rename or create/delete a crash interrupted: finished or undone. */
  private async recoverLeftover(driver: Driver, vol: VolumeRow): Promise<void> {
    if (vol.renamingTo) await this.recoverRename(driver, vol);
    if (vol.state === "created") return;
    this.core.log.warn({ pool: vol.pool, volume: vol.name, type: vol.type, state: vol.state }, "removing volume left half-done by a crash");
    await this.removeVolume(driver, vol);
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
      await this.links.removeSnapshots(vol.project, done ? from : to);
      await this.links.ensureSnapshots(driver.mountPath, vol.project, vol.name);
      // The rename began only because nothing was called `to`, so a stray link of either name is ours.
      await this.links.removeInstance(vol.project, done ? from : to);
      await this.links.ensureInstance(vol.project, vol.name, driver.volumePath(this.hostVolume(vol)));
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
    if (!cluster?.clustered()) {
      // A member that joined, starting up (before it is back in the cluster): its own source
      // already (the shared config has the first member's, another directory of this host).
      const source = cluster?.poolSource(pool.name);
      return source ? { ...pool.config, source } : pool.config;
    }
    const own = this.members.get(pool.name, cluster.name());
    const config = own ? { ...pool.config, ...own.config } : pool.config;
    if (own?.config.source) return config;
    // This member's own source (chosen when it joined) over the shared config's, which is the
    // first member's: a member row without one (a global PUT records it) must not bind this
    // member's pool to another member's directory.
    const source = cluster.poolSource(pool.name);
    return source ? { ...config, source } : config;
  }

  /**
   * A member that joined a cluster: bring up every pool the cluster has on this host, each
   * with this member's own default source. Returns the local sources chosen.
   */
  /** A first cluster member: its volumes on pools that are not shared become its own (they were nobody's). */
  claimLocalVolumes(member: string): void {
    const local = this.repo.pools().filter((p) => !this.definition(p.driver).info.remote).map((p) => p.name);
    this.repo.claimVolumes(member, local);
  }

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
    for (const v of this.repo.volumes({ pool, everywhere: true }).filter((v) => v.state === "created")) {
      // As LXD's storagePools.UsedBy: a custom volume (or snapshot) is listed itself, with its member as `target`.
      if (v.type === "custom") out.push(withTarget(this.volumes.volumeUrl(v), v.node));
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
    const volumes = this.repo.volumes({ pool: name, everywhere: true });
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

  // ---- volume records (shared by the parts) ----

  /** Whether a custom volume holds the daemon's backups or images (LXD's VolumeUsedByDaemon, any project). */
  usedByDaemon(pool: string, volume: string): boolean {
    return Object.keys(DAEMON_STORAGE_KEYS).some((k) => this.core.server.get(k) === `${pool}/${volume}`);
  }

  volumeUsedBy(pool: string, v: VolumeRow): string[] {
    if (v.type === "container" || v.type === "virtual-machine") {
      const [parent, snap] = v.name.split("/");
      return [snap === undefined ? apiUrl(v.project, "instances", parent) : apiUrl(v.project, "instances", parent, "snapshots", snap)];
    }
    if (v.type === "image") return [`/1.0/images/${v.name}`];
    if (this.usedByDaemon(pool, v.name)) return ["/1.0"];
    const out = [...this.core.ports.instances.volumeUsedBy(pool, v.project, v.name)];
    for (const p of this.profiles.all()) {
      if (p.project !== v.project) continue;
      if (Object.values(p.devices).some((d) => d.type === "disk" && d.pool === pool && d.source === v.name)) out.push(apiUrl(p.project, "profiles", p.name));
    }
    return out;
  }

  /** The project whose custom volumes `project` uses (the default project's without features.storage.volumes). */
  volumeProject(project: string, type: string): string {
    if (type === "image") return "default";
    return type === "custom" ? this.core.ports.projects.effectiveProject(project, "storage.volumes") : project;
  }

  getVolume(pool: string, project: string, type: string, name: string): VolumeRow {
    this.pool(pool);
    assertVolumeType(type);
    const v = this.repo.volume(pool, this.volumeProject(project, type), type, name);
    if (!v || v.state !== "created") throw new NotFound("Storage pool volume not found");
    return v;
  }

  hostVolume(v: { project: string; type: string; name: string; config: Record<string, string>; contentType?: string }): Volume {
    const vol: Volume = { type: v.type as VolumeType, name: storageName(v.project, v.type, v.name), config: v.config };
    if (v.contentType === "block") vol.contentType = "block";
    return vol;
  }

  /** Delete a volume from disk and its record (used for cleanup; the record goes even if the disk was already clean). */
  async removeVolume(driver: Driver, v: VolumeRow): Promise<void> {
    this.repo.setVolumeState(v.id, "deleting");
    await driver.deleteVolume(this.hostVolume(v));
    if (v.type === "container" && !isSnapshotName(v.name)) await this.links.removeInstance(v.project, v.name);
    this.repo.deleteVolume(v.id);
  }

  /** Rename a volume's row and its snapshots' rows together. */
  renameVolumeRows(v: VolumeRow, to: string): void {
    this.core.db.transaction(() => {
      this.repo.renameVolume(v.id, to);
      for (const snap of this.repo.volumes({ pool: v.pool, project: v.project, type: v.type })) {
        if (snap.name.startsWith(`${v.name}/`)) this.repo.renameVolume(snap.id, `${to}${snap.name.slice(v.name.length)}`);
      }
    })();
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
}
