// Instance backups as LXD makes them (`lxc export` / `lxc import`): a tarball with
// backup/index.yaml, backup/container/ (the volume) and backup/snapshots/<name>/, kept under
// $LXD_DIR/backups/instances/<instance>/<backup>. Records live in instance_backups; a row is
// 'creating' until its file is complete, so a crash leaves nothing half-made after recover().
import { groupBy } from "../shared/group.js";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, createReadStream, type ReadStream } from "node:fs";
import { join } from "node:path";
import { stringifyYaml } from "../shared/yaml.js";
import { BadRequest, NotFound } from "../shared/errors.js";
import type { InstanceRow } from "../db/instance-repo.js";
import { compressCommand } from "../images/compression.js";
import { codecFor } from "../images/publish.js";
import { run } from "../os/exec.js";
import { INSTANCE_LAYOUT, optimizedSink } from "../storage/optimized-backup.js";
import { type InstanceOwner } from "./model.js";
import { rootDisk } from "./rows.js";
import { goTime, nextSnapshotName, parseExpiry, ZERO_TIME, type SnapshotService } from "./snapshots.js";
import { apiUrl } from "../shared/urls.js";
import { BackupImport, IMPORT_MARKER, type BackupDeps } from "./backup-import.js";
import { outsideWriteLock } from "../shared/write-lock.js";

export interface BackupRow {
  id: number;
  instanceId: number;
  name: string;
  createdAt: string;
  expiresAt: string;
  instanceOnly: boolean;
  optimizedStorage: boolean;
  state: string;
}

export interface BackupView {
  name: string;
  created_at: string;
  expires_at: string;
  instance_only: boolean;
  container_only: boolean;
  optimized_storage: boolean;
}

export interface BackupRequest {
  name: string;
  expiresAt?: string | null;
  instanceOnly: boolean;
  optimizedStorage: boolean;
  compression: string;
}

interface RawBackup {
  id: number;
  instance_id: number;
  name: string;
  created_at: string;
  expires_at: string;
  instance_only: number;
  optimized_storage: number;
  state: string;
}

const toRow = (r: RawBackup): BackupRow => ({
  id: r.id,
  instanceId: r.instance_id,
  name: r.name,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  instanceOnly: r.instance_only === 1,
  optimizedStorage: r.optimized_storage === 1,
  state: r.state,
});

/** In an import's temp directory while the instance is being made (see recover). */

export const backupUrl = (project: string, name: string, backup: string) => apiUrl(project, "instances", name, "backups", backup);

/** LXD's backup name rules. */
export function validateBackupName(name: string): void {
  if (name.includes("/")) throw new BadRequest("Backup names may not contain slashes");
  if (name === "." || name === "..") throw new BadRequest(`Invalid backup name: "${name}" is reserved`);
  if (/[\s\0]/.test(name) || name.length > 255) throw new BadRequest("Invalid backup name");
}

export class BackupService {
  private expiryTimer?: NodeJS.Timeout;

  constructor(
    private readonly deps: BackupDeps,
    private readonly svc: InstanceOwner,
    private readonly snapshots: SnapshotService,
  ) {}

  private get db() {
    return this.deps.db;
  }

  /** Directory holding an instance's backup files. */
  dirOf(project: string, name: string): string {
    return join(this.deps.lxdDir, "backups", "instances", project === "default" ? name : `${project}_${name}`);
  }

  fileOf(row: InstanceRow, backup: string): string {
    return join(this.dirOf(row.project, row.name), backup);
  }

  list(row: InstanceRow): BackupRow[] {
    return (this.db.prepare("SELECT * FROM instance_backups WHERE instance_id = ? AND state = 'created' ORDER BY id").all(row.id) as RawBackup[]).map(toRow);
  }

  /** Every instance's backups by instance id, read at once (lists of instances). */
  byInstance(): Map<number, BackupRow[]> {
    const rows = (this.db.prepare("SELECT * FROM instance_backups WHERE state = 'created' ORDER BY id").all() as RawBackup[]).map(toRow);
    return groupBy(rows, (r) => r.instanceId);
  }

  require(row: InstanceRow, backup: string): BackupRow {
    const r = this.db.prepare("SELECT * FROM instance_backups WHERE instance_id = ? AND name = ?").get(row.id, backup) as RawBackup | undefined;
    if (!r || r.state !== "created") throw new NotFound("Load backup from database: Instance backup not found");
    return toRow(r);
  }

