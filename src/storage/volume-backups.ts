// Custom volume backups as LXD makes them (`lxc storage volume export` / `import`): a tarball
// with backup/index.yaml, backup/volume/ and backup/volume-snapshots/<name>/, kept under
// $LXD_DIR/backups/custom/<pool>/<project>_<volume>/<backup>. Records live in
// custom_volume_backups; a row is 'creating' until its file is complete, and an import is
// marked on disk until its volume is whole, so a crash leaves nothing half-made after recover().
import { receiveToTempFile } from "../os/upload-file.js";
import { randomUUID } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, type ReadStream } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { parseYaml, stringifyYaml } from "../shared/yaml.js";
import { BadRequest, InternalError, NotFound } from "../shared/errors.js";
import type { Logger } from "pino";
import type { Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import type { VolumeRow } from "../db/storage-repo.js";
import { extractTarball, scanTarball } from "../images/archive.js";
import { compressCommand } from "../images/compression.js";
import { codecFor } from "../images/publish.js";
import { TarRefused } from "../images/tar-gate.js";
import { goTime, nextSnapshotName, parseExpiry, ZERO_TIME } from "../instances/snapshots.js";
import { run } from "../os/exec.js";
import { isBlockVolume, snapshotVolume } from "./drivers/types.js";
import type { PoolService } from "./pool-service.js";
import { storageName, validateVolumeName } from "./volume-names.js";
import { withRevert } from "./reverter.js";
import { checkOptimizedHeader, optimizedSink, optimizedStreams, VOLUME_LAYOUT } from "./optimized-backup.js";
import { validateVolumeSnapshotName, type VolumeSnapshotService } from "./volume-snapshots.js";
import { apiUrl } from "../shared/urls.js";
import { outsideWriteLock } from "../shared/write-lock.js";

export interface VolumeBackupRow {
  id: number;
  volumeId: number;
  name: string;
  createdAt: string;
  expiresAt: string;
  volumeOnly: boolean;
  optimizedStorage: boolean;
  state: string;
}

interface RawRow {
  id: number;
  volume_id: number;
  name: string;
  created_at: string;
  expires_at: string;
  volume_only: number;
  optimized_storage: number;
  state: string;
}

const toRow = (r: RawRow): VolumeBackupRow => ({
  id: r.id,
  volumeId: r.volume_id,
  name: r.name,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  volumeOnly: r.volume_only === 1,
  optimizedStorage: r.optimized_storage === 1,
  state: r.state,
});

export interface VolumeBackupRequest {
  name: string;
  expiresAt?: string | null;
  volumeOnly: boolean;
  optimizedStorage: boolean;
  compression: string;
}

/** Marker in an import's temp directory while its volume is being made (see recover). */
const IMPORT_MARKER = "volume.json";

export const volumeBackupUrl = (pool: string, project: string, vol: string, backup: string) => apiUrl(project, "storage-pools", pool, "volumes", "custom", vol, "backups", backup);

export function validateVolumeBackupName(name: string): void {
  if (name.includes("/")) throw new BadRequest("Backup names may not contain slashes");
  if (name === "." || name === "..") throw new BadRequest(`Invalid backup name: "${name}" is reserved`);
  if (/[\s\0]/.test(name) || name.length > 255) throw new BadRequest("Invalid backup name");
}

interface IndexVolume {
  config?: Record<string, unknown>;
  description?: string;
  content_type?: string;
}
interface IndexSnapshot {
  name?: string;
  description?: string;
  expires_at?: string;
  config?: Record<string, unknown>;
}
export interface ImportPlan {
  name: string;
  pool: string;
  volume: IndexVolume;
  snapshots: IndexSnapshot[];
  /** An optimized (driver stream) backup, the driver that made it, and whether it has the subvolume header. */
  optimized?: { backend: string; header: boolean };
}

const strings = (m: unknown) => Object.fromEntries(Object.entries((m ?? {}) as Record<string, unknown>).map(([k, v]) => [k, String(v)]));

export class VolumeBackupService {
  constructor(
    private readonly deps: { db: Db; log: Logger; events: EventHub; lxdDir: string },
    private readonly pools: PoolService,
    private readonly snapshots: VolumeSnapshotService,
  ) {}

  private get db() {
    return this.deps.db;
  }

  private volume(pool: string, project: string, type: string, vol: string): VolumeRow {
    if (type !== "custom") throw new BadRequest(`Invalid storage volume type "${type}"`);
    return this.pools.getVolume(pool, project, "custom", vol);
  }

  dirOf(v: VolumeRow): string {
    return join(this.deps.lxdDir, "backups", "custom", v.pool, storageName(v.project, "custom", v.name));
  }

  list(pool: string, project: string, type: string, vol: string): VolumeBackupRow[] {
    const v = this.volume(pool, project, type, vol);
    return (this.db.prepare("SELECT * FROM custom_volume_backups WHERE volume_id = ? AND state = 'created' ORDER BY id").all(v.id) as RawRow[]).map(toRow);
  }

  require(pool: string, project: string, type: string, vol: string, backup: string): { v: VolumeRow; b: VolumeBackupRow } {
    const v = this.volume(pool, project, type, vol);
    const r = this.db.prepare("SELECT * FROM custom_volume_backups WHERE volume_id = ? AND name = ?").get(v.id, backup) as RawRow | undefined;
    if (!r || r.state !== "created") throw new NotFound("Storage volume backup not found");
    return { v, b: toRow(r) };
  }

  view(b: VolumeBackupRow): Record<string, unknown> {
    return { name: b.name, created_at: b.createdAt, expires_at: b.expiresAt, volume_only: b.volumeOnly, optimized_storage: b.optimizedStorage };
  }

  /** Check a create request and pick the name ("backup0", "backup1", ... when none is given). */
  checkCreate(pool: string, project: string, type: string, vol: string, req: VolumeBackupRequest): string {
    const v = this.volume(pool, project, type, vol);
    codecFor(req.compression);
    const existing = (this.db.prepare("SELECT name FROM custom_volume_backups WHERE volume_id = ?").all(v.id) as { name: string }[]).map((r) => r.name);
    const name = req.name || nextSnapshotName("backup%d", existing);
    validateVolumeBackupName(name);
    if (req.expiresAt) parseExpiry(req.expiresAt);
    return name;
  }

  /**
   * The body of the "Creating custom volume backup" operation. optimized_storage gives btrfs
   * send streams on a btrfs pool; elsewhere it is taken and a regular backup made (recorded as
   * not optimized), as LXD does on drivers without an optimized format.
   */
  async create(pool: string, project: string, vol: string, backup: string, req: VolumeBackupRequest, signal?: AbortSignal): Promise<void> {
    const v = this.pools.getVolume(pool, project, "custom", vol);
    const codec = compressCommand(codecFor(req.compression));
    if (this.db.prepare("SELECT 1 FROM custom_volume_backups WHERE volume_id = ? AND name = ?").get(v.id, backup)) throw new Error(`Create volume backup: Backup "${vol}/${backup}" already exists`);
    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const optimized = req.optimizedStorage && this.pools.streamType(v.pool) === "btrfs";
    const info = this.db
      .prepare("INSERT INTO custom_volume_backups (volume_id, name, created_at, expires_at, volume_only, optimized_storage) VALUES (?, ?, ?, ?, ?, ?)")
      .run(v.id, backup, goTime(now), req.expiresAt ? parseExpiry(req.expiresAt) : ZERO_TIME, req.volumeOnly ? 1 : 0, optimized ? 1 : 0);
    const dir = this.dirOf(v);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stage = join(dir, `.stage-${randomUUID()}`);
    const partial = join(dir, `.partial-${randomUUID()}`);
    try {
      await this.writeTarball(v, req.volumeOnly, optimized, stage, partial, codec, signal);
      renameSync(partial, join(dir, backup));
      this.db.prepare("UPDATE custom_volume_backups SET state = 'created' WHERE id = ?").run(info.lastInsertRowid);
    } catch (e) {
      rmSync(partial, { force: true });
      this.db.prepare("DELETE FROM custom_volume_backups WHERE id = ?").run(info.lastInsertRowid);
      throw new Error(`Create volume backup: ${(e as Error).message}`);
    } finally {
      rmSync(stage, { recursive: true, force: true });
    }
    this.deps.events.lifecycle("storage-volume-backup-created", volumeBackupUrl(pool, project, vol, backup), { project });
  }

  private async writeTarball(v: VolumeRow, volumeOnly: boolean, optimized: boolean, stage: string, out: string, codec: [string, string[]] | undefined, signal?: AbortSignal): Promise<void> {
    const poolRow = this.pools.pool(v.pool);
    const driver = this.pools.driverFor(poolRow);
    await driver.mountPool();
    const snaps = volumeOnly ? [] : this.snapshots.list(v.pool, v.project, v.name);
    // backup/volume-snapshots/ only when there are some (a --volume-only tarball has none, as LXD's).
    mkdirSync(join(stage, "backup", snaps.length && !optimized ? "volume-snapshots" : ""), { recursive: true, mode: 0o700 });
    const index = {
      name: v.name,
      backend: poolRow.driver,
      pool: v.pool,
      snapshots: snaps.map((s) => s.name.slice(v.name.length + 1)),
      optimized,
      optimized_header: optimized,
      type: "custom",
      config: {
        volume: { ...this.pools.volumes.volumeView(v), used_by: [], created_at: ZERO_TIME },
        volume_snapshots: snaps.map((s) => this.snapshots.view(s)),
      },
    };
    writeFileSync(join(stage, "backup", "index.yaml"), stringifyYaml(index), { mode: 0o644 });
    if (optimized) await this.pools.sendStreams(v, index.snapshots, optimizedSink(join(stage, "backup"), VOLUME_LAYOUT), { signal });
    else await this.exportTrees(v, snaps, stage, signal);
    // A block volume's disk is a plain member, as LXD writes it (the import gate refuses GNU sparse members).
    const args = ["-c", "-f", out, "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", stage];
    // The compressor and its flags come from compression.ts's fixed tables (validated names and flags only).
    if (codec) args.push("-I", `${codec[0]} ${codec[1].filter((a: string) => a !== "-c").join(" ")}`);
    args.push("--", "backup");
    // The tarball is the long part and writes no rows: other cluster members need not wait for it.
    const res = await outsideWriteLock(() => run("tar", ["--warning=no-file-changed", "--warning=no-file-removed", ...args], { signal, reject: false }));
    if (res.exitCode !== 0 && res.exitCode !== 1) throw new Error(`Failed to create backup tarball: ${res.stderr.trim() || `tar exited with ${res.exitCode}`}`);
  }

  /**
   * Hard links where the pool shares the filesystem, copies otherwise: tar then writes LXD's
   * layout. A block volume's disks are files, as LXD's: backup/volume.img and
   * backup/volume-snapshots/<snapshot>.img.
   */
  private async exportTrees(v: VolumeRow, snaps: VolumeRow[], stage: string, signal?: AbortSignal): Promise<void> {
    const driver = this.pools.driverFor(this.pools.pool(v.pool));
    const hostVol = this.pools.hostVolume(v);
    const ext = isBlockVolume(hostVol) ? ".img" : "";
    await driver.exportVolume(hostVol, join(stage, "backup", `volume${ext}`), { link: true, signal });
    await driver.unmountVolume(hostVol).catch(() => {});
    for (const s of snaps) {
      const snapVol = snapshotVolume(hostVol, s.name.slice(v.name.length + 1));
      await driver.exportVolume(snapVol, join(stage, "backup", "volume-snapshots", `${s.name.slice(v.name.length + 1)}${ext}`), { link: true, signal });
      await driver.unmountVolume(snapVol).catch(() => {});
    }
  }

  async delete(pool: string, project: string, type: string, vol: string, backup: string): Promise<void> {
    const { v, b } = this.require(pool, project, type, vol, backup);
    rmSync(join(this.dirOf(v), backup), { force: true });
    // The volume's backup directory goes with its last backup, as upstream.
    if (listDir(this.dirOf(v)).length === 0) rmSync(this.dirOf(v), { recursive: true, force: true });
    this.db.prepare("DELETE FROM custom_volume_backups WHERE id = ?").run(b.id);
    this.deps.events.lifecycle("storage-volume-backup-deleted", volumeBackupUrl(pool, project, vol, backup), { project });
  }

  checkRename(pool: string, project: string, type: string, vol: string, backup: string, to: string): void {
    this.require(pool, project, type, vol, backup);
    if (!to) throw new BadRequest("Invalid backup name: Cannot be empty");
    validateVolumeBackupName(to);
  }

  async rename(pool: string, project: string, type: string, vol: string, backup: string, to: string): Promise<void> {
    const { v, b } = this.require(pool, project, type, vol, backup);
    if (this.db.prepare("SELECT 1 FROM custom_volume_backups WHERE volume_id = ? AND name = ?").get(v.id, to)) throw new Error("UNIQUE constraint failed: storage_volumes_backups.storage_volume_id, storage_volumes_backups.name");
    renameSync(join(this.dirOf(v), backup), join(this.dirOf(v), to));
    try {
      this.db.prepare("UPDATE custom_volume_backups SET name = ? WHERE id = ?").run(to, b.id);
    } catch (e) {
      renameSync(join(this.dirOf(v), to), join(this.dirOf(v), backup));
      throw e;
    }
    this.deps.events.lifecycle("storage-volume-backup-renamed", volumeBackupUrl(pool, project, vol, to), { project, context: { old_name: backup } });
  }

  exportFile(pool: string, project: string, type: string, vol: string, backup: string): { size: number; mtime: Date; stream: () => ReadStream; retrieved: () => void } {
    const { v } = this.require(pool, project, type, vol, backup);
    const path = join(this.dirOf(v), backup);
    const { size, mtime } = statSync(path);
    return { size, mtime, stream: () => createReadStream(path), retrieved: () => this.deps.events.lifecycle("storage-volume-backup-retrieved", volumeBackupUrl(pool, project, vol, backup), { project }) };
  }

  /** The volume was renamed (its backups follow) or deleted (its backup files go; rows cascade). */
  volumeRenamed(v: VolumeRow, to: string): void {
    const src = this.dirOf(v);
    if (existsSync(src)) renameSync(src, this.dirOf({ ...v, name: to }));
  }

  volumeDeleted(v: VolumeRow): void {
    rmSync(this.dirOf(v), { recursive: true, force: true });
  }

  /** Delete backups whose expires_at has passed (called by the scheduler every minute). */
  async pruneExpired(): Promise<void> {
    const now = Date.now();
    const rows = (this.db.prepare("SELECT * FROM custom_volume_backups WHERE state = 'created' AND expires_at <> ?").all(ZERO_TIME) as RawRow[]).map(toRow);
    for (const b of rows) {
      if (new Date(b.expiresAt).getTime() > now) continue;
      const v = this.pools.repo.volumes({ type: "custom" }).find((x) => x.id === b.volumeId);
      if (!v || !this.snapshots.prunesHere(v)) continue;
      await this.delete(v.pool, v.project, "custom", v.name, b.name).catch((e) => this.deps.log.warn({ err: e, volume: v.name, backup: b.name }, "cannot delete expired volume backup"));
    }
  }

  /** A standalone daemon's start: drop every row and partial file a crash left (see recoverRows). */
  async recover(): Promise<void> {
    await this.recoverRows(() => true);
    this.recoverFiles();
  }

  /**
   * The rows a crash left: of backups being written and the volumes whose import was cut short,
   * of the volumes `here` says live on this member (another cluster member's may be under way; a
   * shared pool's volumes are nobody's in particular and left). On a member, once it is back,
   * under the write lock.
   */
  async recoverRows(here: (node: string) => boolean): Promise<void> {
    const backupsDir = join(this.deps.lxdDir, "backups");
    for (const f of listDir(backupsDir)) {
      if (!f.startsWith(".volume-import-")) continue;
      const marker = join(backupsDir, f, IMPORT_MARKER);
      if (existsSync(marker)) {
        const { pool, project, name } = JSON.parse(readFileSync(marker, "utf8")) as { pool: string; project: string; name: string };
        this.deps.log.warn({ pool, project, volume: name }, "removing custom volume left half-imported by a crash");
        await this.removeImported(pool, project, name).catch((e) => this.deps.log.warn({ err: e }, "cannot remove half-imported volume"));
      }
      rmSync(join(backupsDir, f), { recursive: true, force: true });
    }
    const unfinished = this.db.prepare("DELETE FROM custom_volume_backups WHERE id = ?");
    for (const b of this.db.prepare("SELECT b.id, v.node FROM custom_volume_backups b JOIN storage_volumes v ON v.id = b.volume_id WHERE b.state <> 'created'").all() as { id: number; node: string }[]) {
      if (here(b.node)) unfinished.run(b.id);
    }
  }

  /** This daemon's partial backup files (its own disk: at start, clustered or not). */
  recoverFiles(): void {
    const root = join(this.deps.lxdDir, "backups", "custom");
    for (const pool of listDir(root)) {
      for (const vol of listDir(join(root, pool))) {
        for (const f of listDir(join(root, pool, vol))) if (f.startsWith(".stage-") || f.startsWith(".partial-")) rmSync(join(root, pool, vol, f), { recursive: true, force: true });
      }
    }
  }

  private async removeImported(pool: string, project: string, name: string): Promise<void> {
    const driver = this.pools.driverFor(this.pools.pool(pool));
    await driver.mountPool();
    const rows = this.pools.repo.volumes({ pool, project, type: "custom" }).filter((v) => v.name === name || v.name.startsWith(`${name}/`));
    for (const r of rows.sort((a, b) => b.id - a.id)) await this.pools.removeVolume(driver, r);
  }

  // ---- import (POST .../volumes/custom with a backup tarball as body) ----

  /** Stream the upload to a private temp file; the caller removes it with `discard`. */
  receive(body: Readable): Promise<{ file: string; discard: () => void }> {
    return receiveToTempFile(join(this.deps.lxdDir, "backups"), ".volume-import-", body);
  }

  /** Validate every member of the tarball and read its index; what will be created. */
  async inspect(pool: string, project: string, file: string, name?: string): Promise<ImportPlan> {
    let gate;
    try {
      gate = await scanTarball(file, { volumeBackup: true, capture: "backup/index.yaml" });
    } catch (e) {
      if (e instanceof TarRefused) throw new BadRequest(e.message.replace("Refusing unsafe image tarball", "Refusing unsafe backup tarball"));
      throw new BadRequest((e as Error).message);
    }
    if (!gate.captured) throw new BadRequest("Backup is missing index.yaml");
    let doc: { name?: unknown; type?: unknown; snapshots?: unknown; optimized?: unknown; optimized_header?: unknown; backend?: unknown; config?: { volume?: IndexVolume; volume_snapshots?: IndexSnapshot[] } } | null;
    try {
      doc = parseYaml(gate.captured.toString("utf8")) as typeof doc;
    } catch (e) {
      throw new BadRequest(`Error reading backup file info: ${(e as Error).message}`);
    }
    if (!doc || typeof doc !== "object") throw new BadRequest("Backup is missing index.yaml");
    if (doc.type !== undefined && doc.type !== "custom") throw new BadRequest(`Backup of type "${String(doc.type)}" isn't a custom volume backup`);
    const volume = doc.config?.volume;
    if (!volume || typeof volume !== "object") throw new InternalError("Valid volume config not found in index");
    const volName = name || String(doc.name ?? "");
    validateVolumeName(volName);
    const wanted = Array.isArray(doc.snapshots) ? doc.snapshots.map(String) : [];
    const snapshots: IndexSnapshot[] = [];
    for (const s of wanted) {
      validateVolumeSnapshotName(s);
      const cfg = (doc.config?.volume_snapshots ?? []).find((x) => x && String(x.name) === s);
      if (!cfg) throw new InternalError("Valid volume snapshot config not found in index");
      snapshots.push(cfg);
    }
    this.pools.pool(pool);
    const optimized = doc.optimized === true ? { backend: String(doc.backend ?? ""), header: doc.optimized_header === true } : undefined;
    return { name: volName, pool, volume, snapshots, optimized };
  }

  /** The body of the "Restoring custom volume backup" operation: the volume, then its snapshots oldest first. */
  async restore(project: string, file: string, plan: ImportPlan, signal?: AbortSignal): Promise<void> {
    const { pool, name } = plan;
    if (this.pools.repo.volume(pool, project, "custom", name)) throw new Error("Create custom volume from backup: Volume by that name already exists");
    const poolRow = this.pools.pool(pool);
    if (plan.optimized && plan.optimized.backend !== poolRow.driver) throw new Error(`Optimized backup storage driver "${plan.optimized.backend}" differs from the target storage pool driver "${poolRow.driver}"`);
    if (plan.optimized) await checkOptimizedHeader(file, plan.snapshots.map((s) => String(s.name)), plan.optimized.header, { volumeBackup: true });
    const def = this.pools.definition(poolRow.driver);
    const config = strings(plan.volume.config);
    for (const k of Object.keys(config)) if (!k.startsWith("user.") && !k.startsWith("volatile.") && !def.info.volumeKeys[k]) delete config[k];
    const driver = this.pools.driverFor(poolRow);
    await driver.mountPool();
    const marker = join(dirname(file), IMPORT_MARKER);
    const contentType = plan.volume.content_type === "block" ? "block" : "filesystem";
    if (contentType === "block" && !driver.diskPath) throw new Error(`Content type "block" isn't supported here`);
    await withRevert(async (revert) => {
      this.pools.repo.insertVolume({ pool, project, type: "custom", name, description: String(plan.volume.description ?? ""), config, contentType });
      // Only a volume this import made is removed on failure, or by recover() after a crash.
      revert.add(() => this.removeImported(pool, project, name));
      writeFileSync(marker, JSON.stringify({ pool, project, name }), { mode: 0o600 });
      const row = this.pools.repo.volume(pool, project, "custom", name)!;
      const hostVol = this.pools.hostVolume(row);
      await driver.createVolume(hostVol, undefined, { signal });
      if (plan.optimized) {
        await this.receiveOptimized(file, row, plan, signal);
        this.pools.repo.setVolumeState(row.id, "created");
        return;
      }
      if (contentType === "block") {
        await this.restoreDisks(file, row, plan, signal);
        this.pools.repo.setVolumeState(row.id, "created");
        return;
      }
      const path = await driver.mountVolume(hostVol);
      // Each snapshot's content goes into the volume, is snapshotted, and the next replaces it.
      for (const s of plan.snapshots) {
        const snap = String(s.name);
        await emptyDir(path);
        await extractTarball(file, path, { volumeBackup: true }, { signal, select: { member: `backup/volume-snapshots/${snap}`, strip: 3 } });
        this.pools.repo.insertVolume({ pool, project, type: "custom", name: `${name}/${snap}`, description: String(s.description ?? ""), config: strings(s.config), expiresAt: s.expires_at ? parseExpiry(String(s.expires_at)) : ZERO_TIME });
        const snapRow = this.pools.repo.volume(pool, project, "custom", `${name}/${snap}`)!;
        if (!driver.createSnapshot) throw new Error(`Storage driver "${driver.info.name}" does not support snapshots here`);
        await driver.createSnapshot(hostVol, snap, { signal });
        this.pools.repo.setVolumeState(snapRow.id, "created");
      }
      await emptyDir(path);
      await extractTarball(file, path, { volumeBackup: true }, { signal, select: { member: "backup/volume", strip: 2 } });
      this.pools.repo.setVolumeState(row.id, "created");
    });
    rmSync(marker, { force: true });
    this.deps.events.lifecycle("storage-volume-created", apiUrl(project, "storage-pools", pool, "volumes", "custom", name), { project });
  }

  /**
   * A block volume's backup: each snapshot's disk file (backup/volume-snapshots/<name>.img)
   * written onto the volume's disk and snapshotted, oldest first, then backup/volume.img.
   */
  private async restoreDisks(file: string, row: VolumeRow, plan: ImportPlan, signal?: AbortSignal): Promise<void> {
    const { pool, name } = plan;
    const project = row.project;
    const driver = this.pools.driverFor(this.pools.pool(pool));
    const hostVol = this.pools.hostVolume(row);
    const tmp = mkdtempSync(join(dirname(file), ".disk-"));
    const place = async (member: string) => {
      await emptyDir(tmp);
      await extractTarball(file, tmp, { volumeBackup: true }, { signal, select: { member, strip: member.split("/").length - 1 } });
      const disk = join(tmp, basename(member));
      if (!existsSync(disk)) throw new Error(`Backup is missing "${member}"`);
      await driver.syncVolume(hostVol, disk, { signal });
      await driver.unmountVolume(hostVol).catch(() => {});
    };
    try {
      for (const s of plan.snapshots) {
        const snap = String(s.name);
        await place(`backup/volume-snapshots/${snap}.img`);
        this.pools.repo.insertVolume({ pool, project, type: "custom", name: `${name}/${snap}`, description: String(s.description ?? ""), config: strings(s.config), contentType: "block", expiresAt: s.expires_at ? parseExpiry(String(s.expires_at)) : ZERO_TIME });
        const snapRow = this.pools.repo.volume(pool, project, "custom", `${name}/${snap}`)!;
        if (!driver.createSnapshot) throw new Error(`Storage driver "${driver.info.name}" does not support snapshots here`);
        await driver.createSnapshot(hostVol, snap, { signal });
        this.pools.repo.setVolumeState(snapRow.id, "created");
      }
      await place("backup/volume.img");
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  /** An optimized backup's streams received (staged, checked) and placed: snapshots oldest first, then the volume. */
  private async receiveOptimized(file: string, row: VolumeRow, plan: ImportPlan, signal?: AbortSignal): Promise<void> {
    const { pool, name } = plan;
    const project = row.project;
    const names = plan.snapshots.map((s) => String(s.name));
    const tars = optimizedStreams(file, VOLUME_LAYOUT, signal);
    const staged = await this.pools.receiveStreams(row, names, tars.next, { signal });
    try {
      await tars.done();
      for (const s of plan.snapshots) {
        const snap = String(s.name);
        this.pools.repo.insertVolume({ pool, project, type: "custom", name: `${name}/${snap}`, description: String(s.description ?? ""), config: strings(s.config), expiresAt: s.expires_at ? parseExpiry(String(s.expires_at)) : ZERO_TIME });
        const snapRow = this.pools.repo.volume(pool, project, "custom", `${name}/${snap}`)!;
        await staged.placeSnapshot(snap);
        this.pools.repo.setVolumeState(snapRow.id, "created");
      }
      await staged.placeVolume();
    } finally {
      await staged.discard();
    }
  }
}

async function emptyDir(dir: string): Promise<void> {
  for (const f of readdirSync(dir)) rmSync(join(dir, f), { recursive: true, force: true });
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
