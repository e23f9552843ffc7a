// Projects, and what a project holds (read across the tables of the features that own them:
// projects decide whether a project is empty and list what uses it).
import type { Db } from "./database.js";

export interface ProjectRow {
  name: string;
  description: string;
  config: Record<string, string>;
}

interface RawRow {
  name: string;
  description: string;
  config: string;
}

const toRow = (r: RawRow): ProjectRow => ({ name: r.name, description: r.description, config: JSON.parse(r.config) });

export class ProjectRepo {
  constructor(private readonly db: Db) {}

  list(): ProjectRow[] {
    return (this.db.prepare("SELECT * FROM projects ORDER BY name").all() as RawRow[]).map(toRow);
  }

  get(name: string): ProjectRow | undefined {
    const r = this.db.prepare("SELECT * FROM projects WHERE name = ?").get(name) as RawRow | undefined;
    return r ? toRow(r) : undefined;
  }

  insert(p: ProjectRow): void {
    this.db.prepare("INSERT INTO projects (name, description, config) VALUES (?, ?, ?)").run(p.name, p.description, JSON.stringify(p.config));
  }

  update(p: ProjectRow): void {
    this.db.prepare("UPDATE projects SET description = ?, config = ? WHERE name = ?").run(p.description, JSON.stringify(p.config), p.name);
  }

  /**
   * Rename a project everywhere its name is stored: every table with a `project` column
   * (instances, profiles, images, volumes, networks, operations, ...) and certificates'
   * project lists. Call inside a transaction.
   */
  rename(from: string, to: string): void {
    this.db.prepare("UPDATE projects SET name = ? WHERE name = ?").run(to, from);
    const tables = (this.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as { name: string }[]).map((t) => t.name);
    for (const t of tables) {
      if (t === "projects") continue;
      const cols = (this.db.prepare(`PRAGMA table_info("${t.replace(/"/g, '""')}")`).all() as { name: string }[]).map((c) => c.name);
      if (cols.includes("project")) this.db.prepare(`UPDATE "${t.replace(/"/g, '""')}" SET project = ? WHERE project = ?`).run(to, from);
    }
    if (tables.includes("certificates")) {
      const certs = this.db.prepare("SELECT rowid AS id, projects FROM certificates").all() as { id: number; projects: string }[];
      for (const c of certs) {
        const list = JSON.parse(c.projects) as string[];
        if (list.includes(from)) this.db.prepare("UPDATE certificates SET projects = ? WHERE rowid = ?").run(JSON.stringify(list.map((p) => (p === from ? to : p))), c.id);
      }
    }
  }

  delete(name: string): void {
    this.db.prepare("DELETE FROM projects WHERE name = ?").run(name);
  }

  /** Names of what lives in the project, per kind (instances, profiles, images, custom volumes, networks). */
  contents(project: string): { instances: string[]; profiles: string[]; images: string[]; volumes: { pool: string; name: string }[]; networks: string[]; acls: string[] } {
    const names = (sql: string) => (this.db.prepare(sql).all(project) as { n: string }[]).map((r) => r.n);
    return {
      instances: names("SELECT name AS n FROM instances WHERE project = ? ORDER BY name"),
      profiles: names("SELECT name AS n FROM profiles WHERE project = ? ORDER BY name"),
      images: names("SELECT fingerprint AS n FROM images WHERE project = ? ORDER BY fingerprint"),
      // Custom volumes, not their snapshots ("vol/snap" rows), with the pool that holds each.
      volumes: this.db
        .prepare("SELECT p.name AS pool, v.name AS name FROM storage_volumes v JOIN storage_pools p ON p.id = v.pool_id WHERE v.project = ? AND v.type = 'custom' AND instr(v.name, '/') = 0 ORDER BY v.name")
        .all(project) as { pool: string; name: string }[],
      networks: names("SELECT name AS n FROM networks WHERE project = ? ORDER BY name"),
      acls: names("SELECT name AS n FROM network_acls WHERE project = ? ORDER BY name"),
    };
  }
}
