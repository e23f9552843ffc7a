// Storage pools and volumes. A row's `state` makes multi-step host changes crash-safe:
// 'creating' rows are written before the host work and marked 'created' after it; rows
// left 'creating' or 'deleting' by a crash are finished off at start (pool service).
import { localMember, type Db } from "./database.js";

export type RowState = "creating" | "created" | "deleting" | "pending" | "errored";

export interface PoolRow {
  id: number;
  name: string;
  driver: string;
  description: string;
  config: Record<string, string>;
  state: RowState;
}

export interface VolumeRow {
  id: number;
  pool: string;
  project: string;
  type: string;
  name: string;
  description: string;
  config: Record<string, string>;
  contentType: string;
  state: RowState;
  createdAt: string;
  /** Set while a rename is under way (the new API name), for crash recovery. */
  renamingTo: string | null;
  /** Snapshot volumes: when they expire ("0001-01-01T00:00:00Z" = never). */
  expiresAt: string;
  /** The cluster member a custom volume on a non-shared pool lives on ("" otherwise). */
  node: string;
}

interface RawPool {
  id: number;
  name: string;
  driver: string;
  description: string;
  config: string;
  state: RowState;
}

interface RawVolume {
  id: number;
  pool: string;
  project: string;
  type: string;
  name: string;
  description: string;
  config: string;
  content_type: string;
  state: RowState;
  created_at: string;
  renaming_to: string | null;
  expires_at: string;
  node: string;
}

const toPool = (r: RawPool): PoolRow => ({ ...r, config: JSON.parse(r.config) });
const toVolume = (r: RawVolume): VolumeRow => ({
  id: r.id,
  pool: r.pool,
  project: r.project,
  type: r.type,
  name: r.name,
  description: r.description,
  config: JSON.parse(r.config),
  contentType: r.content_type,
  state: r.state,
  createdAt: r.created_at,
  renamingTo: r.renaming_to,
  expiresAt: r.expires_at,
  node: r.node ?? "",
});

const VOLUME_SELECT = "SELECT v.*, p.name AS pool FROM storage_volumes v JOIN storage_pools p ON p.id = v.pool_id";

export class StorageRepo {
  /**
   * The member a new volume of `type` on pool `pool` belongs to ("" when it belongs to none:
   * standalone, shared pools, non-custom volumes). Set by the pool service in a cluster.
   */
  volumeNode: (pool: string, type: string) => string = () => "";

  constructor(private readonly db: Db) {}

  pools(): PoolRow[] {
    return (this.db.prepare("SELECT * FROM storage_pools ORDER BY name").all() as RawPool[]).map(toPool);
  }

  pool(name: string): PoolRow | undefined {
    const r = this.db.prepare("SELECT * FROM storage_pools WHERE name = ?").get(name) as RawPool | undefined;
    return r && toPool(r);
  }

  /** A new pool row, 'creating' unless told (a pool recovered from disk is there already: 'created'). */
  insertPool(p: { name: string; driver: string; description: string; config: Record<string, string>; state?: RowState }): void {
    this.db.prepare("INSERT INTO storage_pools (name, driver, description, config, state) VALUES (?, ?, ?, ?, ?)").run(p.name, p.driver, p.description, JSON.stringify(p.config), p.state ?? "creating");
  }

  updatePool(name: string, changes: { description?: string; config?: Record<string, string>; state?: RowState }): void {
    const cur = this.pool(name);
    if (!cur) return;
    this.db
      .prepare("UPDATE storage_pools SET description = ?, config = ?, state = ? WHERE name = ?")
      .run(changes.description ?? cur.description, JSON.stringify(changes.config ?? cur.config), changes.state ?? cur.state, name);
  }

  deletePool(name: string): void {
    this.db.prepare("DELETE FROM storage_pools WHERE name = ?").run(name);
  }

