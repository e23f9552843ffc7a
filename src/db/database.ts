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

export function schemaVersion(db: Db): number {
  return (db.pragma("user_version", { simple: true }) as number) ?? 0;
}

export function migrate(db: Db, migrations: Migration[]): number[] {
  const applied: number[] = [];
  const current = schemaVersion(db);
  const pending = [...migrations].sort((a, b) => a.version - b.version).filter((m) => m.version > current);
  for (const m of pending) {
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
    applied.push(m.version);
  }
  return applied;
}
