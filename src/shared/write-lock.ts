// A clustered member serves a mutating request holding the cluster-wide write lock, and keeps it
// until the request's operation ends (cluster/router.ts), so that members never interleave global
// writes. Parts of an operation that take long and write no global rows — downloading an image,
// writing a backup tarball, building a published image — run outside that lock through
// `outsideWriteLock`: the lock is handed back for their length (this member's writes so far sent
// to the log first) and taken again, the replica caught up, before the operation writes again.
// Other members' writes then wait for milliseconds, not for the download. On a standalone daemon,
// and for work no locked request started, `fn` simply runs.
import { AsyncLocalStorage } from "node:async_hooks";

/** The write lock a request holds, as the work it started sees it. */
export interface WriteLockHold {
  /** Hand the lock back (once this member's writes are in the log). */
  suspend(): Promise<void>;
  /** Take it again and catch up with what others wrote meanwhile. */
  resume(): Promise<void>;
  /** Work that writes: hold the lock (taken again within a stretch outside it) until `leave`, even past the request's end. */
  enter(): Promise<void>;
  leave(): Promise<void>;
  /** Whether the request (or background job) it was taken for is done. */
  readonly ended: boolean;
}

const holds = new AsyncLocalStorage<WriteLockHold>();

/** Run `fn` between a lock transition and its undo; a failed transition is undone before failing. */
async function between<T>(begin: () => Promise<void>, end: () => Promise<void>, fn: () => Promise<T>): Promise<T> {
  try {
    await begin();
  } catch (e) {
    await end().catch(() => undefined);
    throw e;
  }
  try {
    return await fn();
  } finally {
    await end();
  }
}

/** The lock the work running now was started under, while that request or job lasts. */
export function currentWriteLock(): WriteLockHold | undefined {
  const hold = holds.getStore();
  return hold && !hold.ended ? hold : undefined;
}

/** Run a request's handling (and every operation it starts) under `hold`. */
export function runHoldingWriteLock<T>(hold: WriteLockHold, fn: () => T): T {
  return holds.run(hold, fn);
}

/**
 * Run `fn` without the cluster write lock. `fn` must write no global rows; what it reads may change
 * meanwhile, so the caller re-reads after it. Calls are not to be made concurrently within one
 * request (a nested call is part of its caller's outside stretch).
 */
export function outsideWriteLock<T>(fn: () => Promise<T>): Promise<T> {
  const hold = currentWriteLock();
  return hold ? between(() => hold.suspend(), () => hold.resume(), fn) : fn();
}

/**
 * Run `fn`, which writes rows, holding the lock of the request (or job) it runs under: taken again
 * within a stretch outside it, and kept until `fn` ends even if the request ends first (work the
 * request started in the background). Without one, `fn` just runs.
 */
export function insideWriteLock<T>(fn: () => Promise<T>): Promise<T> {
  const hold = currentWriteLock();
  return hold ? between(() => hold.enter(), () => hold.leave(), fn) : fn();
}