  view(b: BackupRow): BackupView {
    return { name: b.name, created_at: b.createdAt, expires_at: b.expiresAt, instance_only: b.instanceOnly, container_only: b.instanceOnly, optimized_storage: b.optimizedStorage };
  }

  /** Check a create request and pick the name ("backup0", "backup1", ... when none is given). */
  checkCreate(row: InstanceRow, req: BackupRequest): string {
    this.deps.ports.projects.allowBackupCreation(row.project);
    codecFor(req.compression);
    const existing = (this.db.prepare("SELECT name FROM instance_backups WHERE instance_id = ?").all(row.id) as { name: string }[]).map((r) => r.name);
    const name = req.name || nextSnapshotName("backup%d", existing);
    validateBackupName(name);
    if (req.expiresAt) parseExpiry(req.expiresAt);
    return name;
  }

  /** The body of the "Backing up instance" operation. */
  async create(project: string, name: string, backup: string, req: BackupRequest, signal?: AbortSignal): Promise<void> {
    await this.svc.runtime.serialize(project, name, () => this.write(project, name, backup, req, signal));
    this.deps.events.lifecycle("instance-backup-created", backupUrl(project, name, backup), { project });
  }

  private async write(project: string, name: string, backup: string, req: BackupRequest, signal?: AbortSignal): Promise<void> {
    const row = this.svc.require(project, name);
    const command = compressCommand(codecFor(req.compression));
    const now = new Date();
    // optimized_storage gives btrfs send streams on a btrfs pool; elsewhere, as LXD, a regular
    // backup is made (recorded as not optimized). A taken name fails the operation, as upstream.
    if (this.db.prepare("SELECT 1 FROM instance_backups WHERE instance_id = ? AND name = ?").get(row.id, backup)) throw new Error(`Create backup: Backup "${name}/${backup}" already exists`);
    const pool = rootDisk(this.svc.expanded(row).devices).pool;
    const optimized = req.optimizedStorage && this.deps.ports.storage.instanceStreamType?.(pool) === "btrfs";
    const info = this.db
      .prepare("INSERT INTO instance_backups (instance_id, name, created_at, expires_at, instance_only, optimized_storage) VALUES (?, ?, ?, ?, ?, ?)")
      .run(row.id, backup, goTime(new Date(Math.floor(now.getTime() / 1000) * 1000)), req.expiresAt ? parseExpiry(req.expiresAt) : ZERO_TIME, req.instanceOnly ? 1 : 0, optimized ? 1 : 0);
    const dir = this.dirOf(project, name);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stage = join(dir, `.stage-${randomUUID()}`);
    const partial = join(dir, `.partial-${randomUUID()}`);
    try {
      await this.writeTarball(row, req.instanceOnly, optimized, stage, partial, command ? [command[0], ...command[1].filter((a) => a !== "-c")].join(" ") : undefined, signal);
      renameSync(partial, join(dir, backup));
      this.db.prepare("UPDATE instance_backups SET state = 'created' WHERE id = ?").run(info.lastInsertRowid);
    } catch (e) {
      rmSync(partial, { force: true });
      this.db.prepare("DELETE FROM instance_backups WHERE id = ?").run(info.lastInsertRowid);
      throw e;
    } finally {
      rmSync(stage, { recursive: true, force: true });
    }
  }