  /**
   * Volumes as this member sees them: shared ones and its own (custom volumes on a local pool of
   * a cluster belong to one member each); `everywhere`: every member's (listings, used_by).
   */
  volumes(filter: { pool?: string; project?: string; type?: string; everywhere?: boolean } = {}): VolumeRow[] {
    const where: string[] = [];
    const args: string[] = [];
    if (!filter.everywhere) (where.push("v.node IN ('', ?)"), args.push(localMember(this.db)));
    if (filter.pool !== undefined) (where.push("p.name = ?"), args.push(filter.pool));
    if (filter.project !== undefined) (where.push("v.project = ?"), args.push(filter.project));
    if (filter.type !== undefined) (where.push("v.type = ?"), args.push(filter.type));
    const sql = `${VOLUME_SELECT}${where.length ? " WHERE " + where.join(" AND ") : ""} ORDER BY v.type, v.name`;
    return (this.db.prepare(sql).all(...args) as RawVolume[]).map(toVolume);
  }

  /**
   * A volume by name as this member sees it: on a shared pool (and standalone) the one row; on a
   * local pool of a cluster this member's own (another member may have one of the same name: a
   * request for that one is served there, see cluster/router.ts).
   */
  volume(pool: string, project: string, type: string, name: string): VolumeRow | undefined {
    const r = this.db
      .prepare(`${VOLUME_SELECT} WHERE p.name = ? AND v.project = ? AND v.type = ? AND v.name = ? AND v.node IN ('', ?)`)
      .get(pool, project, type, name, localMember(this.db)) as RawVolume | undefined;
    return r && toVolume(r);
  }

  /** The members that hold a volume of this name (several only for custom volumes on a local pool). */
  volumeNodes(pool: string, project: string, type: string, name: string): string[] {
    const rows = this.db.prepare(`SELECT v.node FROM storage_volumes v JOIN storage_pools p ON p.id = v.pool_id WHERE p.name = ? AND v.project = ? AND v.type = ? AND v.name = ?`).all(pool, project, type, name) as { node: string }[];
    return rows.map((r) => r.node);
  }

  insertVolume(v: { pool: string; project: string; type: string; name: string; description?: string; config?: Record<string, string>; contentType?: string; expiresAt?: string; createdAt?: string }): void {
    this.db
      .prepare(
        "INSERT INTO storage_volumes (pool_id, project, type, name, description, config, content_type, state, created_at, expires_at, node) SELECT id, ?, ?, ?, ?, ?, ?, 'creating', ?, ?, ? FROM storage_pools WHERE name = ?",
      )
      .run(v.project, v.type, v.name, v.description ?? "", JSON.stringify(v.config ?? {}), v.contentType ?? "filesystem", v.createdAt ?? new Date().toISOString(), v.expiresAt ?? "0001-01-01T00:00:00Z", this.volumeNode(v.pool, v.type), v.pool);
  }

  setVolumeExpiry(id: number, expiresAt: string): void {
    this.db.prepare("UPDATE storage_volumes SET expires_at = ? WHERE id = ?").run(expiresAt, id);
  }

  setVolumeState(id: number, state: RowState): void {
    this.db.prepare("UPDATE storage_volumes SET state = ? WHERE id = ?").run(state, id);
  }

  updateVolume(id: number, changes: { description: string; config: Record<string, string> }): void {
    this.db.prepare("UPDATE storage_volumes SET description = ?, config = ? WHERE id = ?").run(changes.description, JSON.stringify(changes.config), id);
  }

  /** Record that a rename is starting (before the disk changes). */
  beginRename(id: number, to: string | null): void {
    this.db.prepare("UPDATE storage_volumes SET renaming_to = ? WHERE id = ?").run(to, id);
  }

  /** Apply a rename (after the disk changed) and clear the in-progress mark. */
  renameVolume(id: number, name: string): void {
    this.db.prepare("UPDATE storage_volumes SET name = ?, renaming_to = NULL WHERE id = ?").run(name, id);
  }

  deleteVolume(id: number): void {
    this.db.prepare("DELETE FROM storage_volumes WHERE id = ?").run(id);
  }
}
