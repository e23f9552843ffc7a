import type { AclRule } from "../network/acls/rules.js";
import type { Db } from "./database.js";

export interface NetworkAclRow {
  project: string;
  name: string;
  description: string;
  ingress: AclRule[];
  egress: AclRule[];
  config: Record<string, string>;
}

interface Raw {
  project: string;
  name: string;
  description: string;
  ingress: string;
  egress: string;
  config: string;
}

const COLUMNS = "project, name, description, ingress, egress, config";
const toRow = (r: Raw): NetworkAclRow => ({ ...r, ingress: JSON.parse(r.ingress), egress: JSON.parse(r.egress), config: JSON.parse(r.config) });

/** Network ACLs, per project (the project that owns networks: features.networks). */
export class NetworkAclRepo {
  constructor(private readonly db: Db) {}

  list(project: string): NetworkAclRow[] {
    return (this.db.prepare(`SELECT ${COLUMNS} FROM network_acls WHERE project = ? ORDER BY name`).all(project) as Raw[]).map(toRow);
  }

  get(project: string, name: string): NetworkAclRow | undefined {
    const r = this.db.prepare(`SELECT ${COLUMNS} FROM network_acls WHERE project = ? AND name = ?`).get(project, name) as Raw | undefined;
    return r && toRow(r);
  }

  /** The row id (LXD's ACL ID: OVN names its log entries "lxd_acl<ID>-"). */
  idOf(project: string, name: string): number | undefined {
    return (this.db.prepare("SELECT id FROM network_acls WHERE project = ? AND name = ?").get(project, name) as { id: number } | undefined)?.id;
  }

  create(row: NetworkAclRow): void {
    this.db
      .prepare(`INSERT INTO network_acls (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`)
      .run(row.project, row.name, row.description, JSON.stringify(row.ingress), JSON.stringify(row.egress), JSON.stringify(row.config));
  }

  update(row: NetworkAclRow): void {
    this.db
      .prepare("UPDATE network_acls SET description = ?, ingress = ?, egress = ?, config = ? WHERE project = ? AND name = ?")
      .run(row.description, JSON.stringify(row.ingress), JSON.stringify(row.egress), JSON.stringify(row.config), row.project, row.name);
  }

  rename(project: string, from: string, to: string): void {
    this.db.prepare("UPDATE network_acls SET name = ? WHERE project = ? AND name = ?").run(to, project, from);
  }

  delete(project: string, name: string): void {
    this.db.prepare("DELETE FROM network_acls WHERE project = ? AND name = ?").run(project, name);
  }
}
