// The local SQLite database: WAL, full sync (a change is on disk before we acknowledge it),
// numbered migrations each applied in its own transaction.
import Database from "better-sqlite3";
import { migrations as defaultMigrations, type Migration } from "./migrations.js";

export type Db = Database.Database;

export function openDatabase(file: string, migrations: Migration[] = defaultMigrations): Db {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db, migrations);
  return db;
}

/**
 * Apply every migration not yet recorded, in version order. Applied ones are tracked by
 * version in schema_migrations (not a single high-water mark), so migrations written on
 * parallel branches apply whatever order they merge in.
 */
export function migrate(db: Db, migrations: Migration[]): number[] {
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)");
  const done = new Set((db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map((r) => r.version));
  const applied: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (done.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(m.version, m.name, new Date().toISOString());
    })();
    applied.push(m.version);
  }
  return applied;
}

const members = new WeakMap<Db, string>();

/** The cluster member this database belongs to ("" standalone); new instance rows record it. */
export function localMember(db: Db): string {
  return members.get(db) ?? "";
}

export function setLocalMember(db: Db, name: string): void {
  members.set(db, name);
}
