// The daemon's SQLite databases, in LXD's layout: the global database (`database/global/db.bin`,
// everything a cluster shares) is the connection's main schema; the node-local one
// (`database/local.db`: this member's server keys, applied patches, raft nodes, LXD's `schema`)
// is attached to it as `local`, so unqualified names resolve to the global tables first.
// Both run WAL with full sync (a change is on disk before we acknowledge it); the numbered
// migrations a start finds pending are applied together in one transaction.
import Database from "better-sqlite3";
import { migrations as defaultMigrations, type Migration } from "./migrations.js";
import { ensureLocalSchema, moveLocalConfig } from "./local-schema.js";

export type Db = Database.Database;

export interface OpenOptions {
  /** The node-local database file (default: `<file>-local.db` beside a lone test database). */
  localFile?: string;
}

function tune(db: Db, schema = "main"): void {
  db.pragma(`${schema}.journal_mode = WAL`);
  db.pragma(`${schema}.synchronous = FULL`);
}

const STATEMENT_CACHE_SIZE = 512;

/**
 * Make `db.prepare` reuse compiled statements: repositories prepare their SQL on every call, and
 * compiling it was a large part of listing many instances. A reused statement is handed out in
 * its default row mode (no raw, pluck or expand left over from an earlier user). Dynamically
 * built SQL cannot grow the cache past its size: the oldest entry goes first.
 */
function cacheStatements(db: Db): void {
  const prepare = db.prepare.bind(db);
  const cache = new Map<string, Database.Statement>();
  db.prepare = ((sql: string) => {
    let st = cache.get(sql);
    if (st) {
      if (st.reader) st.raw(false).pluck(false).expand(false);
      return st;
    }
    st = prepare(sql);
    if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
    cache.set(sql, st);
    return st;
  }) as Db["prepare"];
}

export function openDatabase(file: string, migrations: Migration[] = defaultMigrations, opts: OpenOptions = {}): Db {
  const db = new Database(file);
  cacheStatements(db);
  const localFile = opts.localFile ?? `${file}-local.db`;
  try {
    tune(db);
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    db.prepare("ATTACH DATABASE ? AS local").run(localFile);
    tune(db, "local");
    ensureLocalSchema(db);
    migrate(db, migrations);
    moveLocalConfig(db);
  } catch (e) {
    db.close();
    throw e;
  }
  localFiles.set(db, localFile);
  return db;
}

/**
 * Apply every migration not yet recorded, in version order. Applied ones are tracked by
 * version in schema_migrations (not a single high-water mark), so migrations written on
 * parallel branches apply whatever order they merge in. All pending ones commit together
 * (all or none): a new database is one synced commit instead of one per migration (~30 at
 * first start, each a WAL fsync).
 */
export function migrate(db: Db, migrations: Migration[]): number[] {
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)");
  const done = new Set((db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map((r) => r.version));
  const pending = [...migrations].sort((a, b) => a.version - b.version).filter((m) => !done.has(m.version));
  if (pending.length === 0) return [];
  db.transaction(() => {
    for (const m of pending) {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(m.version, m.name, new Date().toISOString());
    }
  })();
  return pending.map((m) => m.version);
}

const localFiles = new WeakMap<Db, string>();
const localConnections = new WeakMap<Db, Db>();

/** The node-local database file attached to `db`. */
export function localDatabaseFile(db: Db): string {
  const f = localFiles.get(db);
  if (f === undefined) throw new Error("not a database opened by openDatabase");
  return f;
}

/**
 * A connection of its own to the node-local database, where unqualified names are the local
 * tables (`lxd sql local`, `patch.local.sql`). Opened on first use, closed with `closeDatabase`.
 */
export function localConnection(db: Db): Db {
  let c = localConnections.get(db);
  if (!c) {
    c = new Database(localDatabaseFile(db));
    c.pragma("busy_timeout = 5000");
    c.pragma("synchronous = FULL");
    localConnections.set(db, c);
  }
  return c;
}

/** Close `db` and its node-local connection. */
export function closeDatabase(db: Db): void {
  localConnections.get(db)?.close();
  localConnections.delete(db);
  if (db.open) db.close();
}

const members = new WeakMap<Db, string>();

/** The cluster member this database belongs to ("" standalone); new instance rows record it. */
export function localMember(db: Db): string {
  return members.get(db) ?? "";
}

export function setLocalMember(db: Db, name: string): void {
  members.set(db, name);
}
