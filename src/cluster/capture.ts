// Write capture: on a clustered member, every write statement to a global table (its SQL and
// bound parameters) is recorded per transaction, so the same statements can be replayed in the
// same order on every other member's SQLite (deterministic replay; see replica.ts). A standalone
// daemon never installs this: its Db is the plain better-sqlite3 handle, untouched.
import type { Db } from "../db/database.js";

/** One replayable write: SQL text and its bound parameters (JSON-safe). */
/** One replayable write: SQL text and its bound parameters (JSON-safe); null params: `db.exec` text. */
export type Stmt = [sql: string, params: unknown[] | null];

/** Tables that belong to one member and are never replicated (LXD's local database). */
export const LOCAL_TABLES = new Set(["operations", "warnings", "schema_migrations", "cluster_local", "snapshot_schedule_runs"]);

/** Server keys that are member-local in LXD (its local `config` table). */
export { LOCAL_CONFIG_KEYS } from "../db/local-schema.js";

const WRITE_RE = /^\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s+(?:["`]?(\w+)["`]?\.)?["`]?(\w+)/i;
const ANY_WRITE_RE = /\b(?:INSERT|REPLACE|UPDATE|DELETE|CREATE|DROP|ALTER)\b/i;

/** The table a statement writes, or undefined for reads. */
export function writtenTable(sql: string): string | undefined {
  const m = WRITE_RE.exec(sql);
  if (!m) return undefined;
  return (m[1] && m[1].toLowerCase() !== "main" ? `${m[1]}.${m[2]}` : m[2]).toLowerCase();
}

/** Tables of the node-local database (`local.*`) and our member-local tables stay on this member. */
export function isLocalTable(table: string): boolean {
  return LOCAL_TABLES.has(table) || table.startsWith("local.");
}

export function isReplicated(sql: string): boolean {
  const table = writtenTable(sql);
  return table !== undefined && !isLocalTable(table);
}

/** JSON-safe parameters (better-sqlite3 binds booleans? no: numbers, strings, bigints, buffers, null). */
function encodeParams(args: unknown[]): unknown[] {
  return args.map((a) => {
    if (typeof a === "bigint") return { $bigint: a.toString() };
    if (Buffer.isBuffer(a)) return { $buf: a.toString("base64") };
    if (a !== null && typeof a === "object" && !Array.isArray(a)) {
      // Named parameters: one object.
      return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, encodeParams([v])[0]]));
    }
    return a === undefined ? null : a;
  });
}

export function decodeParams(args: unknown[]): unknown[] {
  return args.map((a) => {
    if (a !== null && typeof a === "object" && !Array.isArray(a)) {
      const o = a as Record<string, unknown>;
      if (typeof o.$bigint === "string") return BigInt(o.$bigint);
      if (typeof o.$buf === "string") return Buffer.from(o.$buf, "base64");
      return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, decodeParams([v])[0]]));
    }
    return a;
  });
}

export interface Capture {
  /** Stop capturing (restore the handle's own methods). */
  uninstall(): void;
  /** Run `fn` with capture suspended (replaying others' writes). */
  suspended<T>(fn: () => T): T;
}

/**
 * Patch `db` so that each committed group of replicated writes is handed to `onCommit` (one
 * group per outermost transaction, or per statement outside one). A transaction that throws
 * hands nothing (its statements were rolled back).
 */
export function installCapture(db: Db, onCommit: (stmts: Stmt[]) => void): Capture {
  const origPrepare = db.prepare;
  const origExec = db.exec;
  const origTransaction = db.transaction;
  let buffer: Stmt[] = [];
  let depth = 0;
  let paused = 0;

  const record = (stmt: Stmt) => {
    if (paused) return;
    if (depth > 0) buffer.push(stmt);
    else onCommit([stmt]);
  };

  db.prepare = function (this: Db, sql: string) {
    const st = origPrepare.call(db, sql);
    if (!isReplicated(sql)) return st;
    return new Proxy(st, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (prop === "run" || prop === "get" || prop === "all") {
          return (...args: unknown[]) => {
            const r = (v as (...a: unknown[]) => unknown).apply(target, args);
            record([sql, encodeParams(args)]);
            return r;
          };
        }
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  } as Db["prepare"];

  db.exec = function (this: Db, sql: string) {
    const r = origExec.call(db, sql);
    // Multi-statement text (patch files, `lxd sql`): replicate it whole when it writes a global table.
    if (ANY_WRITE_RE.test(sql) && !/^\s*(?:PRAGMA|SAVEPOINT|RELEASE|BEGIN|COMMIT|ROLLBACK)\b/i.test(sql)) {
      const table = writtenTable(sql);
      if (table === undefined || !isLocalTable(table)) record([sql, null]);
    }
    return r;
  } as Db["exec"];

  db.transaction = function (this: Db, fn: (...a: unknown[]) => unknown) {
    const tx = origTransaction.call(db, (...args: unknown[]) => {
      const mark = buffer.length;
      depth++;
      try {
        return fn(...args);
      } catch (e) {
        buffer.length = mark;
        throw e;
      } finally {
        depth--;
      }
    });
    const wrap = (variant: (...a: unknown[]) => unknown) => (...args: unknown[]) => {
      const outer = depth === 0;
      const r = variant(...args);
      if (outer && buffer.length > 0) {
        const stmts = buffer;
        buffer = [];
        onCommit(stmts);
      }
      return r;
    };
    const out = wrap(tx) as ReturnType<Db["transaction"]>;
    for (const k of ["deferred", "immediate", "exclusive"] as const) (out as unknown as Record<string, unknown>)[k] = wrap(tx[k]);
    return out;
  } as Db["transaction"];

  return {
    uninstall() {
      db.prepare = origPrepare;
      db.exec = origExec;
      db.transaction = origTransaction;
    },
    suspended<T>(fn: () => T): T {
      paused++;
      try {
        return fn();
      } finally {
        paused--;
      }
    },
  };
}
