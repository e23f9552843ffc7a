// Profiles per project.
import type { Db } from "./database.js";

interface RawProfile {
  name: string;
  description: string;
  config: string;
  devices: string;
}

const toProfile = (r: RawProfile): ProfileRecord => ({ name: r.name, description: r.description, config: JSON.parse(r.config), devices: JSON.parse(r.devices) });

/** A profile as the API shows it (without used_by). */
export interface ProfileRecord {
  name: string;
  description: string;
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
}

export class ProfileRepo {
  constructor(private readonly db: Db) {}

  list(project: string): ProfileRecord[] {
    return (this.db.prepare("SELECT * FROM profiles WHERE project = ? ORDER BY name").all(project) as RawProfile[]).map(toProfile);
  }

  /** Every profile of every project, with its project. */
  all(): (ProfileRecord & { project: string })[] {
    return (this.db.prepare("SELECT * FROM profiles ORDER BY project, name").all() as (RawProfile & { project: string })[]).map((r) => ({ ...toProfile(r), project: r.project }));
  }

  get(project: string, name: string): ProfileRecord | undefined {
    const r = this.db.prepare("SELECT * FROM profiles WHERE project = ? AND name = ?").get(project, name) as RawProfile | undefined;
    return r && toProfile(r);
  }

  insert(project: string, p: ProfileRecord): void {
    this.db
      .prepare("INSERT INTO profiles (project, name, description, config, devices) VALUES (?, ?, ?, ?, ?)")
      .run(project, p.name, p.description, JSON.stringify(p.config), JSON.stringify(p.devices));
  }

  update(project: string, p: ProfileRecord): void {
    this.db
      .prepare("UPDATE profiles SET description = ?, config = ?, devices = ? WHERE project = ? AND name = ?")
      .run(p.description, JSON.stringify(p.config), JSON.stringify(p.devices), project, p.name);
  }

  rename(project: string, from: string, to: string): boolean {
    return this.db.prepare("UPDATE profiles SET name = ? WHERE project = ? AND name = ?").run(to, project, from).changes === 1;
  }

  hasProject(project: string): boolean {
    return this.db.prepare("SELECT 1 FROM profiles WHERE project = ? LIMIT 1").get(project) !== undefined;
  }

  deleteProject(project: string): void {
    this.db.prepare("DELETE FROM profiles WHERE project = ?").run(project);
  }

  delete(project: string, name: string): boolean {
    return this.db.prepare("DELETE FROM profiles WHERE project = ? AND name = ?").run(project, name).changes === 1;
  }
}
