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

  delete(name: string): void {
    this.db.prepare("DELETE FROM projects WHERE name = ?").run(name);
  }

  /** Names of what lives in the project, per kind (instances, profiles, images, custom volumes, networks). */
  contents(project: string): { instances: string[]; profiles: string[]; images: string[]; volumes: string[]; networks: string[]; acls: string[] } {
    const names = (sql: string) => (this.db.prepare(sql).all(project) as { n: string }[]).map((r) => r.n);
    return {
      instances: names("SELECT name AS n FROM instances WHERE project = ? ORDER BY name"),
      profiles: names("SELECT name AS n FROM profiles WHERE project = ? ORDER BY name"),
      images: names("SELECT fingerprint AS n FROM images WHERE project = ? ORDER BY fingerprint"),
      volumes: names("SELECT name AS n FROM storage_volumes WHERE project = ? AND type = 'custom' ORDER BY name"),
      networks: names("SELECT name AS n FROM networks WHERE project = ? ORDER BY name"),
      acls: names("SELECT name AS n FROM network_acls WHERE project = ? ORDER BY name"),
    };
  }
}
