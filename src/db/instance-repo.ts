import { localMember, type Db } from "./database.js";

export interface InstanceRow {
  id: number;
  project: string;
  name: string;
  type: string;
  architecture: string;
  ephemeral: boolean;
  stateful: boolean;
  description: string;
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
  profiles: string[];
  created_at: string;
  last_used_at: string;
  /** The running init process recorded at start (0 when stopped). */
  init_pid: number;
  init_start: string;
  /** The cluster member it lives on ("" on a standalone daemon). */
  node: string;
}

interface RawRow extends Omit<InstanceRow, "ephemeral" | "stateful" | "config" | "devices" | "profiles"> {
  ephemeral: number;
  stateful: number;
  config: string;
  devices: string;
  profiles: string;
}

const toRow = (r: RawRow): InstanceRow => ({
  ...r,
  ephemeral: r.ephemeral === 1,
  stateful: r.stateful === 1,
  config: JSON.parse(r.config),
  devices: JSON.parse(r.devices),
  profiles: JSON.parse(r.profiles),
});

export class InstanceRepo {
  constructor(private readonly db: Db) {}

  list(project?: string): InstanceRow[] {
    const rows = (project === undefined
      ? this.db.prepare("SELECT * FROM instances ORDER BY project, name").all()
      : this.db.prepare("SELECT * FROM instances WHERE project = ? ORDER BY name").all(project)) as RawRow[];
    return rows.map(toRow);
  }

  get(project: string, name: string): InstanceRow | undefined {
    const r = this.db.prepare("SELECT * FROM instances WHERE project = ? AND name = ?").get(project, name) as RawRow | undefined;
    return r ? toRow(r) : undefined;
  }

  insert(row: Omit<InstanceRow, "id" | "node">): void {
    this.db
      .prepare(
        `INSERT INTO instances (project, name, type, architecture, ephemeral, stateful, description, config, devices, profiles, created_at, last_used_at, init_pid, init_start, node)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(row.project, row.name, row.type, row.architecture, row.ephemeral ? 1 : 0, row.stateful ? 1 : 0, row.description, JSON.stringify(row.config), JSON.stringify(row.devices), JSON.stringify(row.profiles), row.created_at, row.last_used_at, row.init_pid, row.init_start, localMember(this.db));
  }

  /** Update the user-editable fields. */
  update(project: string, name: string, f: Pick<InstanceRow, "architecture" | "ephemeral" | "description" | "config" | "devices" | "profiles">): void {
    this.db
      .prepare("UPDATE instances SET architecture = ?, ephemeral = ?, description = ?, config = ?, devices = ?, profiles = ? WHERE project = ? AND name = ?")
      .run(f.architecture, f.ephemeral ? 1 : 0, f.description, JSON.stringify(f.config), JSON.stringify(f.devices), JSON.stringify(f.profiles), project, name);
  }

  /** Set or clear volatile-like config keys atomically (read-modify-write in one transaction). */
  patchConfig(project: string, name: string, changes: Record<string, string>): Record<string, string> {
    return this.db.transaction(() => {
      const row = this.get(project, name);
      if (!row) throw new Error("Instance not found");
      const config = { ...row.config };
      for (const [k, v] of Object.entries(changes)) {
        if (v === "") delete config[k];
        else config[k] = v;
      }
      this.db.prepare("UPDATE instances SET config = ? WHERE project = ? AND name = ?").run(JSON.stringify(config), project, name);
      return config;
    })();
  }

  setRuntime(project: string, name: string, init: { pid: number; start: string }, lastUsed?: string): void {
    if (lastUsed) this.db.prepare("UPDATE instances SET init_pid = ?, init_start = ?, last_used_at = ? WHERE project = ? AND name = ?").run(init.pid, init.start, lastUsed, project, name);
    else this.db.prepare("UPDATE instances SET init_pid = ?, init_start = ? WHERE project = ? AND name = ?").run(init.pid, init.start, project, name);
  }

  /** Whether the instance holds a CRIU dump to start from (LXD's instances.stateful). */
  setStateful(project: string, name: string, stateful: boolean): void {
    this.db.prepare("UPDATE instances SET stateful = ? WHERE project = ? AND name = ?").run(stateful ? 1 : 0, project, name);
  }

  rename(project: string, from: string, to: string): void {
    this.db.prepare("UPDATE instances SET name = ? WHERE project = ? AND name = ?").run(to, project, from);
  }

  delete(project: string, name: string): void {
    this.db.prepare("DELETE FROM instances WHERE project = ? AND name = ?").run(project, name);
  }
}
