// Background operations: recorded in SQLite, run in-process, observable through
// /1.0/operations, /wait, the events stream and (websocket class) /websocket.
import { randomUUID, timingSafeEqual } from "node:crypto";
import type { Logger } from "pino";
import type { Db } from "../db/database.js";
import { BadRequest, Forbidden, NotFound } from "../shared/errors.js";
import type { EventHub } from "./events.js";
import { OperationStatus, type OperationClass, type OperationStatusName, type OperationView } from "./types.js";

/** How long a finished operation stays listed, as upstream. */
export const FINISHED_RETENTION_MS = 5000;
/** How long an operation a crash interrupted answers as failed after the next start. */
export const INTERRUPTED_RETENTION_MS = 60_000;

export interface OperationContext {
  readonly id: string;
  readonly signal: AbortSignal;
  /** Merge keys into the operation's metadata (progress reporting). */
  updateMetadata(patch: Record<string, unknown>): void;
}

export interface WebsocketLike {
  close(code?: number, reason?: string): void;
}

export interface OperationSpec {
  class: OperationClass;
  description: string;
  project?: string;
  resources?: Record<string, string[]>;
  metadata?: Record<string, unknown>;
  mayCancel?: boolean;
  /** The work. Its resolved value, if an object, is merged into the metadata. */
  run?: (ctx: OperationContext) => Promise<Record<string, unknown> | void>;
  /** Websocket-class operations: a client connected with `secret`. Throw to refuse. */
  connect?: (secret: string, socket: WebsocketLike) => void | Promise<void>;
  /**
   * Websocket-class operations: the secret of each fd. The manager checks a connecting
   * client's secret against them (constant time) before the upgrade, and each works once.
   */
  secrets?: Record<string, string>;
  /** Only unrestricted clients may see it (listings, GET, events): its metadata holds a credential. */
  adminOnly?: boolean;
}

/** Who an operation belongs to, for deciding who may see it. */
export interface OperationOwner {
  project: string;
  adminOnly: boolean;
}

interface Live {
  view: OperationView;
  spec: OperationSpec;
  /** fds whose secret was already used. */
  claimed: Set<string>;
  abort: AbortController;
  done: Promise<void>;
  resolveDone: () => void;
}

