// Importing an instance backup (`lxc import`, POST /1.0/instances with the tarball as body):
// the upload is kept in a private temp file, the whole tarball is checked and its index read
// before anything is created, then the volume, snapshots and records are restored; a failure
// removes what was made.
import { receiveToTempFile } from "../os/upload-file.js";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { parseYaml } from "../shared/yaml.js";
import { BadRequest, InternalError, NotFound } from "../shared/errors.js";
import type { Logger } from "pino";
import type { Db } from "../db/database.js";
import type { ClusterPort, Ports } from "../ports.js";
import type { EventHub } from "../operations/events.js";
import { extractTarball, scanTarball } from "../images/archive.js";
import { TarRefused } from "../images/tar-gate.js";
import { checkOptimizedHeader, INSTANCE_LAYOUT, optimizedStreams } from "../storage/optimized-backup.js";
import { validateInstanceName } from "./names.js";
import { BackupIndexError, checkBackupIndex, type CheckedIndex, type IndexInstance, type IndexSnapshot } from "./backup-index.js";
import { emptyDir, volumeConfigForCopy, type InstanceOwner } from "./model.js";
import { instanceUrl, rootDisk, type Devices } from "./rows.js";
import { parseExpiry, validateSnapshotName, ZERO_TIME, type SnapshotService } from "./snapshots.js";

/** What instance backups (and their import) use of the daemon and the other features. */
export interface BackupDeps {
  db: Db;
  log: Logger;
  events: EventHub;
  /** The daemon's directory ($LXD_DIR): backups/ lives under it. */
  lxdDir: string;
  /** The host's architecture, for imported instances that do not name one. */
  architecture: string;
  cluster: Pick<ClusterPort, "owns">;
  ports: Pick<Ports, "storage" | "profiles" | "projects">;
}

/** Left beside an import being restored; recover() finds half-done imports by it. */
export const IMPORT_MARKER = "instance.json";

export class BackupImport {
  constructor(
    private readonly deps: Pick<BackupDeps, "events" | "lxdDir" | "architecture" | "ports">,
    private readonly svc: InstanceOwner,
    private readonly snapshots: SnapshotService,
  ) {}

  /** Stream the upload to a private temp file; the caller removes it with `discard`. */
  receive(body: Readable): Promise<{ file: string; discard: () => void }> {
    return receiveToTempFile(join(this.deps.lxdDir, "backups"), ".import-", body);
  }

