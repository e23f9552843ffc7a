// Instance snapshots: the rules and the database. Volumes are made by the storage layer
// (StoragePort *InstanceSnapshot); state changes run in the instance's queue (runtime.serialize).
import { rmSync } from "node:fs";
import { BadRequest, Conflict, NotFound } from "../shared/errors.js";
import type { Logger } from "pino";
import type { Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import type { InstanceRow } from "../db/instance-repo.js";
import { SnapshotRepo, type SnapshotRow } from "../db/snapshot-repo.js";
import { parseBool } from "../config/validators.js";
import type { ProjectsPort, ScheduledSubject, StoragePort } from "../ports.js";
import type { InstanceOwner } from "./model.js";
import { instanceUrl, rootDisk, type Devices } from "./rows.js";
import { CriuMissing } from "./drivers/types.js";
import { idmapJson, type IdmapEntry } from "./idmap.js";
import { apiUrl } from "../shared/urls.js";

export const ZERO_TIME = "0001-01-01T00:00:00Z";

export interface SnapshotView {
  expires_at: string;
  architecture: string;
  config: Record<string, string>;
  created_at: string;
  devices: Devices;
  ephemeral: boolean;
  expanded_config: Record<string, string>;
  expanded_devices: Devices;
  last_used_at: string;
  name: string;
  profiles: string[];
  stateful: boolean;
  size: number;
}

/** LXD's snapshot name rules (checked before anything is created). */
export function validateSnapshotName(name: string): void {
  if (name.includes("/")) throw new BadRequest('Invalid snapshot name: Cannot contain "/"');
  if (/\s/.test(name)) throw new BadRequest("Invalid instance snapshot name: Cannot contain space or / characters");
  // Upstream takes "." and ".." and then writes outside the instance's snapshot directory.
  if (name === "." || name === "..") throw new BadRequest(`Invalid instance snapshot name: "${name}" is reserved`);
  if (name.length > 255) throw new BadRequest("Invalid instance snapshot name: Name is too long");
}

/** A Go time.Time as JSON: RFC 3339, no fractional part when it is zero. */
export function goTime(d: Date): string {
  const iso = d.toISOString();
  return iso.endsWith(".000Z") ? iso.slice(0, -5) + "Z" : iso;
}

/** Parse an expires_at from a request (RFC 3339; null/empty = never). */
export function parseExpiry(value: string | null | undefined): string {
  if (!value || value.startsWith("0001-01-01")) return ZERO_TIME;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new BadRequest(`parsing time "${value}" as "2006-01-02T15:04:05Z07:00": cannot parse`);
  return goTime(d);
}

/** snapshots.expiry ("1d 2H", units M H d w m y) added to `from`. */
export function expiryFrom(expr: string, from: Date): string {
  if (!expr.trim()) return ZERO_TIME;
  const d = new Date(from.getTime());
  for (const [, n, unit] of expr.matchAll(/(\d+)\s*([MHdwmy])/g)) {
    const k = Number(n);
    if (unit === "M") d.setUTCMinutes(d.getUTCMinutes() + k);
    else if (unit === "H") d.setUTCHours(d.getUTCHours() + k);
    else if (unit === "d") d.setUTCDate(d.getUTCDate() + k);
    else if (unit === "w") d.setUTCDate(d.getUTCDate() + 7 * k);
    else if (unit === "m") d.setUTCMonth(d.getUTCMonth() + k);
    else d.setUTCFullYear(d.getUTCFullYear() + k);
  }
  return goTime(d);
}

/** The next automatic name for snapshots.pattern ("snap%d" by default), as upstream numbers them. */
export function nextSnapshotName(pattern: string, existing: string[]): string {
  if (!pattern.includes("%d")) {
    if (!existing.includes(pattern)) return pattern;
    return nextSnapshotName(`${pattern}-%d`, existing);
  }
  const [before, after] = pattern.split("%d", 2);
  let max = -1;
  for (const name of existing) {
    if (!name.startsWith(before) || !name.endsWith(after) || name.length <= before.length + after.length) continue;
    const mid = name.slice(before.length, name.length - after.length);
    if (/^\d+$/.test(mid)) max = Math.max(max, Number(mid));
  }
  return `${before}${max + 1}${after}`;
}

export const snapshotUrl = (project: string, name: string, snap: string) => apiUrl(project, "instances", name, "snapshots", snap);

/** The storage calls instance snapshots make (snapshot volumes of the instance's pool). */
export type SnapshotStorage = Pick<StoragePort, "createInstanceSnapshot" | "deleteInstanceSnapshot" | "renameInstanceSnapshot" | "restoreInstanceSnapshot" | "mountInstanceSnapshot" | "syncInstanceVolume"> &
  Pick<StoragePort, "exportInstanceVolume" | "instanceVolumeConfig" | "setInstanceVolumeConfig">;

/** What instance snapshots use: their rows, lifecycle events, a log, the storage calls and the project checks. */
export interface SnapshotServiceDeps {
  db: Db;
  events: Pick<EventHub, "lifecycle">;
  log: Pick<Logger, "warn">;
  storage: SnapshotStorage;
  projects: Pick<ProjectsPort, "allowSnapshotCreation" | "allowInstanceUpdate">;
  /** Whether this member runs the instances of cluster member `node` (always, standalone). */
  ownsHere: (node: string) => boolean;
}

export class SnapshotService {
  readonly repo: SnapshotRepo;
  constructor(
    private readonly deps: SnapshotServiceDeps,
    private readonly svc: InstanceOwner,
  ) {
    this.repo = new SnapshotRepo(deps.db);
  }

  private poolOf(row: InstanceRow | { project: string; profiles: string[]; config: Record<string, string>; devices: Devices }): string {
    return rootDisk(this.svc.expanded(row).devices).pool;
  }

  list(row: InstanceRow): SnapshotRow[] {
    return this.repo.list(row.id);
  }

  /** Every instance's snapshots by instance id, read at once (lists of instances). */
  byInstance(): Map<number, SnapshotRow[]> {
    return this.repo.byInstance();
  }

  /** The snapshot or LXD's 404. */
  require(row: InstanceRow, snap: string): SnapshotRow {
    const s = this.repo.get(row.id, snap);
    if (!s || s.state !== "created") throw new NotFound(`Failed to fetch snapshot "${snap}" of instance "${row.name}" in project "${row.project}": InstanceSnapshot not found`);
    return s;
  }

  view(row: InstanceRow, s: SnapshotRow): SnapshotView {
    let ex: { config: Record<string, string>; devices: Devices };
    try {
      ex = this.svc.expanded({ project: row.project, profiles: s.profiles, config: s.config, devices: s.devices });
    } catch {
      ex = { config: s.config, devices: s.devices };
    }
    return {
      expires_at: s.expiresAt,
      architecture: s.architecture,
      config: s.config,
      created_at: s.createdAt,
      devices: s.devices,
      ephemeral: s.ephemeral,
      expanded_config: ex.config,
      expanded_devices: ex.devices,
      last_used_at: ZERO_TIME,
      name: s.name,
      profiles: s.profiles,
      stateful: s.stateful,
      size: -1,
    };
  }

  /** The views of an instance's snapshots, or null when it has none (instance recursion=2). */
  /** The snapshot views of an instance; `list`: its snapshots when already read (`byInstance`). */
  views(row: InstanceRow, list = this.list(row)): SnapshotView[] | null {
    return list.length ? list.map((s) => this.view(row, s)) : null;
  }

  /** Name for a new snapshot: the requested one checked, or the next from snapshots.pattern. */
  checkCreate(row: InstanceRow, req: { name: string; stateful: boolean }): string {
    this.deps.projects.allowSnapshotCreation(row.project);
    const name = req.name || nextSnapshotName(this.svc.expanded(row).config["snapshots.pattern"] || "snap%d", this.repo.list(row.id, true).map((s) => s.name));
    validateSnapshotName(name);
    return name;
  }

  /** The body of the "Snapshotting instance" operation. A running container is frozen while its volume is copied. */
  async create(project: string, name: string, snap: string, expiresAt: string | null | undefined, signal?: AbortSignal, stateful = false): Promise<void> {
    await this.svc.runtime.serialize(project, name, () => this.createLocked(project, name, snap, expiresAt, signal, stateful));
  }

  /**
   * `snapshots.schedule` with `@startup`: a snapshot each time the instance starts, taken by the
   * start itself before the container runs (LXD's startupSnapshot). Called inside the instance's queue.
   */
  async startupSnapshot(project: string, name: string, config: Record<string, string>): Promise<void> {
    const triggers = (config["snapshots.schedule"] ?? "").toLowerCase().split(", ");
    if (!triggers.includes("@startup")) return;
    const row = this.svc.require(project, name);
    const snap = nextSnapshotName("snap%d", this.repo.list(row.id, true).map((s) => s.name));
    await this.createLocked(project, name, snap, undefined);
  }

  /** The body of create, for callers already in the instance's queue. */
  private async createLocked(project: string, name: string, snap: string, expiresAt: string | null | undefined, signal?: AbortSignal, stateful = false): Promise<void> {
    // A stateful snapshot carries a CRIU dump of the running instance in the volume's `state`
    // directory, which goes away again once the volume is snapshotted (LXD's Snapshot(stateful)).
    const state = stateful ? await this.dumpForSnapshot(project, name) : undefined;
    try {
      const row = this.svc.require(project, name);
      if (this.repo.get(row.id, snap)) throw new Conflict(`Failed creating instance snapshot record "${snap}": Add snapshot info to the database: This "instances_snapshots" entry already exists`);
      const now = new Date();
      const expiry = expiresAt ? parseExpiry(expiresAt) : expiryFrom(this.svc.expanded(row).config["snapshots.expiry"] ?? "", now);
      const pool = this.poolOf(row);
      const storage = this.deps.storage;
      this.repo.insert({
        instanceId: row.id,
        name: snap,
        createdAt: now.toISOString(),
        expiresAt: expiry,
        stateful,
        description: "",
        architecture: row.architecture,
        ephemeral: row.ephemeral,
        config: row.config,
        devices: row.devices,
        profiles: row.profiles,
      });
      const created = this.repo.get(row.id, snap)!;
      try {
        await this.svc.runtime.frozenDuring(row, () => storage.createInstanceSnapshot(project, pool, name, snap, { signal }));
      } catch (e) {
        this.repo.delete(created.id);
        throw e;
      }
      this.repo.setState(created.id, "created");
    } finally {
      if (state) rmSync(state, { recursive: true, force: true });
    }
    this.deps.events.lifecycle("instance-snapshot-created", snapshotUrl(project, name, snap), { project });
  }

  private async dumpForSnapshot(project: string, name: string): Promise<string> {
    const row = this.svc.require(project, name);
    if (!this.svc.runtime.isRunning(row)) throw new Error("Unable to create a stateful snapshot. The instance isn't running");
    try {
      return await this.svc.runtime.dumpState(row, { stop: false, purpose: "snapshot" });
    } catch (e) {
      if (e instanceof CriuMissing) throw new Error("Unable to create a stateful snapshot. CRIU isn't installed");
      throw e;
    }
  }

  async delete(project: string, name: string, snap: string): Promise<void> {
    await this.svc.runtime.serialize(project, name, () => this.deleteLocked(project, name, snap));
  }

  /** delete, for callers already in the instance's queue (refreshes). */
  async deleteLocked(project: string, name: string, snap: string): Promise<void> {
    const row = this.svc.require(project, name);
    const s = this.require(row, snap);
    this.repo.setState(s.id, "deleting");
    await this.deps.storage.deleteInstanceSnapshot(project, this.poolOf(row), name, snap);
    this.repo.delete(s.id);
    this.deps.events.lifecycle("instance-snapshot-deleted", snapshotUrl(project, name, snap), { project });
  }

  checkRename(row: InstanceRow, snap: string, to: string): void {
    this.require(row, snap);
    if (!to) throw new BadRequest("Invalid snapshot name: Cannot be empty");
    validateSnapshotName(to);
    if (this.repo.get(row.id, to)) throw new Conflict(`Name '${row.name}/${to}' already in use`);
  }

  async rename(project: string, name: string, snap: string, to: string): Promise<void> {
    await this.svc.runtime.serialize(project, name, async () => {
      const row = this.svc.require(project, name);
      this.checkRename(row, snap, to);
      const s = this.require(row, snap);
      await this.deps.storage.renameInstanceSnapshot(project, this.poolOf(row), name, snap, to);
      this.repo.rename(s.id, to);
    });
    this.deps.events.lifecycle("instance-snapshot-renamed", snapshotUrl(project, name, to), { project, context: { old_name: `${name}/${snap}` } });
  }

  /** PUT/PATCH: only expires_at is writable (absent = no change), as upstream. */
  updateExpiry(project: string, name: string, snap: string, expiresAt: string | null | undefined): void {
    const row = this.svc.require(project, name);
    const s = this.require(row, snap);
    if (expiresAt === undefined) return;
    this.repo.setExpiry(s.id, parseExpiry(expiresAt));
  }

  /**
   * `lxc restore`: stop a running instance, swap the snapshot's content in, take its config,
   * devices and profiles (keeping the instance's volatile state), and start it again.
   */
  async restore(project: string, name: string, ref: string, signal?: AbortSignal): Promise<void> {
    const full = ref.includes("/") ? ref : `${name}/${ref}`;
    const [parent, snap] = full.split("/", 2);
    const row = this.svc.require(project, name);
    const s = parent === name ? this.repo.get(row.id, snap) : undefined;
    if (!s || s.state !== "created") throw new Error(`Snapshot ${full} does not exist`);
    // The snapshot's config, devices and profiles become the instance's: the project's
    // restrictions and limits apply to them as to an update (volatile keys stay the instance's).
    const restored = Object.fromEntries(Object.entries(s.config).filter(([k]) => !k.startsWith("volatile.")));
    for (const [k, v] of Object.entries(row.config)) if (k.startsWith("volatile.")) restored[k] = v;
    this.deps.projects.allowInstanceUpdate(project, { name, type: row.type, config: restored, devices: s.devices, profiles: s.profiles }, row.config);
    await this.svc.runtime.withStopped(project, name, async () => {
      const cur = this.svc.require(project, name);
      const pool = this.poolOf(cur);
      await this.deps.storage.restoreInstanceSnapshot(project, pool, name, snap, { signal });
      const config: Record<string, string> = {};
      for (const [k, v] of Object.entries(s.config)) if (!k.startsWith("volatile.")) config[k] = v;
      for (const [k, v] of Object.entries(cur.config)) if (k.startsWith("volatile.")) config[k] = v;
      // The restored rootfs is owned as it was when the snapshot was taken.
      if (s.config["volatile.last_state.idmap"]) config["volatile.last_state.idmap"] = s.config["volatile.last_state.idmap"];
      this.svc.repo.update(project, name, { architecture: s.architecture, ephemeral: s.ephemeral, description: cur.description, config, devices: s.devices, profiles: s.profiles });
      this.deps.events.lifecycle("instance-restored", instanceUrl(project, name), { project, context: { snapshot: full } });
    });
  }

  /** A snapshot as the source of a copy: its config and the path of its volume. */
  async copySource(project: string, ref: string): Promise<{ row: InstanceRow; snapshot: SnapshotRow; dir: () => Promise<string>; exportTo: (target: string) => Promise<void> }> {
    const [name, snap] = ref.split("/", 2);
    const row = this.svc.require(project, name);
    const snapshot = this.require(row, snap);
    const storage = this.deps.storage;
    return {
      row,
      snapshot,
      dir: () => storage.mountInstanceSnapshot(project, this.poolOf(row), name, snap),
      exportTo: async (target) => {
        if (!storage.exportInstanceVolume) throw new Error("Storage cannot export volumes");
        await storage.exportInstanceVolume(project, this.poolOf(row), name, snap, target);
      },
    };
  }

  /**
   * `lxc copy c1 c2`: the new instance gets the source's snapshots, oldest first. Each one's
   * content is synced into the new volume (storage's syncVolume) and snapshotted there, so this
   * works across pools, drivers and projects; the caller then syncs the source's current
   * content and removes the whole instance (snapshots included) if anything fails.
   */
  async copyAll(source: InstanceRow, project: string, target: string, pool: string, signal?: AbortSignal): Promise<void> {
    await this.copySome(source, this.list(source), project, target, pool, signal);
  }

  /** Copy these snapshots of `source` (oldest first) to the target instance, with their volumes' config. */
  async copySome(source: InstanceRow, snaps: SnapshotRow[], project: string, target: string, pool: string, signal?: AbortSignal): Promise<void> {
    const targetRow = this.svc.require(project, target);
    const storage = this.deps.storage;
    const sourcePool = this.poolOf(source);
    for (const s of snaps) {
      const from = await storage.mountInstanceSnapshot(source.project, sourcePool, source.name, s.name);
      await storage.syncInstanceVolume(project, pool, target, from, { signal });
      this.repo.insert({ ...s, instanceId: targetRow.id, devices: this.rootOnPool(targetRow, s, pool) });
      const row = this.repo.get(targetRow.id, s.name)!;
      await storage.createInstanceSnapshot(project, pool, target, s.name, { signal });
      const vol = storage.instanceVolumeConfig?.(source.project, sourcePool, source.name, s.name);
      if (vol) storage.setInstanceVolumeConfig?.(project, pool, target, s.name, vol);
      this.repo.setState(row.id, "created");
    }
  }

  /**
   * A snapshot received by migration: the instance volume holds its content now; snapshot it
   * and record it (its root disk on our pool, its files owned as `lastIdmap` says).
   */
  async addReceived(
    project: string,
    name: string,
    pool: string,
    s: { name: string; config: Record<string, string>; devices: Devices; profiles: string[]; ephemeral: boolean; architecture: string; createdAt: string; expiresAt: string; lastIdmap: IdmapEntry[] },
    signal?: AbortSignal,
    place?: () => Promise<void>,
  ): Promise<void> {
    validateSnapshotName(s.name);
    const target = this.svc.require(project, name);
    if (this.repo.get(target.id, s.name)) throw new Conflict(`Snapshot "${s.name}" already exists`);
    const config = { ...s.config, "volatile.last_state.idmap": idmapJson(s.lastIdmap) };
    const base = { instanceId: target.id, name: s.name, createdAt: s.createdAt, expiresAt: s.expiresAt, stateful: false, description: "", architecture: s.architecture, ephemeral: s.ephemeral, config, devices: s.devices, profiles: s.profiles };
    this.repo.insert({ ...base, devices: this.rootOnPool(target, { ...base, id: 0, state: "creating" }, pool) });
    const row = this.repo.get(target.id, s.name)!;
    await this.deps.storage.createInstanceSnapshot(project, pool, name, s.name, { signal, place });
    this.repo.setState(row.id, "created");
  }

  /**
   * A copied snapshot's devices with its root disk on the new instance's pool (upstream's
   * instanceCreateAsCopy): the local root device gets the pool, or a local one is added
   * when the snapshot's root disk came from a profile with another pool, or from nowhere.
   */
  private rootOnPool(target: InstanceRow, s: SnapshotRow, pool: string): Devices {
    const devices = structuredClone(s.devices);
    const instRoot = rootDisk(this.svc.expanded(target).devices);
    let snapRoot: { name: string; pool: string } | undefined;
    try {
      snapRoot = rootDisk(this.svc.expanded({ project: target.project, profiles: s.profiles, config: s.config, devices: s.devices }).devices);
    } catch {
      snapRoot = undefined;
    }
    if (snapRoot && snapRoot.pool === pool) return devices;
    if (snapRoot && devices[snapRoot.name]) devices[snapRoot.name] = { ...devices[snapRoot.name], pool };
    else devices[snapRoot?.name ?? instRoot.name] = { type: "disk", path: "/", pool };
    return devices;
  }

  /** Finish or undo snapshot changes a crash interrupted (their volumes were cleaned up by storage). */
  async recover(here: (node: string) => boolean = () => true): Promise<void> {
    const byId = new Map(this.svc.repo.list().map((r) => [r.id, r]));
    for (const s of this.repo.unfinished()) {
      const row = byId.get(s.instanceId);
      // Another cluster member's snapshot may be under way.
      if (row && !here(row.node)) continue;
      this.deps.log.warn({ instance: row?.name, snapshot: s.name, state: s.state }, "removing instance snapshot left half-done by a crash");
      if (row) await this.deps.storage.deleteInstanceSnapshot(row.project, this.poolOf(row), row.name, s.name).catch((e) => this.deps.log.warn({ err: e }, "snapshot volume cleanup failed"));
      this.repo.delete(s.id);
    }
  }

  /** Delete snapshots whose expires_at has passed (the snapshot scheduler calls this every minute, as upstream's task). */
  async pruneExpired(): Promise<void> {
    const now = Date.now();
    for (const row of this.svc.repo.list()) {
      if (!this.deps.ownsHere(row.node)) continue;
      for (const s of this.repo.list(row.id)) {
        if (s.expiresAt === ZERO_TIME || new Date(s.expiresAt).getTime() > now) continue;
        await this.delete(row.project, row.name, s.name).catch((e) => this.deps.log.warn({ err: e, instance: row.name, snapshot: s.name }, "cannot delete expired snapshot"));
      }
    }
  }

  /**
   * Instances with snapshots.schedule (SnapshotScheduleSource): running ones, and stopped ones
   * when snapshots.schedule.stopped is true, as upstream's task.
   */
  scheduled(): ScheduledSubject[] {
    const out: ScheduledSubject[] = [];
    for (const row of this.svc.repo.list()) {
      let config: Record<string, string>;
      try {
        config = this.svc.expanded(row).config;
      } catch {
        continue;
      }
      const schedule = config["snapshots.schedule"] ?? "";
      if (!schedule.trim()) continue;
      if (!this.svc.runtime.isRunning(row) && !parseBool(config["snapshots.schedule.stopped"])) continue;
      out.push({
        key: `instance:${row.id}`,
        id: row.id,
        schedule,
        member: row.node,
        take: async () => {
          const cur = this.svc.require(row.project, row.name);
          const snap = this.checkCreate(cur, { name: "", stateful: false });
          await this.create(row.project, row.name, snap, undefined);
        },
      });
    }
    return out;
  }

}
