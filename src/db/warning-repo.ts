// Warnings the daemon records about its environment (GET /1.0/warnings).
import { randomUUID } from "node:crypto";
import type { Db } from "./database.js";

export const WarningStatus = { new: 1, acknowledged: 2, resolved: 3 } as const;
export const WarningSeverity = { low: 1, moderate: 2, high: 3 } as const;
export type WarningStatusName = keyof typeof WarningStatus;
type SeverityName = keyof typeof WarningSeverity;

export interface WarningView {
  uuid: string;
  location: string;
  project: string;
  type: string;
  count: number;
  first_seen_at: string;
  last_seen_at: string;
  last_message: string;
  severity: SeverityName;
  status: WarningStatusName;
  entity_url: string;
}

interface Row {
  uuid: string;
  project: string;
  entity_url: string;
  type: string;
  type_code: number;
  status_code: number;
  severity_code: number;
  last_message: string;
  count: number;
  first_seen_at: string;
  last_seen_at: string;
}

const nameOf = <K extends string>(table: Record<K, number>, code: number): K => (Object.keys(table) as K[]).find((k) => table[k] === code)!;

/** Fields in LXD 5.0.2's order (api.Warning: status first, from the embedded WarningPut). */
function view(r: Row): WarningView {
  return {
    status: nameOf(WarningStatus, r.status_code),
    uuid: r.uuid,
    location: "none",
    project: r.project,
    type: r.type,
    count: r.count,
    first_seen_at: r.first_seen_at,
    last_seen_at: r.last_seen_at,
    last_message: r.last_message,
    severity: nameOf(WarningSeverity, r.severity_code),
    entity_url: r.entity_url,
  };
}

export class WarningRepo {
  constructor(private readonly db: Db) {}

  /** Record (or bump) a warning of a given type; one row per type, project and entity. */
  record(type: { code: number; name: string; severity: SeverityName }, message: string, opts: { project?: string; entity?: string } = {}): void {
    const now = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO warnings (uuid, project, entity_url, type, type_code, status_code, severity_code, last_message, count, first_seen_at, last_seen_at)
         VALUES (?, ?, ?, ?, ?, 1, ?, ?, 1, ?, ?)
         ON CONFLICT (type_code, project, entity_url) DO UPDATE SET count = count + 1, last_message = excluded.last_message,
           last_seen_at = excluded.last_seen_at, status_code = CASE WHEN status_code = 3 THEN 1 ELSE status_code END`,
      )
      .run(randomUUID(), opts.project ?? "", opts.entity ?? "", type.name, type.code, WarningSeverity[type.severity], message, now, now);
  }

  /** Resolve one entity's warning of a type (e.g. an instance that autostarted after all). */
  resolveEntity(typeCode: number, project: string, entity: string): void {
    this.db.prepare("UPDATE warnings SET status_code = 3 WHERE type_code = ? AND project = ? AND entity_url = ?").run(typeCode, project, entity);
  }

  /** As LXD at start: warnings not seen again since `since` (ISO time) are resolved. */
  resolveOlderThan(since: string): void {
    this.db.prepare("UPDATE warnings SET status_code = 3 WHERE last_seen_at < ?").run(since);
  }

  /** Mark warnings of a type resolved (the condition went away). */
  resolve(typeCode: number): void {
    this.db.prepare("UPDATE warnings SET status_code = 3 WHERE type_code = ?").run(typeCode);
  }

  list(project?: string): WarningView[] {
    const rows = (project === undefined
      ? this.db.prepare("SELECT * FROM warnings ORDER BY first_seen_at").all()
      : this.db.prepare("SELECT * FROM warnings WHERE project = ? ORDER BY first_seen_at").all(project)) as Row[];
    return rows.map(view);
  }

  get(uuid: string): WarningView | undefined {
    const row = this.db.prepare("SELECT * FROM warnings WHERE uuid = ?").get(uuid) as Row | undefined;
    return row && view(row);
  }

  setStatus(uuid: string, status: WarningStatusName): boolean {
    return this.db.prepare("UPDATE warnings SET status_code = ? WHERE uuid = ?").run(WarningStatus[status], uuid).changes > 0;
  }

  delete(uuid: string): boolean {
    return this.db.prepare("DELETE FROM warnings WHERE uuid = ?").run(uuid).changes > 0;
  }
}
