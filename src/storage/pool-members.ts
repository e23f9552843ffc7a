// Storage pools in a cluster, as LXD 5.0.2 makes them: `POST /1.0/storage-pools?target=m1`
// records a pending pool with member m1's own keys (`source`, `size`, ...); once every member
// has them, `POST /1.0/storage-pools` without a target creates the pool on this member, tells
// every other member to create its part, and marks it created. Deleting a created pool removes
// it from every member. Views show the shared config, or with `?target=` (served by that member)
// the member's config and its own status. The member asked writes every record (it holds the
// cluster write lock); members told to do their part only touch their host.
import { BadRequest, InternalError, NotFound } from "../shared/errors.js";
import type { Logger } from "pino";
import type { Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import type { ClusterPort } from "../ports.js";
import { apiStatus } from "../db/member-config-repo.js";
import type { PoolRow } from "../db/storage-repo.js";
import { validatePoolConfig } from "./config.js";
import { MEMBER_SPECIFIC_POOL_KEYS, type PoolService, type StoragePoolView } from "./pool-service.js";
import { validatePoolName } from "./volume-names.js";


const isMemberKey = (k: string) => MEMBER_SPECIFIC_POOL_KEYS.includes(k);
const memberPart = (c: Record<string, string>) => Object.fromEntries(Object.entries(c).filter(([k]) => isMemberKey(k)));
const sharedPart = (c: Record<string, string>) => Object.fromEntries(Object.entries(c).filter(([k]) => !isMemberKey(k)));

export interface PoolCreate {
  name: string;
  driver: string;
  description: string;
  config: Record<string, string>;
}

export class PoolMembers {
  constructor(
    private readonly deps: { db: Db; log: Logger; events: EventHub; lxdDir: string; server: { invalidate(): void }; cluster: ClusterPort },
    private readonly pools: PoolService,
  ) {}

  private get cluster(): ClusterPort | undefined {
    return this.deps.cluster.clustered() ? this.deps.cluster : undefined;
  }

  clustered(): boolean {
    return this.cluster !== undefined;
  }

  private names(): Promise<string[]> {
    return this.cluster!.memberNames();
  }

  /** The checks LXD's storagePoolValidate makes (name, driver, keys). */
  private validate(req: PoolCreate): void {
    validatePoolName(req.name);
    if (req.driver === "") throw new BadRequest("No driver provided");
    let def;
    try {
      def = this.pools.definition(req.driver);
    } catch {
      throw new BadRequest(`Storage pool driver "${req.driver}" is not supported`);
    }
    try {
      validatePoolConfig(def.info.poolKeys, def.info.volumeKeys, req.config);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
  }

  /** `POST /1.0/storage-pools?target=member`: record the member's own config of a pending pool. */
  async createPending(target: string, req: PoolCreate): Promise<void> {
    for (const key of Object.keys(req.config)) {
      if (!isMemberKey(key)) throw new InternalError(`Config key "${key}" may not be used as member-specific key`);
    }
    this.validate(req);
    const existing = this.pools.repo.pool(req.name);
    if (existing) {
      if (existing.driver !== req.driver) throw new InternalError("Storage pool already exists with a different driver");
      if (existing.state !== "pending") throw new InternalError("Storage pool is not in pending state");
    }
    if (!(await this.names()).includes(target)) throw new NotFound("Cluster member not found");
    if (existing && this.pools.members.get(req.name, target)) throw new BadRequest(`The storage pool already defined on member "${target}"`);
    this.deps.db.transaction(() => {
      if (!existing) {
        this.pools.repo.insertPool({ name: req.name, driver: req.driver, description: req.description, config: {} });
        this.pools.repo.updatePool(req.name, { state: "pending" });
      }
      this.pools.members.insert(req.name, target, req.config, "pending");
    })();
    this.deps.events.lifecycle("storage-pool-created", `/1.0/storage-pools/${req.name}`, { context: { target } });
  }

  /** Whether an untargeted create must go the cluster way (more than one member, or a pool not created yet). */
  async needsCluster(name: string): Promise<boolean> {
    if (!this.cluster) return false;
    const pool = this.pools.repo.pool(name);
    if (pool && pool.state !== "created") return true;
    return (await this.names()).length > 1;
  }

  /** LXD's storagePoolPartiallyCreated: errored, or shared config already written. */
  private partiallyCreated(pool: PoolRow): boolean {
    return pool.state === "errored" || Object.keys(pool.config).some((k) => !isMemberKey(k));
  }

  /** `POST /1.0/storage-pools` (no target) in a cluster: create the pending pool on every member. */
  async createEverywhere(req: PoolCreate): Promise<void> {
    for (const key of Object.keys(req.config)) {
      if (isMemberKey(key)) throw new InternalError(`Config key "${key}" is cluster member specific`);
    }
    const pool = this.pools.repo.pool(req.name);
    if (pool) {
      if (pool.state === "created") throw new InternalError("The storage pool is already created");
      if (req.driver !== pool.driver) throw new InternalError(`Requested storage pool driver "${req.driver}" doesn't match driver in existing database record "${pool.driver}"`);
    }
    if (!pool) throw new InternalError("Pool not pending on any node (use --target <node> first)");
    const names = await this.names();
    const defined = new Map(this.pools.members.all(req.name).map((r) => [r.member, r]));
    let shared = pool.config;
    if (this.partiallyCreated(pool)) {
      if (Object.keys(req.config).length > 0) throw new InternalError("Storage pool already partially created. Please do not specify any global config when re-running create");
    } else {
      const missing = names.filter((n) => !defined.has(n));
      if (missing.length > 0) throw new InternalError(`Pool not defined on nodes: ${missing.join(", ")}`);
      this.validate({ ...req, config: { ...req.config } });
      shared = { ...req.config };
      this.pools.repo.updatePool(req.name, { description: req.description || pool.description, config: shared, state: "errored" });
    }
    const self = this.cluster!.name();
    const ordered = [self, ...names.filter((n) => n !== self)];
    for (const member of ordered) {
      const row = defined.get(member);
      if (row?.state === "created") continue;
      const body: PoolCreate = { name: req.name, driver: pool.driver, description: req.description || pool.description, config: { ...shared, ...(row?.config ?? {}) } };
      const filled = member === self ? await this.createHere(body) : ((await this.cluster!.notifyMember(member, "POST", "/1.0/storage-pools", body)) as Record<string, string> | null);
      this.pools.members.set(req.name, member, "created", memberPart({ ...(row?.config ?? {}), ...(filled ?? {}) }));
    }
    this.pools.repo.updatePool(req.name, { state: "created" });
    this.deps.server.invalidate();
    this.deps.events.lifecycle("storage-pool-created", `/1.0/storage-pools/${req.name}`);
  }

  /**
   * This member's part of a cluster-wide create (asked by another member, or the member asked):
   * the pool on this host with the given config; returns the config as created (defaults filled).
   */
  async createHere(req: PoolCreate): Promise<Record<string, string>> {
    this.validate(req);
    const def = this.pools.definition(req.driver);
    if (!this.pools.supported().some((d) => d.name === req.driver)) {
      throw new InternalError((await def.unavailableReason?.()) ?? `Storage driver "${req.driver}" is not available on this host`);
    }
    let config: Record<string, string>;
    try {
      config = def.fillDefaults({ name: req.name, config: req.config }, { lxdDir: this.deps.lxdDir, log: this.deps.log });
    } catch (e) {
      throw new InternalError((e as Error).message);
    }
    const driver = def.load({ name: req.name, config }, { lxdDir: this.deps.lxdDir, log: this.deps.log });
    try {
      const learnt = await driver.createPool();
      if (learnt) config = { ...config, ...learnt };
      await driver.mountPool();
    } catch (e) {
      throw new InternalError((e as Error).message);
    }
    this.deps.server.invalidate();
    return config;
  }

  /** A single-member cluster created a pool the plain way: this member's row says so. */
  recordCreatedHere(name: string): void {
    if (!this.cluster) return;
    const pool = this.pools.repo.pool(name);
    if (pool) this.pools.members.set(name, this.cluster.name(), "created", memberPart(pool.config));
  }

  /** `DELETE /1.0/storage-pools/{name}` in a cluster: from this member, then from every other, then the records. */
  async deleteEverywhere(name: string): Promise<void> {
    const pool = this.pools.repo.pool(name);
    if (!pool) throw new NotFound("Storage pool not found");
    if (pool.state === "created") {
      const inUse = this.pools.poolUsedBy(name).filter((u) => !u.startsWith("/1.0/images/"));
      if (inUse.length > 0 || this.pools.repo.volumes({ pool: name, everywhere: true }).some((v) => v.type !== "image")) throw new BadRequest("The storage pool is currently in use");
    }
    const self = this.cluster!.name();
    const rows = new Map(this.pools.members.all(name).map((r) => [r.member, r]));
    // A pool from before the cluster (or a join) exists on every member that has no row for it.
    const onHost = (m: string) => (rows.has(m) ? rows.get(m)!.state === "created" : pool.state === "created");
    if (onHost(self)) await this.pools.deletePoolHere(pool);
    for (const member of (await this.names()).filter((n) => n !== self && onHost(n))) {
      await this.cluster!.notifyMember(member, "DELETE", `/1.0/storage-pools/${encodeURIComponent(name)}`);
    }
    this.pools.repo.deletePool(name);
    this.deps.server.invalidate();
    this.deps.events.lifecycle("storage-pool-deleted", `/1.0/storage-pools/${name}`);
  }

  /** This member's part of a cluster-wide delete. */
  async deleteHere(name: string): Promise<void> {
    const pool = this.pools.repo.pool(name);
    if (!pool) throw new NotFound("Storage pool not found");
    await this.pools.deletePoolHere(pool);
  }

  /** After this member updated a pool's record and its host: every other member applies the change to its host. */
  async updateEverywhere(name: string): Promise<void> {
    if (!this.cluster) return;
    const pool = this.pools.pool(name);
    const self = this.cluster.name();
    const rows = new Map(this.pools.members.all(name).map((r) => [r.member, r]));
    for (const member of (await this.names()).filter((n) => n !== self && (!rows.has(n) || rows.get(n)!.state === "created"))) {
      await this.cluster.notifyMember(member, "PUT", `/1.0/storage-pools/${encodeURIComponent(name)}`, { description: pool.description, config: sharedPart(pool.config) });
    }
  }

  /** Pools a listing shows: pending and errored ones too in a cluster. */
  listRows(): PoolRow[] {
    if (!this.cluster) return this.pools.listPools();
    return this.pools.repo.pools().filter((p) => ["created", "pending", "errored"].includes(p.state));
  }

  /** A pool row for a view (any cluster state), or LXD's 404. */
  row(name: string): PoolRow {
    if (!this.cluster) return this.pools.pool(name);
    const pool = this.pools.repo.pool(name);
    if (!pool || !["created", "pending", "errored"].includes(pool.state)) throw new NotFound("Storage pool not found");
    return pool;
  }

  /**
   * The API view: standalone as before; in a cluster without a target the shared config (member
   * keys left out), the pool's status and the members it is defined on; with `memberSpecific`
   * (a `?target=` request served here) this member's config and its status here.
   */
  async view(pool: PoolRow, memberSpecific: boolean): Promise<StoragePoolView> {
    const base = this.pools.poolView(pool);
    if (!this.cluster) return base;
    const rows = this.pools.members.all(pool.name);
    const names = await this.names();
    const locations = pool.state === "created" ? names : rows.map((r) => r.member);
    const config = this.configFor(pool, memberSpecific);
    if (memberSpecific) {
      const own = rows.find((r) => r.member === this.cluster!.name());
      return { ...base, config, status: apiStatus(own?.state ?? pool.state), locations };
    }
    return { ...base, config, status: apiStatus(pool.state), locations };
  }

  /** The config a view shows (and its ETag covers). */
  configFor(pool: PoolRow, memberSpecific: boolean): Record<string, string> {
    if (!this.cluster) return pool.config;
    return memberSpecific ? this.pools.memberConfig(pool) : sharedPart(pool.config);
  }

  /**
   * PUT/PATCH with `?target=` (served by that member, LXD's storagePoolPut with a target): only
   * this member's own keys may change (any other key must keep its value). While the pool is
   * pending here they are just recorded (a pending `source` can be changed); on a created pool the
   * driver applies what it can change (`source` cannot change: LXD's error).
   */
  async updateHere(name: string, req: { description: string; config: Record<string, string> }, mode: "replace" | "merge"): Promise<void> {
    const pool = this.row(name);
    const self = this.cluster!.name();
    const own = this.pools.members.get(name, self);
    const cur = this.pools.memberConfig(pool);
    for (const [k, v] of Object.entries(req.config)) {
      if (!isMemberKey(k) && cur[k] !== v) throw new BadRequest(`Config key "${k}" may not be used as cluster member specific key`);
    }
    const before = memberPart(cur);
    const asked = memberPart(req.config);
    const next = Object.fromEntries(Object.entries(mode === "replace" ? asked : { ...before, ...asked }).filter(([, v]) => v !== ""));
    const def = this.pools.definition(pool.driver);
    try {
      validatePoolConfig(def.info.poolKeys, def.info.volumeKeys, { ...sharedPart(pool.config), ...next });
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    const changed = [...new Set([...Object.keys(before), ...Object.keys(next)])].filter((k) => before[k] !== next[k]);
    const localState = own?.state ?? pool.state;
    if (changed.includes("source") && localState !== "pending") throw new InternalError("Pool source cannot be changed when not in pending state");
    const applied = changed.filter((k) => k !== "volatile.initial_source");
    if (applied.length > 0 && pool.state === "created" && localState === "created") {
      const driver = this.pools.driverFor(pool);
      const fixed = applied.find((k) => !def.info.mutablePoolKeys.includes(k));
      if (fixed !== undefined || !driver.updatePool) throw new BadRequest(`Pool config "${fixed ?? applied[0]}" cannot be changed`);
      try {
        await driver.updatePool(cur, { ...sharedPart(pool.config), ...next });
      } catch (e) {
        throw new InternalError((e as Error).message);
      }
    }
    this.deps.db.transaction(() => {
      if (own) this.pools.members.set(name, self, own.state, next);
      else this.pools.members.insert(name, self, next, pool.state === "pending" ? "pending" : "created");
      if (req.description !== pool.description) this.pools.repo.updatePool(name, { description: req.description });
    })();
    this.deps.server.invalidate();
    this.deps.events.lifecycle("storage-pool-updated", `/1.0/storage-pools/${name}`, { context: { target: self } });
  }

  /** An untargeted PUT/PATCH in a cluster needs a created pool (LXD's check). */
  checkGlobalUpdate(name: string): void {
    if (!this.cluster) return;
    if (this.row(name).state !== "created") throw new BadRequest("Cannot update storage pool global config when not in created state");
  }

  /**
   * PUT/PATCH in a cluster: member keys cannot be set cluster-wide; the member keys the record
   * holds (a pool from before the cluster keeps its `source` there) stay as they are.
   */
  updateRequest(name: string, config: Record<string, string>): Record<string, string> {
    if (!this.cluster) return config;
    for (const key of Object.keys(config)) {
      if (isMemberKey(key)) throw new BadRequest(`Config key "${key}" is cluster member specific`);
    }
    return { ...memberPart(this.pools.pool(name).config), ...config };
  }
}