  /**
   * Stage backup/ as hard links of the volumes (same filesystem) or reflink/copies (other
   * pools), so tar writes LXD's layout without moving anything in the volumes themselves.
   */
  private async writeTarball(row: InstanceRow, instanceOnly: boolean, optimized: boolean, stage: string, out: string, compressor: string | undefined, signal?: AbortSignal): Promise<void> {
    const ex = this.svc.expanded(row);
    const pool = rootDisk(ex.devices).pool;
    const storage = this.deps.ports.storage;
    const snaps = instanceOnly ? [] : this.snapshots.list(row);
    // backup/snapshots/ only when there are some (an --instance-only tarball has none, as LXD's).
    mkdirSync(join(stage, "backup", snaps.length && !optimized ? "snapshots" : ""), { recursive: true, mode: 0o700 });
    const index = {
      name: row.name,
      backend: this.poolView(pool).driver,
      pool,
      snapshots: snaps.map((s) => s.name),
      optimized,
      optimized_header: optimized,
      type: "container",
      config: this.backupConfig(row, snaps),
    };
    writeFileSync(join(stage, "backup", "index.yaml"), stringifyYaml(index), { mode: 0o644 });
    if (optimized) {
      // btrfs send streams (the volume from a read-only snapshot of it: no freeze needed).
      await storage.sendInstanceStreams!(row.project, pool, row.name, index.snapshots, optimizedSink(join(stage, "backup"), INSTANCE_LAYOUT), { signal });
    } else {
      // Hard links where the pool shares the filesystem, else the driver's cheapest copy: tar then writes LXD's layout.
      const exportVolume = storage.exportInstanceVolume;
      if (!exportVolume) throw new Error("Storage cannot export volumes");
      const link = (snapshot: string | undefined, to: string) => exportVolume.call(storage, row.project, pool, row.name, snapshot, to, { link: true, signal });
      await this.svc.runtime.frozenDuring(row, () => link(undefined, join(stage, "backup", "container")));
      for (const s of snaps) await link(s.name, join(stage, "backup", "snapshots", s.name));
    }
    const args = ["-c", "-f", out, "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", stage];
    if (compressor) args.push("-I", compressor);
    args.push("--", "backup");
    // A running instance's files may change while tar reads them (exit 1, as with LXD's own
    // backups of running instances); exit 2 and up is a real failure.
    // The tarball is the long part and writes no rows: other cluster members need not wait for it.
    const res = await outsideWriteLock(() => run("tar", ["--warning=no-file-changed", "--warning=no-file-removed", ...args], { signal, reject: false }));
    if (res.exitCode !== 0 && res.exitCode !== 1) throw new Error(`Failed to create backup tarball: ${res.stderr.trim() || `tar exited with ${res.exitCode}`}`);
  }

  /**
   * backup.yaml's content (LXD's backupConfig.Config): the instance, its snapshots, pool,
   * profiles and volumes. In backup tarballs' index.yaml, and in the instance volume itself
   * (BackupFile), where `lxd recover` finds it.
   */
  backupConfig(row: InstanceRow, snaps = this.snapshots.list(row)): Record<string, unknown> {
    const pool = rootDisk(this.svc.expanded(row).devices).pool;
    const storage = this.deps.ports.storage;
    const vol = (snap?: string) => storage?.instanceVolumeConfig?.(row.project, pool, row.name, snap) ?? { description: "", config: {} };
    return {
      container: this.svc.view(row),
      snapshots: snaps.map((s) => this.snapshots.view(row, s)),
      pool: this.poolView(pool),
      profiles: row.profiles.map((p) => this.deps.ports.profiles.get(row.project, p)).filter(Boolean),
      volume: { config: vol().config, description: vol().description, name: row.name, type: "container", used_by: [], location: "none", content_type: "filesystem", project: row.project, created_at: ZERO_TIME },
      volume_snapshots: snaps.map((s) => ({ description: vol(s.name).description, expires_at: s.expiresAt, name: s.name, config: vol(s.name).config, content_type: "filesystem", created_at: ZERO_TIME })),
    };
  }

  private poolView(pool: string): { name: string; driver: string } {
    return { ...this.deps.ports.storage.getPool(pool), used_by: [] } as { name: string; driver: string };
  }

  async delete(project: string, name: string, backup: string): Promise<void> {
    await this.svc.runtime.serialize(project, name, async () => {
      const row = this.svc.require(project, name);
      const b = this.require(row, backup);
      rmSync(this.fileOf(row, backup), { force: true });
      this.db.prepare("DELETE FROM instance_backups WHERE id = ?").run(b.id);
    });
    this.deps.events.lifecycle("instance-backup-deleted", backupUrl(project, name, backup), { project });
  }

  checkRename(row: InstanceRow, backup: string, to: string): void {
    this.require(row, backup);
    if (!to) throw new BadRequest("Invalid backup name: Cannot be empty");
    validateBackupName(to);
  }

  async rename(project: string, name: string, backup: string, to: string): Promise<void> {
    await this.svc.runtime.serialize(project, name, async () => {
      const row = this.svc.require(project, name);
      this.checkRename(row, backup, to);
      const b = this.require(row, backup);
      // Upstream reports its database constraint as it is.
      if (this.db.prepare("SELECT 1 FROM instance_backups WHERE instance_id = ? AND name = ?").get(row.id, to)) throw new Error("UNIQUE constraint failed: instances_backups.instance_id, instances_backups.name");
      renameSync(this.fileOf(row, backup), this.fileOf(row, to));
      try {
        this.db.prepare("UPDATE instance_backups SET name = ? WHERE id = ?").run(to, b.id);
      } catch (e) {
        renameSync(this.fileOf(row, to), this.fileOf(row, backup));
        throw e;
      }
    });
    this.deps.events.lifecycle("instance-backup-renamed", backupUrl(project, name, to), { project, context: { old_name: backup } });
  }