/** Whether two secrets are equal, in time independent of where they differ. */
export function secretsEqual(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

const statusName = (code: number): OperationStatusName =>
  (Object.entries(OperationStatus).find(([, c]) => c === code)?.[0] as OperationStatusName) ?? "Failure";

export class OperationManager {
  /** The member name operations carry (`location`); "none" on a standalone daemon. */
  location = "none";
  /** Told when an operation appears and when it is forgotten (the cluster's operation index). */
  hooks?: { created(id: string): void; removed(id: string): void };
  private readonly live = new Map<string, Live>();

  constructor(
    private readonly db: Db,
    private readonly events: EventHub,
    private readonly log: Logger,
  ) {}

  /** Operations a previous daemon left running, failed at this start and listed for a while. */
  private interruptedIds: string[] = [];

  /**
   * Operations left running by a previous daemon were interrupted: fail them, keep them
   * answering (as failed) for INTERRUPTED_RETENTION_MS — the client that waited on one lost its
   * connection with the daemon and asks again once it is back — then forget them.
   */
  recoverInterrupted(): number {
    const now = new Date().toISOString();
    this.interruptedIds = (this.db.prepare("SELECT id FROM operations WHERE status_code < 200").all() as { id: string }[]).map((r) => r.id);
    const res = this.db
      .prepare("UPDATE operations SET status_code = ?, err = ?, updated_at = ? WHERE status_code < 200")
      .run(OperationStatus.Failure, "Operation interrupted by a daemon restart", now);
    // Rows of operations that had finished before the crash go at once (as they would have).
    this.db.prepare(`DELETE FROM operations WHERE status_code >= 200 AND id NOT IN (SELECT value FROM json_each(?))`).run(JSON.stringify(this.interruptedIds));
    setTimeout(() => {
      // The daemon may have stopped (and closed the database) by the time this fires.
      if (this.db.open) this.db.prepare("DELETE FROM operations WHERE status_code >= 200 AND id IN (SELECT value FROM json_each(?))").run(JSON.stringify(this.interruptedIds));
      for (const id of this.interruptedIds) this.hooks?.removed(id);
      this.interruptedIds = [];
    }, INTERRUPTED_RETENTION_MS).unref();
    return res.changes;
  }

  /** The interrupted operations still answering as failed (the cluster indexes them). */
  interrupted(): string[] {
    return [...this.interruptedIds];
  }

  create(spec: OperationSpec): OperationView {
    const now = new Date().toISOString();
    const view: OperationView = {
      id: randomUUID(),
      class: spec.class,
      description: spec.description,
      created_at: now,
      updated_at: now,
      status: "Running",
      status_code: OperationStatus.Running,
      resources: spec.resources ?? null,
      metadata: spec.metadata ?? null,
      may_cancel: spec.mayCancel ?? false,
      err: "",
      location: this.location,
    };
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    const entry: Live = { view, spec, claimed: new Set(), abort: new AbortController(), done, resolveDone };
    this.db
      .prepare(
        `INSERT INTO operations (id, project, class, description, created_at, updated_at, status_code, resources, metadata, may_cancel, err)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')`,
      )
      .run(view.id, spec.project ?? "default", view.class, view.description, now, now, view.status_code, JSON.stringify(view.resources), JSON.stringify(view.metadata), view.may_cancel ? 1 : 0);
    this.live.set(view.id, entry);
    this.hooks?.created(view.id);
    this.emit(entry);
    if (spec.run) queueMicrotask(() => void this.execute(entry));
    return { ...view };
  }

  private async execute(entry: Live): Promise<void> {
    const ctx: OperationContext = {
      id: entry.view.id,
      signal: entry.abort.signal,
      updateMetadata: (patch) => {
        entry.view.metadata = { ...(entry.view.metadata ?? {}), ...patch };
        // Progress of a running operation goes to its listeners only: the row is read only once
        // the operation is no longer live (after a restart, which fails it), and its commit
        // waited for an fsync on the event loop at every report. finish() writes the row.
        this.touch(entry, false);
      },
    };
    try {
      const result = await entry.spec.run!(ctx);
      if (result && typeof result === "object") entry.view.metadata = { ...(entry.view.metadata ?? {}), ...result };
      this.finish(entry, entry.abort.signal.aborted ? "Cancelled" : "Success", "");
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.finish(entry, entry.abort.signal.aborted ? "Cancelled" : "Failure", message);
    }
  }

  /** Settles when the operation finishes (at once for one unknown here). */
  whenDone(id: string): Promise<void> {
    return this.live.get(id)?.done ?? Promise.resolve();
  }

  /** End an operation whose work is driven outside `run` (e.g. websocket sessions). */
  complete(id: string, err?: string, metadata?: Record<string, unknown>): void {
    const entry = this.live.get(id);
    if (!entry || entry.view.status_code >= 200) return;
    if (metadata) entry.view.metadata = { ...(entry.view.metadata ?? {}), ...metadata };
    this.finish(entry, err ? "Failure" : "Success", err ?? "");
  }

  private finish(entry: Live, status: OperationStatusName, err: string): void {
    entry.view.status = status;
    entry.view.status_code = OperationStatus[status];
    entry.view.err = err;
    entry.view.may_cancel = false;
    this.touch(entry);
    entry.resolveDone();
    if (err) this.log.debug({ op: entry.view.id, err }, "operation failed");
    setTimeout(() => {
      this.live.delete(entry.view.id);
      this.hooks?.removed(entry.view.id);
      // The daemon may have stopped (and closed the database) meanwhile; start-up clears old rows.
      if (this.db.open) this.db.prepare("DELETE FROM operations WHERE id = ?").run(entry.view.id);
    }, FINISHED_RETENTION_MS).unref();
  }

  private touch(entry: Live, persist = true): void {
    entry.view.updated_at = new Date().toISOString();
    // Clients waiting on the event need not wait for the commit's fsync too: the live entry
    // already answers GET, and the row only matters for operations across a restart.
    this.emit(entry);
    if (!persist) return;
    this.db
      .prepare("UPDATE operations SET status_code = ?, metadata = ?, may_cancel = ?, err = ?, updated_at = ? WHERE id = ?")
      .run(entry.view.status_code, JSON.stringify(entry.view.metadata), entry.view.may_cancel ? 1 : 0, entry.view.err, entry.view.updated_at, entry.view.id);
  }

  private emit(entry: Live): void {
    this.events.publish("operation", { ...entry.view }, entry.spec.project ?? "default", { adminOnly: entry.spec.adminOnly });
  }

  get(id: string): OperationView {
    const entry = this.live.get(id);
    if (entry) return { ...entry.view };
    const row = this.db.prepare("SELECT * FROM operations WHERE id = ?").get(id) as OperationRow | undefined;
    if (!row) throw new NotFound("Operation not found");
    return rowToView(row, this.location);
  }

  /** The project an operation belongs to and whether only admins may see it; throws NotFound. */
  owner(id: string): OperationOwner {
    const entry = this.live.get(id);
    if (entry) return { project: entry.spec.project ?? "default", adminOnly: entry.spec.adminOnly === true };
    const row = this.db.prepare("SELECT project, class FROM operations WHERE id = ?").get(id) as { project: string; class: string } | undefined;
    if (!row) throw new NotFound("Operation not found");
    return { project: row.project, adminOnly: row.class === "token" };
  }

  /**
   * A client wants to connect to a websocket operation with `secret`: which fd it opens.
   * The secret must match one of the operation's fds (compared in constant time) whose secret
   * was not used yet; a wrong, reused or stale secret is refused with 403 before any upgrade.
   */
  claim(id: string, secret: string): string {
    const entry = this.live.get(id);
    if (!entry) {
      this.get(id);
      throw new Forbidden("permission denied");
    }
    const secrets = entry.spec.secrets ?? {};
    let found: string | undefined;
    for (const [fd, expected] of Object.entries(secrets)) {
      // Every fd's secret is compared (no early exit), so timing tells nothing about any of them.
      if (secretsEqual(secret, expected) && found === undefined) found = fd;
    }
    if (entry.view.class !== "websocket" || entry.view.status_code >= 200 || found === undefined || entry.claimed.has(found)) {
      throw new Forbidden("permission denied");
    }
    entry.claimed.add(found);
    return found;
  }

  /** All listed operations, optionally for one project. */
  list(project?: string): OperationView[] {
    const rows = (project === undefined
      ? this.db.prepare("SELECT * FROM operations ORDER BY created_at").all()
      : this.db.prepare("SELECT * FROM operations WHERE project = ? ORDER BY created_at").all(project)) as OperationRow[];
    return rows.map((r) => (this.live.has(r.id) ? { ...this.live.get(r.id)!.view } : rowToView(r, this.location)));
  }

  /** Wait until the operation ends or `timeoutSeconds` pass (-1: no limit); returns its state then. */
  async wait(id: string, timeoutSeconds: number, signal?: AbortSignal): Promise<OperationView> {
    const entry = this.live.get(id);
    if (!entry) return this.get(id);
    if (entry.view.status_code < 200) {
      const waits: Promise<unknown>[] = [entry.done];
      let timer: NodeJS.Timeout | undefined;
      if (timeoutSeconds >= 0) waits.push(new Promise((r) => (timer = setTimeout(r, timeoutSeconds * 1000))));
      if (signal) waits.push(new Promise((r) => signal.addEventListener("abort", r, { once: true })));
      await Promise.race(waits);
      if (timer) clearTimeout(timer);
    }
    return { ...entry.view };
  }

  async cancel(id: string): Promise<void> {
    const entry = this.live.get(id);
    if (!entry) {
      this.get(id);
      throw new BadRequest("Only running operations can be cancelled");
    }
    if (entry.view.status_code >= 200) throw new BadRequest("Only running operations can be cancelled");
    if (!entry.view.may_cancel) throw new BadRequest("This operation can't be cancelled");
    entry.view.status = "Cancelling";
    entry.view.status_code = OperationStatus.Cancelling;
    this.touch(entry);
    entry.abort.abort();
    if (!entry.spec.run) this.finish(entry, "Cancelled", "");
    await entry.done;
  }

  /** Route a websocket connection to its operation. */
  async connect(id: string, secret: string, socket: WebsocketLike): Promise<void> {
    const entry = this.live.get(id);
    if (!entry) {
      this.get(id);
      throw new BadRequest("Operation is not running");
    }
    if (entry.view.class !== "websocket" || !entry.spec.connect) throw new BadRequest("Only websocket operations can be connected");
    await entry.spec.connect(secret, socket);
  }

  /** Cancel every running operation (daemon shutdown). */
  abortAll(): void {
    for (const entry of this.live.values()) entry.abort.abort();
  }
}

interface OperationRow {
  id: string;
  project: string;
  class: OperationClass;
  description: string;
  created_at: string;
  updated_at: string;
  status_code: number;
  resources: string | null;
  metadata: string | null;
  may_cancel: number;
  err: string;
}

function rowToView(r: OperationRow, location: string): OperationView {
  return {
    id: r.id,
    class: r.class,
    description: r.description,
    created_at: r.created_at,
    updated_at: r.updated_at,
    status: statusName(r.status_code),
    status_code: r.status_code,
    resources: r.resources ? JSON.parse(r.resources) : null,
    metadata: r.metadata ? JSON.parse(r.metadata) : null,
    may_cancel: r.may_cancel === 1,
    err: r.err,
    location,
  };
}
