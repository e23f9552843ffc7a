// /internal/sql: ad-hoc queries and dumps for `nodelxd sql`. Upstream has a "local" and a
// "global" database; nodelxd keeps one SQLite file, which both names address.
import { BadRequest, InternalError } from "../shared/errors.js";
import type { Db } from "../db/database.js";

export const SQL_DATABASES = ["local", "global"] as const;

export interface SqlResult {
  type: "select" | "exec";
  columns: string[];
  rows: unknown[][];
  rows_affected: number;
}

function checkDatabase(database: string): void {
  if (database === "") throw new BadRequest("No database provided");
  if (!(SQL_DATABASES as readonly string[]).includes(database)) throw new BadRequest("Invalid database");
}

const sqlValue = (v: unknown): unknown => (Buffer.isBuffer(v) ? v.toString("utf8") : typeof v === "bigint" ? Number(v) : v);

function literal(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (Buffer.isBuffer(v)) return `X'${v.toString("hex")}'`;
  return `'${String(v).replace(/'/g, "''")}'`;
}

export class SqlService {
  constructor(private readonly db: Db) {}

  /** Run `;`-separated statements, each in its own transaction (selects roll back). */
  query(database: string, query: string): { Results: SqlResult[] } {
    checkDatabase(database);
    if (query === "") throw new BadRequest("No query provided");
    const results: SqlResult[] = [];
    for (const raw of query.split(";")) {
      const sql = raw.replace(/^\s+/, "");
      if (sql.trim() === "") continue;
      try {
        if (sql.toUpperCase().startsWith("SELECT")) {
          const stmt = this.db.prepare(sql);
          const columns = stmt.columns().map((c) => c.name);
          const rows = (stmt.raw(true).all() as unknown[][]).map((r) => r.map(sqlValue));
          results.push({ type: "select", columns, rows, rows_affected: 0 });
        } else {
          const info = this.db.transaction(() => this.db.prepare(sql).run())();
          results.push({ type: "exec", columns: [], rows: [], rows_affected: info.changes });
        }
      } catch (e) {
        throw new InternalError((e as Error).message);
      }
    }
    return { Results: results };
  }

  /** The database as SQL text (schema only, or schema and rows), as `sqlite3 .dump` writes it. */
  dump(database: string, schemaOnly: boolean): { text: string } {
    checkDatabase(database);
    const objects = this.db
      .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, name")
      .all() as { type: string; name: string; tbl_name: string; sql: string }[];
    const lines = ["PRAGMA foreign_keys=OFF;", "BEGIN TRANSACTION;"];
    for (const o of objects) {
      lines.push(`${o.sql};`);
      if (schemaOnly || o.type !== "table") continue;
      const rows = this.db.prepare(`SELECT * FROM "${o.name.replace(/"/g, '""')}"`).raw(true).all() as unknown[][];
      for (const r of rows) lines.push(`INSERT INTO ${o.name} VALUES(${r.map(literal).join(",")});`);
    }
    lines.push("COMMIT;");
    return { text: lines.join("\n") + "\n" };
  }
}