  /** The file to stream for GET .../export, and the event that says it was fetched. */
  exportFile(project: string, name: string, backup: string): { size: number; mtime: Date; stream: () => ReadStream; retrieved: () => void } {
    const row = this.svc.require(project, name);
    this.require(row, backup);
    const path = this.fileOf(row, backup);
    const { size, mtime } = statSync(path);
    return { size, mtime, stream: () => createReadStream(path), retrieved: () => this.deps.events.lifecycle("instance-backup-retrieved", backupUrl(project, name, backup), { project }) };
  }

  /** The instance was renamed: its backups follow (called by the instance service). */
  instanceRenamed(project: string, from: string, to: string): void {
    const src = this.dirOf(project, from);
    if (existsSync(src)) renameSync(src, this.dirOf(project, to));
  }

  /** The instance is gone (rows cascade): remove its backup files. */
  instanceDeleted(project: string, name: string): void {
    rmSync(this.dirOf(project, name), { recursive: true, force: true });
  }

  /** Delete backups whose expires_at has passed (checked every minute, as upstream's task). */
  startExpiry(): void {
    const tick = async () => {
      const now = Date.now();
      for (const row of this.svc.repo.list()) {
        // In a cluster each member expires the backups of its own instances (their files live there).
        if (!this.deps.cluster.owns(row.node)) continue;
        for (const b of this.list(row)) {
          if (b.expiresAt === ZERO_TIME || new Date(b.expiresAt).getTime() > now) continue;
          await this.delete(row.project, row.name, b.name).catch((e) => this.deps.log.warn({ err: e, instance: row.name, backup: b.name }, "cannot delete expired backup"));
        }
      }
    };
    this.expiryTimer = setInterval(() => void tick(), 60_000);
    this.expiryTimer.unref();
  }

  stopExpiry(): void {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.expiryTimer = undefined;
  }

  /** A standalone daemon's start: drop every row and partial file a crash left (see recoverRows). */
  async recover(): Promise<void> {
    await this.recoverRows(() => true);
    this.recoverFiles();
  }

  /**
   * The rows a crash left: of backups being written and of imports under way (an instance whose
   * import marker is still there is removed), of the instances `here` says live on this member —
   * another cluster member's may be under way. On a member, once it is back, under the write lock.
   */
  async recoverRows(here: (node: string) => boolean): Promise<void> {
    const backupsDir = join(this.deps.lxdDir, "backups");
    for (const f of listDir(backupsDir)) {
      if (!f.startsWith(".import-")) continue;
      const marker = join(backupsDir, f, IMPORT_MARKER);
      if (existsSync(marker)) {
        const { project, name } = JSON.parse(readFileSync(marker, "utf8")) as { project: string; name: string };
        const row = this.svc.repo.get(project, name);
        this.deps.log.warn({ project, instance: name }, "removing instance left half-imported by a crash");
        if (row) await this.svc.destroy(row).catch((e) => this.deps.log.warn({ err: e }, "cannot remove half-imported instance"));
      }
      rmSync(join(backupsDir, f), { recursive: true, force: true });
    }
    const unfinished = this.db.prepare("DELETE FROM instance_backups WHERE id = ?");
    for (const b of this.db.prepare("SELECT b.id, i.node FROM instance_backups b JOIN instances i ON i.id = b.instance_id WHERE b.state <> 'created'").all() as { id: number; node: string }[]) {
      if (here(b.node)) unfinished.run(b.id);
    }
  }

  /** This daemon's partial backup files (its own disk: at start, clustered or not). */
  recoverFiles(): void {
    const root = join(this.deps.lxdDir, "backups", "instances");
    if (!existsSync(root)) return;
    for (const row of this.svc.repo.list()) {
      const dir = this.dirOf(row.project, row.name);
      if (!existsSync(dir)) continue;
      for (const f of listDir(dir)) if (f.startsWith(".stage-") || f.startsWith(".partial-")) rmSync(join(dir, f), { recursive: true, force: true });
    }
  }

  // ---- import (POST /1.0/instances with a backup tarball as body): backup-import.ts ----

  private get importer(): BackupImport {
    return (this.importer_ ??= new BackupImport(this.deps, this.svc, this.snapshots));
  }
  private importer_?: BackupImport;
  receive: BackupImport["receive"] = (body) => this.importer.receive(body);
  inspect: BackupImport["inspect"] = (project, file, opts) => this.importer.inspect(project, file, opts);
  restore: BackupImport["restore"] = (project, file, plan, signal) => this.importer.restore(project, file, plan, signal);
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
