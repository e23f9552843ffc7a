// `lxd recover` over pools (LXD's internalRecoverScan): the pools to scan — known ones, and on a
// standalone daemon one the database lost, from the driver and config the user gives — mounted,
// scanned for volumes the database lacks, and on import the lost pool's record written back
// before its volumes' records.
import type { Ports } from "../ports.js";
import type { PoolRow, StorageRepo, VolumeRow } from "../db/storage-repo.js";
import { BadRequest, Conflict, InternalError } from "../shared/errors.js";
import type { Driver, Volume } from "./drivers/types.js";
import type { InstanceLinks } from "./instance-links.js";
import {
  type AdoptedVolume,
  importUnknownVolumes,
  recoverDependencies,
  recoveredPoolRecord,
  scanUnknownVolumes,
  type RecoverImportDeps,
  type RecoverPoolSpec,
  type UnknownVolume,
} from "./recover.js";

/** What recovery needs of the pool service. */
export interface RecoveryPools {
  readonly repo: StorageRepo;
  pool(name: string): PoolRow;
  driverFor(pool: { name: string; driver: string; config: Record<string, string> }): Driver;
  temporaryDriver(name: string, driver: string, config: Record<string, string>): Driver;
  hostVolume(v: VolumeRow): Volume;
}

/** A pool `lxd recover` scans; `fresh` when the database lost it (what the user said it is). */
interface Target {
  driver: Driver;
  fresh?: { driver: string; description: string; config: Record<string, string> };
}

export class PoolRecovery {
  constructor(
    private readonly wiring: { server: { invalidate(): void }; ports: Pick<Ports, "cluster" | "instances"> },
    private readonly pools: RecoveryPools,
    private readonly links: InstanceLinks,
  ) {}

  /** POST /internal/recover/validate: the unknown volumes and what their import would miss. */
  validate(specs: RecoverPoolSpec[]): Promise<{ UnknownVolumes: UnknownVolume[]; DependencyErrors: string[] }> {
    return this.scan(specs, async (found, deps) => ({ UnknownVolumes: found, DependencyErrors: await recoverDependencies(found, deps) }));
  }

  /**
   * POST /internal/recover/import: records for every unknown volume (LXD refuses while dependencies
   * are missing). A lost pool that holds volumes gets its record back first, from the pool section
   * of an instance's backup.yaml when there is one (it has every key), else from the user's config;
   * a failure removes it again.
   */
  import(specs: RecoverPoolSpec[]): Promise<void> {
    const repo = this.pools.repo;
    return this.scan(specs, async (found, deps, targets) => {
      const missing = await recoverDependencies(found, deps);
      if (missing.length) throw new BadRequest(`Missing dependencies: ${missing.join(", ")}`);
      const created: string[] = [];
      try {
        for (const [name, t] of targets) {
          if (!t.fresh || !found.some((v) => v.pool === name)) continue;
          const record = (await recoveredPoolRecord(found.filter((v) => v.pool === name), deps)) ?? t.fresh;
          // Written 'created' at once: a 'creating' row left by a crash would have its pool deleted at start.
          repo.insertPool({ name, driver: record.driver || t.fresh.driver, description: record.description, config: record.config, state: "created" });
          created.push(name);
        }
        await importUnknownVolumes(found, deps);
      } catch (e) {
        for (const name of created) repo.deletePool(name);
        throw e;
      } finally {
        if (created.length) this.wiring.server.invalidate();
      }
    });
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
    vol: AdoptedVolume,
    snapshots: (AdoptedVolume & { name: string })[],
  ): Promise<string> {
    const repo = this.pools.repo;
    const driver = this.pools.driverFor(this.pools.pool(poolName));
    await driver.mountPool();
    const fresh = (volName: string, v: AdoptedVolume) => {
      const old = repo.volume(poolName, project, type, volName);
      if (old) repo.deleteVolume(old.id);
      repo.insertVolume({ pool: poolName, project, type, name: volName, description: v.description, config: v.config, contentType: v.contentType });
      const row = repo.volume(poolName, project, type, volName)!;
      repo.setVolumeState(row.id, "created");
      return row;
    };
    const main = fresh(name, vol);
    for (const s of snapshots) fresh(`${name}/${s.name}`, s);
    const path = await driver.mountVolume(this.pools.hostVolume(main));
    if (type === "container") await this.links.ensureInstance(project, name, path);
    return path;
  }

  /** The pools to scan: known ones by name; a lost one (standalone only, as LXD) from the user's spec. */
  private targets(specs: RecoverPoolSpec[]): Map<string, Target> {
    const out = new Map<string, Target>();
    for (const s of specs) {
      const row = this.pools.repo.pool(s.name);
      if (row?.state === "created") {
        out.set(s.name, { driver: this.pools.driverFor(row) });
        continue;
      }
      if (this.wiring.ports.cluster.clustered()) throw new BadRequest("Storage pool recovery not supported when clustered");
      if (row) throw new Conflict(`Storage pool ${JSON.stringify(s.name)} is being changed`);
      const config = { ...(s.config ?? {}) };
      const driver = this.pools.temporaryDriver(s.name, s.driver ?? "", config);
      out.set(s.name, { driver, fresh: { driver: s.driver ?? "", description: s.description ?? "", config } });
    }
    return out;
  }

  private deps(targets: Map<string, Target>): RecoverImportDeps {
    const instances = this.wiring.ports.instances;
    const repo = this.pools.repo;
    return {
      mountPath: (n) => targets.get(n)!.driver.mountPath,
      known: (pool, project, type, name) => repo.volume(pool, project, type, name) !== undefined,
      instanceKnown: (project, name) => instances.instanceExists(project, name),
      adoptVolume: (pool, project, type, name, vol, snaps) => this.adoptVolume(pool, project, type, name, vol, snaps),
      instanceDependencies: (project, backup) => instances.recoverDependencies(project, backup),
      recoverInstance: (pool, project, name, backup) => instances.recoverInstance(pool, project, name, backup),
    };
  }

  /** Mount the pools and scan them; a lost pool nothing recorded afterwards is unmounted again (LXD leaves the others mounted). */
  private async scan<T>(specs: RecoverPoolSpec[], body: (found: UnknownVolume[], deps: RecoverImportDeps, targets: Map<string, Target>) => Promise<T>): Promise<T> {
    const targets = this.targets(specs);
    const deps = this.deps(targets);
    try {
      for (const [name, t] of targets) {
        await t.driver.mountPool().catch((e) => {
          throw new InternalError(`Failed mounting pool ${JSON.stringify(name)}: ${(e as Error).message}`);
        });
      }
      return await body(await scanUnknownVolumes([...targets.keys()], deps), deps, targets);
    } finally {
      for (const [name, t] of targets) {
        if (t.fresh && this.pools.repo.pool(name)?.state !== "created") await t.driver.unmountPool().catch(() => {});
      }
    }
  }
}
