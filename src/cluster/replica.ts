// This member's SQLite as a replica of the cluster's global state. Every committed group of
// global writes made here is appended to the etcd statement log at the next index (a create-only
// txn: an index is written once); every entry another member appended is replayed here, in log
// order, in one SQLite transaction that also records the applied index (crash-safe: an entry is
// applied entirely or not at all, and never twice). A member that was away past the log's
// compaction point loads the snapshot first.
//
// Writers are serialised cluster-wide by the write lock (see router.ts): while a member holds it,
// its local order is the log order. A write made without the lock (background work on this
// member's own instances) that loses an index race is appended at the next free index and logged.
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Watcher } from "etcd3";
import type { Db } from "../db/database.js";
import { decodeParams, installCapture, LOCAL_CONFIG_KEYS, LOCAL_TABLES, writtenTable, type Capture, type Stmt } from "./capture.js";
import type { ClusterStore, LogEntry, Snapshot } from "./store.js";

/** Compact the log (snapshot + delete) every this many entries. */
export const COMPACT_EVERY = 500;

export function localGet(db: Db, key: string): string | undefined {
  return (db.prepare("SELECT value FROM cluster_local WHERE key = ?").get(key) as { value: string } | undefined)?.value;
}

export function localSet(db: Db, key: string, value: string): void {
  db.prepare("INSERT INTO cluster_local (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(key, value);
}

function globalTables(db: Db): string[] {
  const rows = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[];
  return rows.map((r) => r.name).filter((n) => !LOCAL_TABLES.has(n) && (!n.startsWith("sqlite_") || n === "sqlite_sequence"));
}

const encodeValue = (v: unknown) => (Buffer.isBuffer(v) ? { $buf: v.toString("base64") } : typeof v === "bigint" ? Number(v) : v);

/** Every global table's rows (the local config keys left out). */
export function takeSnapshot(db: Db, index: number): Snapshot {
  const tables: Snapshot["tables"] = {};
  for (const t of globalTables(db)) {
    const rows = db.prepare(`SELECT * FROM "${t}"`).all() as Record<string, unknown>[];
    tables[t] = rows
      .filter((r) => !(t === "config" && LOCAL_CONFIG_KEYS.has(String(r.key))))
      .map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, encodeValue(v)])));
  }
  return { index, tables };
}

/** Keep the member-local server keys across a replay of `config` writes. */
function preservingLocalConfig(db: Db, touchesConfig: boolean, fn: () => void): void {
  if (!touchesConfig) return fn();
  const saved = (db.prepare("SELECT key, value FROM config").all() as { key: string; value: string }[]).filter((r) => LOCAL_CONFIG_KEYS.has(r.key));
  fn();
  for (const k of LOCAL_CONFIG_KEYS) db.prepare("DELETE FROM config WHERE key = ?").run(k);
  for (const r of saved) db.prepare("INSERT INTO config (key, value) VALUES (?, ?)").run(r.key, r.value);
}

export interface ReplicaOptions {
  db: Db;
  store: ClusterStore;
  member: () => string;
  log: Logger;
  /** Called after foreign writes were applied, with the tables they touched (cache invalidation). */
  onApplied(tables: Set<string>): void;
}

export class Replica {
  private capture?: Capture;
  private watcher?: Watcher;
  private applied = 0;
  private ownIds = new Set<string>();
  private appending: Promise<void> = Promise.resolve();
  private waiters: { index: number; resolve: () => void }[] = [];
  private pending = new Map<number, LogEntry>();

  constructor(private readonly o: ReplicaOptions) {}

  get appliedIndex(): number {
    return this.applied;
  }

  /**
   * Catch up (snapshot when the log no longer reaches back to our index, or `fresh`) and
   * follow the log; from then on this member's global writes are captured and appended.
   */
  async start(opts: { fresh?: boolean } = {}): Promise<void> {
    const { db, store } = this.o;
    this.applied = Number(localGet(db, "applied_index") ?? "0");
    const snap = await store.snapshot();
    if (!snap) throw new Error("The cluster has no snapshot in etcd");
    let { entries, revision } = await store.entriesAfter(this.applied);
    const first = entries[0]?.index;
    if (opts.fresh || this.applied < snap.index || (first !== undefined && first > this.applied + 1)) {
      if (!opts.fresh) this.o.log.info({ applied: this.applied, snapshot: snap.index }, "cluster log compacted past this member's index: loading the snapshot");
      this.loadSnapshot(snap);
      ({ entries, revision } = await store.entriesAfter(this.applied));
    }
    for (const e of entries) this.receive(e.index, e.entry);
    this.capture = installCapture(db, (stmts) => this.enqueue(stmts));
    this.watcher = await store.watchLog(String(Number(revision) + 1), (index, entry) => this.receive(index, entry));
  }

  async stop(): Promise<void> {
    await this.flush().catch(() => undefined);
    this.capture?.uninstall();
    this.capture = undefined;
    await this.watcher?.cancel().catch(() => undefined);
  }