  /** Validate the whole tarball and read its index; the instance name it will get. */
  async inspect(project: string, file: string, opts: { name?: string; pool?: string }): Promise<{ name: string; pool: string; index: { container: IndexInstance; snapshots: IndexSnapshot[]; volumes: CheckedIndex["volumes"]; optimized?: CheckedIndex["optimized"] } }> {
    let gate;
    try {
      gate = await scanTarball(file, { backup: true, capture: "backup/index.yaml" });
    } catch (e) {
      if (e instanceof TarRefused) throw new BadRequest(e.message.replace("Refusing unsafe image tarball", "Refusing unsafe backup tarball"));
      throw e;
    }
    if (!gate.captured) throw new BadRequest("Backup is missing index.yaml");
    let checked;
    try {
      checked = checkBackupIndex(parseYaml(gate.captured.toString("utf8")));
    } catch (e) {
      if (e instanceof BackupIndexError || (e as Error).name === "YAMLParseError") throw new BadRequest((e as Error).message);
      throw e;
    }
    const { container, snapshots } = checked;
    const name = opts.name || checked.name;
    try {
      validateInstanceName(name);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    for (const s of snapshots) {
      try {
        validateSnapshotName(s.name);
      } catch (e) {
        throw new BadRequest((e as Error).message);
      }
    }
    return { name, pool: this.importPool(project, opts.pool || checked.pool, !!checked.optimized, !!opts.pool), index: { container, snapshots, volumes: checked.volumes, optimized: checked.optimized } };
  }

  /**
   * The pool an import goes to (LXD's instancesPost from a backup): the backup's or the asked
   * one; a backup whose pool is gone falls back to the default profile's root pool, unless it
   * is optimized (its streams can't be rewritten) or the pool was asked for.
   */
  private importPool(project: string, pool: string, optimized: boolean, asked: boolean): string {
    const storage = this.deps.ports.storage;
    try {
      storage.assertPool(pool);
      return pool;
    } catch (e) {
      if (!(e instanceof NotFound)) throw e;
      if (optimized || asked) throw new InternalError(`Storage pool not found: ${e.message}`);
    }
    const profile = this.deps.ports.profiles.get(project, "default");
    const roots = Object.values(profile?.devices ?? {}).filter((d) => d.type === "disk" && d.path === "/" && !d.source);
    if (roots.length > 1) throw new InternalError("Failed to get root disk device: More than one root device found");
    if (roots.length === 0) throw new InternalError("Failed to get root disk device: No root device could be found");
    return roots[0].pool ?? "";
  }

  /** The body of the "Restoring backup" operation: a Stopped instance with its snapshots. */
  async restore(project: string, file: string, plan: Awaited<ReturnType<BackupImport["inspect"]>>, signal?: AbortSignal): Promise<void> {
    const { name, index } = plan;
    if (this.svc.repo.get(project, name)) throw new Error("Create instance from backup: Cannot restore volume, already exists on target");
    const c = index.container;
    const strings = (m: unknown) => Object.fromEntries(Object.entries((m ?? {}) as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
    const devices: Devices = Object.fromEntries(Object.entries((c.devices ?? {}) as Record<string, unknown>).map(([k, v]) => [k, strings(v)]));
    const profiles = (c.profiles ?? ["default"]).map(String);
    const config = strings(c.config);
    // Until the marker is gone, a crash means the instance is removed at the next start.
    const marker = join(dirname(file), IMPORT_MARKER);
    writeFileSync(marker, JSON.stringify({ project, name }), { mode: 0o600 });
    // Another pool asked for (X-LXD-pool): the root disk moves there.
    if (plan.pool) {
      const local = Object.entries(devices).find(([, d]) => d.type === "disk" && d.path === "/" && !d.source);
      if (local) local[1].pool = plan.pool;
      else if (this.rootPool(project, profiles, config, devices) !== plan.pool) devices.root = { type: "disk", path: "/", pool: plan.pool };
    }
    const pool = this.rootPool(project, profiles, config, devices);
    const storage = this.deps.ports.storage;
    storage.assertPool(pool);
    const optimized = index.optimized;
    if (optimized) {
      const driver = storage.getPool?.(pool).driver ?? "";
      if (driver !== optimized.backend || !storage.receiveInstanceStreams) throw new Error(`Optimized backup storage driver "${optimized.backend}" differs from the target storage pool driver "${driver}"`);
      await checkOptimizedHeader(file, index.snapshots.map((s) => s.name), optimized.header, { backup: true });
    }
    this.svc.validate(project, name, Object.fromEntries(Object.entries(config).filter(([k]) => !k.startsWith("volatile."))), devices, profiles);
    // An imported instance is a new instance of the project: its restrictions and limits apply.
    this.deps.ports.projects.allowInstanceCreation(project, { name, type: "container", config: { ...config }, devices, profiles }, true);
    const ex = this.svc.expanded({ project, profiles, config, devices });
    const idmap = this.svc.allocateIdmap(project, name, ex.config);
    delete config["volatile.last_state.power"];
    delete config["volatile.idmap.current"];
    Object.assign(config, { "volatile.idmap.base": String(idmap.base), "volatile.idmap.next": idmap.map });
    // The files keep the ownership they had: the first start shifts them if the maps differ.
    config["volatile.last_state.idmap"] ??= "[]";
    this.svc.repo.insert({
      project,
      name,
      type: "container",
      architecture: String(c.architecture || this.deps.architecture),
      ephemeral: Boolean(c.ephemeral),
      stateful: false,
      description: String(c.description ?? ""),
      config,
      devices,
      profiles,
      created_at: new Date().toISOString(),
      last_used_at: "1970-01-01T00:00:00Z",
      init_pid: 0,
      init_start: "",
    });
    const row = this.svc.require(project, name);
    let volumeCreated = false;
    try {
      const dir = await storage.createInstanceVolume(project, pool, name, { signal });
      volumeCreated = true;
      const addSnapshot = async (s: IndexSnapshot, place?: () => Promise<void>) => {
        this.snapshots.repo.insert({
          instanceId: row.id,
          name: s.name,
          createdAt: s.created_at ? new Date(s.created_at).toISOString() : new Date().toISOString(),
          expiresAt: s.expires_at ? parseExpiry(s.expires_at) : ZERO_TIME,
          stateful: false,
          description: "",
          architecture: String(s.architecture || row.architecture),
          ephemeral: Boolean(s.ephemeral),
          config: strings(s.config),
          devices: Object.fromEntries(Object.entries((s.devices ?? {}) as Record<string, unknown>).map(([k, v]) => [k, strings(v)])),
          profiles: (s.profiles ?? profiles).map(String),
        });
        const snapRow = this.snapshots.repo.get(row.id, s.name)!;
        await storage.createInstanceSnapshot!(project, pool, name, s.name, { signal, place });
        storage.setInstanceVolumeConfig?.(project, pool, name, s.name, { description: "", config: index.volumes.snapshots[s.name] ?? {} });
        this.snapshots.repo.setState(snapRow.id, "created");
      };
      if (optimized) {
        // btrfs streams: received (staged, checked), then moved into place.
        const tars = optimizedStreams(file, INSTANCE_LAYOUT, signal);
        const staged = await storage.receiveInstanceStreams!(project, pool, name, index.snapshots.map((s) => s.name), tars.next, { signal });
        try {
          await tars.done();
          for (const s of index.snapshots) await addSnapshot(s, () => staged.placeSnapshot(s.name));
          await staged.placeVolume();
        } finally {
          await staged.discard();
        }
      } else {
        for (const s of index.snapshots) {
          await emptyDir(dir);
          await extractTarball(file, dir, { backup: true }, { signal, select: { member: `backup/snapshots/${s.name}`, strip: 3 } });
          await addSnapshot(s);
        }
      }
      storage.setInstanceVolumeConfig?.(project, pool, name, undefined, { description: "", config: volumeConfigForCopy(index.volumes.main) });
      if (!optimized) {
        await emptyDir(dir);
        await extractTarball(file, dir, { backup: true }, { signal, select: { member: "backup/container", strip: 2 } });
      }
      mkdirSync(join(dir, "rootfs"), { recursive: true, mode: 0o755 });
      this.svc.runtime.driver.create({ project, name }, dir);
      rmSync(marker, { force: true });
    } catch (e) {
      if (volumeCreated) await storage.deleteInstanceVolume(project, pool, name).catch(() => {});
      this.svc.runtime.driver.delete({ project, name });
      this.svc.repo.delete(project, name);
      rmSync(marker, { force: true });
      throw e;
    }
    this.deps.events.lifecycle("instance-created", instanceUrl(project, name), { project });
  }

  private rootPool(project: string, profiles: string[], config: Record<string, string>, devices: Devices): string {
    try {
      return rootDisk(this.svc.expanded({ project, profiles, config, devices }).devices).pool;
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
  }
}
