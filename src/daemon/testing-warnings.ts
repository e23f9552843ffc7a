// POST /internal/testing/warnings: LXD 5.0.2's testing endpoint (lxd/api_internal.go
// internalCreateWarning) that creates or bumps a warning of any type, optionally about a project
// and an entity given by LXD's entity type code and database id, with LXD's checks and errors.
import { InternalError } from "../shared/errors.js";
import type { Db } from "../db/database.js";
import type { WarningRepo } from "../db/warning-repo.js";
import { ALL_WARNING_TYPES } from "./host-warnings.js";

/** LXD's entity type codes (lxd/db/cluster/constants.go) and names. */
const ENTITY_NAMES: Record<number, string> = {
  0: "container", 1: "image", 2: "profile", 3: "project", 4: "certificate", 5: "instance", 6: "instance backup",
  7: "instance snapshot", 8: "network", 9: "network acl", 10: "node", 11: "operation", 12: "storage pool",
  13: "storage volume", 14: "storage volume backup", 15: "storage volume snapshot", 16: "warning", 17: "cluster group",
};

export interface TestingWarningRequest {
  location?: string;
  project?: string;
  type_code?: number;
  message?: string;
  /** The body's raw values: anything but a number counts as absent (-1), as LXD's Jmap.GetInt. */
  entity_type_code?: unknown;
  entity_id?: unknown;
}

const intOrAbsent = (v: unknown): number => (typeof v === "number" ? Math.trunc(v) : -1);
const q = (project: string) => `?project=${project}`;

export class TestingWarnings {
  constructor(private readonly db: Db, private readonly warnings: WarningRepo, private readonly memberName: () => string) {}

  /** The entity's URL as LXD builds it from its type and id ("" for none). */
  private entityUrl(type: number, id: number): string {
    if (type === -1 || id === -1) return "";
    const one = <T>(sql: string) => this.db.prepare(sql).get(id) as T | undefined;
    let url: string | undefined;
    switch (type) {
      case 0:
      case 5: {
        const r = one<{ name: string; project: string }>("SELECT name, project FROM instances WHERE id = ?");
        if (r) url = `/1.0/${type === 0 ? "containers" : "instances"}/${r.name}${q(r.project)}`;
        break;
      }
      case 1: {
        const r = one<{ fingerprint: string; project: string }>("SELECT fingerprint, project FROM images WHERE rowid = ?");
        if (r) url = `/1.0/images/${r.fingerprint}${q(r.project)}`;
        break;
      }
      case 2: {
        const r = one<{ name: string; project: string }>("SELECT name, project FROM profiles WHERE id = ?");
        if (r) url = `/1.0/profiles/${r.name}${q(r.project)}`;
        break;
      }
      case 3: {
        const r = one<{ name: string }>("SELECT name FROM projects WHERE rowid = ?");
        if (r) url = `/1.0/projects/${r.name}`;
        break;
      }
      case 8: {
        const r = one<{ name: string; project: string }>("SELECT name, project FROM networks WHERE id = ?");
        if (r) url = `/1.0/networks/${r.name}${q(r.project)}`;
        break;
      }
      case 12: {
        const r = one<{ name: string }>("SELECT name FROM storage_pools WHERE id = ?");
        if (r) url = `/1.0/storage-pools/${r.name}`;
        break;
      }
      case 13: {
        const r = one<{ pool: string; type: string; name: string; project: string }>(
          "SELECT p.name AS pool, v.type, v.name, v.project FROM storage_volumes v JOIN storage_pools p ON p.id = v.pool_id WHERE v.id = ? AND instr(v.name, '/') = 0",
        );
        if (r) url = `/1.0/storage-pools/${r.pool}/volumes/${r.type}/${r.name}${q(r.project)}`;
        break;
      }
    }
    if (url === undefined) throw new InternalError(`Failed to create warning: Failed to get URI for entity ID ${id} with entity type code ${type}: Unknown entity ID`);
    return url;
  }

  create(req: TestingWarningRequest): void {
    const entityType = intOrAbsent(req.entity_type_code);
    const entityId = intOrAbsent(req.entity_id);
    if (entityType !== -1 && ENTITY_NAMES[entityType] === undefined) throw new InternalError("Invalid entity type");
    const entity = this.entityUrl(entityType, entityId);
    const typeCode = req.type_code ?? 0;
    const type = ALL_WARNING_TYPES[typeCode];
    if (type === undefined) throw new InternalError(`Failed to create warning: Unknown warning type code ${typeCode}`);
    const location = req.location ?? "";
    if (location !== "" && location !== this.memberName()) throw new InternalError("Failed to create warning: Failed to get node: Node not found");
    const project = req.project ?? "";
    if (project !== "" && this.db.prepare("SELECT 1 FROM projects WHERE name = ?").get(project) === undefined) {
      throw new InternalError(`Failed to create warning: Unknown project "${project}"`);
    }
    this.warnings.record(type, req.message ?? "", { project, entity });
  }
}
