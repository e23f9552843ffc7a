// /internal/sql: ad-hoc queries and dumps for `nodelxd sql`, as LXD 5.0.2's internalSQLGet/Post.
// "global" is the global database (`database/global/db.bin`), "local" the node-local one
// (`database/local.db`), each through a connection where its own tables are the main ones.
import { BadRequest, InternalError } from "../shared/errors.js";
import { localConnection, type Db } from "../db/database.js";
import { withDqsFallback } from "../db/dqs.js";

export const SQL_DATABASES = ["local", "global"] as const;
type SqlDatabase = (typeof SQL_DATABASES)[number];

export interface SqlResult {
  type: "select" | "exec";
  columns: string[] | null;
  rows: unknown[][] | null;
  rows_affected: number;
}

function checkDatabase(database: string): asserts database is SqlDatabase {
  if (!(SQL_DATABASES as readonly string[]).includes(database)) throw new BadRequest("Invalid database");
}

const sqlValue = (v: unknown): unknown => (Buffer.isBuffer(v) ? v.toString("utf8") : typeof v === "bigint" ? Number(v) : v);

/** A value as LXD's dump writes it (lxd/db/query/dump.go, after sqlite3's dump_callback). */
function literal(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (Buffer.isBuffer(v)) return `'${v.toString("utf8")}'`;
  let s = `'${String(v).replace(/'/g, "''")}'`;
  if (s.includes("\r")) s = `replace(${s.replace(/\r/g, "\\r")},'\\r',char(13))`;
  if (s.includes("\n")) s = `replace(${s.replace(/\n/g, "\\n")},'\\n',char(10))`;
  return s;
}

const quoteName = (n: string) => `"${n.replace(/"/g, '""')}"`;

export class SqlService {
  constructor(private readonly db: Db) {}

  private connection(database: SqlDatabase): Db {
    return database === "global" ? this.db : localConnection(this.db);
  }

  /** Run `;`-separated statements, each in its own transaction (selects roll back); `.sync` writes the global file out. */
  query(database: string, query: string): { Results: SqlResult[] | null } {
    checkDatabase(database);
    if (query === "") throw new BadRequest("No query provided");
    const db = this.connection(database);
    if (query === ".sync") {
      // LXD copies its dqlite database to database/global/db.bin; ours is that file: fold the WAL in.
      this.db.pragma("main.wal_checkpoint(TRUNCATE)");
      return { Results: null };
    }
    const results: SqlResult[] = [];
    for (const raw of query.split(";")) {
      const sql = raw.replace(/^ +/, "");
      if (sql === "") continue;
      if (sql.toUpperCase().startsWith("SELECT")) {
        let stmt;
        try {
          stmt = withDqsFallback(sql, (text) => db.prepare(text));
        } catch (e) {
          throw new InternalError(`Failed to execute query: ${(e as Error).message}`);
        }
        let rows: unknown[][];
        try {
          rows = stmt.reader ? (stmt.raw(true).all() as unknown[][]).map((r) => r.map(sqlValue)) : (stmt.run(), []);
        } catch (e) {
          throw new InternalError(`Failed to scan row: ${(e as Error).message}`);
        }
        const columns = stmt.reader ? stmt.columns().map((c) => c.name) : [];
        results.push({ type: "select", columns, rows: rows.length ? rows : null, rows_affected: 0 });
      } else {
        let changes: number;
        const total = db.prepare("SELECT total_changes()").pluck();
        try {
          changes = withDqsFallback(sql, (text) =>
            db.transaction(() => {
              const stmt = db.prepare(text);
              if (stmt.reader) {
                stmt.all();
                return 0;
              }
              // A write to an LXD-named view is done by its INSTEAD OF trigger, whose rows
              // changes() leaves out: count them as LXD (a real table there) would.
              const before = total.get() as number;
              const direct = stmt.run().changes;
              return direct || (total.get() as number) - before;
            })(),
          );
        } catch (e) {
          throw new InternalError(`Failed to exec query: ${(e as Error).message}`);
        }
        results.push({ type: "exec", columns: null, rows: null, rows_affected: changes });
      }
    }
    return { Results: results.length ? results : null };
  }

  /** The database as SQL text (schema only, or schema and rows), as LXD's query.Dump writes it. */
  dump(database: string, schemaOnly: boolean): { text: string } {
    checkDatabase(database);
    const db = this.connection(database);
    const read = db.transaction(() => {
      const objects = db.prepare("SELECT name, type, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND sql IS NOT NULL ORDER BY rowid").all() as { name: string; type: string; sql: string }[];
      let out = "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n";
      const rows = (table: string) => {
        for (const r of db.prepare(`SELECT * FROM ${quoteName(table)} ORDER BY rowid`).raw(true).all() as unknown[][]) {
          out += `INSERT INTO ${table} VALUES(${r.map(literal).join(",")});\n`;
        }
      };
      for (const o of objects) {
        out += `${o.sql.startsWith('CREATE TABLE "') ? o.sql.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS") : o.sql};\n`;
        if (!schemaOnly && o.type === "table") rows(o.name);
      }
      if (!schemaOnly && db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").get()) {
        out += "DELETE FROM sqlite_sequence;\n";
        rows("sqlite_sequence");
      }
      return out + "COMMIT;\n";
    });
    return { text: read.deferred() };
  }
}
