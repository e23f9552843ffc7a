// Instance snapshots. `state` makes snapshot changes crash-safe: a row is 'creating' until its
// volume exists and 'deleting' while its volume is removed; the instances feature finishes
// or undoes rows left in those states at start.
import { groupBy } from "../shared/group.js";
import type { Db } from "./database.js";

export type SnapshotState = "creating" | "created" | "deleting";

export interface SnapshotRow {
  id: number;
  instanceId: number;
  name: string;
  createdAt: string;
  expiresAt: string;
  stateful: boolean;
  description: string;
  architecture: string;
  ephemeral: boolean;
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
  profiles: string[];
  state: SnapshotState;
}

interface RawRow {
  id: number;
  instance_id: number;
  name: string;
  created_at: string;
  expires_at: string;
  stateful: number;
  description: string;
  architecture: string;
  ephemeral: number;
  config: string;
  devices: string;
  profiles: string;
  state: SnapshotState;
}

const toRow = (r: RawRow): SnapshotRow => ({
  id: r.id,
  instanceId: r.instance_id,
  name: r.name,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  stateful: r.stateful === 1,
  description: r.description,
  architecture: r.architecture,
  ephemeral: r.ephemeral === 1,
  config: JSON.parse(r.config),
  devices: JSON.parse(r.devices),
  profiles: JSON.parse(r.profiles),
  state: r.state,
});

export class SnapshotRepo {
  constructor(private readonly db: Db) {}

  /** Snapshots of an instance, oldest first (LXD lists them in creation order). */
  list(instanceId: number, all = false): SnapshotRow[] {
    const rows = this.db.prepare("SELECT * FROM instance_snapshots WHERE instance_id = ? ORDER BY id").all(instanceId) as RawRow[];
    return rows.map(toRow).filter((r) => all || r.state === "created");
  }

  /** The created snapshots of every instance, by instance id, oldest first (one query for a list). */
  byInstance(): Map<number, SnapshotRow[]> {
    const rows = (this.db.prepare("SELECT * FROM instance_snapshots WHERE state = 'created' ORDER BY id").all() as RawRow[]).map(toRow);
    return groupBy(rows, (r) => r.instanceId);
  }

  /** Every row not in the 'created' state (crash recovery). */
  unfinished(): SnapshotRow[] {
    return (this.db.prepare("SELECT * FROM instance_snapshots WHERE state != 'created' ORDER BY id").all() as RawRow[]).map(toRow);
  }

  get(instanceId: number, name: string): SnapshotRow | undefined {
    const r = this.db.prepare("SELECT * FROM instance_snapshots WHERE instance_id = ? AND name = ?").get(instanceId, name) as RawRow | undefined;
    return r ? toRow(r) : undefined;
  }

  insert(row: Omit<SnapshotRow, "id" | "state">): void {
    this.db
      .prepare(
        `INSERT INTO instance_snapshots (instance_id, name, created_at, expires_at, stateful, description, architecture, ephemeral, config, devices, profiles, state)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'creating')`,
      )
      .run(row.instanceId, row.name, row.createdAt, row.expiresAt, row.stateful ? 1 : 0, row.description, row.architecture, row.ephemeral ? 1 : 0, JSON.stringify(row.config), JSON.stringify(row.devices), JSON.stringify(row.profiles));
  }

  setState(id: number, state: SnapshotState): void {
    this.db.prepare("UPDATE instance_snapshots SET state = ? WHERE id = ?").run(state, id);
  }

  setExpiry(id: number, expiresAt: string): void {
    this.db.prepare("UPDATE instance_snapshots SET expires_at = ? WHERE id = ?").run(expiresAt, id);
  }

  rename(id: number, name: string): void {
    this.db.prepare("UPDATE instance_snapshots SET name = ? WHERE id = ?").run(name, id);
  }

  delete(id: number): void {
    this.db.prepare("DELETE FROM instance_snapshots WHERE id = ?").run(id);
  }
}