  /** Resolves once every write captured so far is in the log. */
  flush(): Promise<void> {
    return this.appending;
  }

  /** Resolves once the log up to `index` is applied here. */
  waitFor(index: number): Promise<void> {
    if (this.applied >= index) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ index, resolve }));
  }

  /** Catch up with the log's head (called with the write lock held, before writing). */
  async catchUp(): Promise<void> {
    const head = await this.o.store.head();
    if (head.index > this.applied) {
      // The watch may lag or have missed entries (reconnects): read what is missing directly.
      const { entries } = await this.o.store.entriesAfter(this.applied);
      for (const e of entries) this.receive(e.index, e.entry);
    }
    await this.waitFor(head.index);
  }

  loadSnapshot(snap: Snapshot): void {
    const { db } = this.o;
    const apply = () =>
      db.transaction(() => {
        db.pragma("defer_foreign_keys = ON");
        preservingLocalConfig(db, true, () => {
          const tables = globalTables(db);
          for (const t of tables) db.prepare(`DELETE FROM "${t}"`).run();
          for (const t of tables) {
            for (const row of snap.tables[t] ?? []) {
              const cols = Object.keys(row);
              if (cols.length === 0) continue;
              db.prepare(`INSERT INTO "${t}" (${cols.map((c) => `"${c}"`).join(", ")}) VALUES (${cols.map(() => "?").join(", ")})`).run(
                ...decodeParams(Object.values(row)),
              );
            }
          }
        });
        localSet(db, "applied_index", String(snap.index));
      })();
    if (this.capture) this.capture.suspended(apply);
    else apply();
    this.applied = snap.index;
    this.o.onApplied(new Set(Object.keys(snap.tables)));
    this.wake();
  }

  /** An entry from the log (watch or catch-up read), applied in index order. */
  private receive(index: number, entry: LogEntry): void {
    if (index <= this.applied) return;
    this.pending.set(index, entry);
    const touched = new Set<string>();
    for (let next = this.pending.get(this.applied + 1); next; next = this.pending.get(this.applied + 1)) {
      const i = this.applied + 1;
      this.pending.delete(i);
      if (this.ownIds.delete(next.id)) {
        // Our own write, already in this database.
        localSet(this.o.db, "applied_index", String(i));
      } else {
        this.applyForeign(i, next, touched);
      }
      this.applied = i;
    }
    if (touched.size) this.o.onApplied(touched);
    this.wake();
  }

  private applyForeign(index: number, entry: LogEntry, touched: Set<string>): void {
    const { db, log } = this.o;
    const tables = entry.stmts.map(([sql]) => writtenTable(sql) ?? "*");
    const run = () =>
      db.transaction(() => {
        preservingLocalConfig(db, tables.includes("config") || tables.includes("*"), () => {
          for (const [sql, params] of entry.stmts) {
            if (params === null) db.exec(sql);
            else db.prepare(sql).run(...decodeParams(params));
          }
        });
        localSet(db, "applied_index", String(index));
      })();
    try {
      if (this.capture) this.capture.suspended(run);
      else run();
      for (const t of tables) touched.add(t);
    } catch (err) {
      // A statement that cannot replay here (this replica diverged): skip it, loudly.
      log.error({ err, index, member: entry.member }, "cannot apply cluster log entry; skipped");
      localSet(db, "applied_index", String(index));
    }
  }

  private wake(): void {
    const ready = this.waiters.filter((w) => w.index <= this.applied);
    this.waiters = this.waiters.filter((w) => w.index > this.applied);
    for (const w of ready) w.resolve();
  }

  private enqueue(stmts: Stmt[]): void {
    const entry: LogEntry = { member: this.o.member(), id: randomUUID(), stmts };
    this.ownIds.add(entry.id);
    this.appending = this.appending.then(() => this.append(entry)).catch((err) => this.o.log.error({ err }, "cannot append to the cluster log"));
  }

  private async append(entry: LogEntry): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const index = this.applied + 1;
      if (await this.o.store.append(index, entry)) {
        // The watch may already have delivered it (then it is applied and recorded).
        if (this.applied < index) this.receive(index, entry);
        if (index % COMPACT_EVERY === 0) void this.compact(index);
        return;
      }
      if (attempt === 0) this.o.log.warn({ index }, "cluster log index taken by another member (write outside the lock); appending after it");
      // Someone else wrote `index`: apply it, then take the next one.
      const { entries } = await this.o.store.entriesAfter(this.applied);
      for (const e of entries) this.receive(e.index, e.entry);
      await this.waitFor(index);
    }
  }

  /** Snapshot at `index` and drop the entries it covers (keeping a margin for members just behind). */
  private async compact(index: number): Promise<void> {
    try {
      if (this.applied !== index || this.ownIds.size > 0) return;
      await this.o.store.putSnapshot(takeSnapshot(this.o.db, index));
      await this.o.store.compact(index - 50);
    } catch (err) {
      this.o.log.warn({ err }, "cluster log compaction failed");
    }
  }
}
