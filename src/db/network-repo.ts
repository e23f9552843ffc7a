import type { Db } from "./database.js";

export interface NetworkRow {
  /** The row id (LXD's network ID, e.g. in BGP owner names); absent before the row exists. */
  id?: number;
  project: string;
  name: string;
  type: string;
  description: string;
  config: Record<string, string>;
  /** In a cluster: pending (defined on members with --target), errored (creation failed part-way), created. */
  state?: string;
}

interface Raw {
  id: number;
  project: string;
  name: string;
  type: string;
  description: string;
  config: string;
  state: string;
}

const toRow = (r: Raw): NetworkRow => ({ ...r, config: JSON.parse(r.config) });

/** Managed networks. */
export class NetworkRepo {
  constructor(readonly db: Db) {}

  list(project: string): NetworkRow[] {
    return (this.db.prepare("SELECT id, project, name, type, description, config, state FROM networks WHERE project = ? ORDER BY name").all(project) as Raw[]).map(toRow);
  }

  /** Networks created (on this host); a cluster's pending ones are not. */
  all(): NetworkRow[] {
    return (this.db.prepare("SELECT id, project, name, type, description, config, state FROM networks WHERE state = 'created' ORDER BY project, name").all() as Raw[]).map(toRow);
  }

  get(project: string, name: string): NetworkRow | undefined {
    const r = this.db.prepare("SELECT id, project, name, type, description, config, state FROM networks WHERE project = ? AND name = ?").get(project, name) as Raw | undefined;
    return r && toRow(r);
  }

  /** Insert the row; returns its id. */
  create(row: NetworkRow): number {
    const r = this.db
      .prepare("INSERT INTO networks (project, name, type, description, config, state) VALUES (?, ?, ?, ?, ?, ?)")
      .run(row.project, row.name, row.type, row.description, JSON.stringify(row.config), row.state ?? "created");
    return Number(r.lastInsertRowid);
  }

  update(project: string, name: string, description: string, config: Record<string, string>): void {
    this.db.prepare("UPDATE networks SET description = ?, config = ? WHERE project = ? AND name = ?").run(description, JSON.stringify(config), project, name);
  }

  setState(project: string, name: string, state: string): void {
    this.db.prepare("UPDATE networks SET state = ? WHERE project = ? AND name = ?").run(state, project, name);
  }

  rename(project: string, from: string, to: string): void {
    this.db.prepare("UPDATE networks SET name = ? WHERE project = ? AND name = ?").run(to, project, from);
  }

  delete(project: string, name: string): void {
    this.db.prepare("DELETE FROM networks WHERE project = ? AND name = ?").run(project, name);
  }
}
