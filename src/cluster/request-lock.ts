// The cluster write lock as one request holds it: taken before the request is served, handed back
// and taken again around the long stretches its operation runs outside it (shared/write-lock.ts),
// released for good when the request (or its operation) is done.
import type { WriteLockHold } from "../shared/write-lock.js";

export interface RequestLockDeps {
  /** Take the cluster-wide lock; resolves with its release. */
  take(): Promise<() => Promise<void>>;
  /** Wait until every log entry written so far is applied here. */
  catchUp(): Promise<void>;
  /** Wait until this member's own writes are in the log. */
  flush(): Promise<void>;
}

export class RequestLock implements WriteLockHold {
  private release?: () => Promise<void>;
  /** Stretches outside the lock under way, and stretches inside those that write again. */
  private outside = 0;
  private inside = 0;
  private done = false;
  /** Lock transitions run one after another. */
  private chain: Promise<void> = Promise.resolve();

  private constructor(private readonly d: RequestLockDeps) {}

  /** The lock, held, with this member caught up. */
  static async take(d: RequestLockDeps): Promise<RequestLock> {
    const lock = new RequestLock(d);
    await lock.acquire();
    return lock;
  }

  get held(): boolean {
    return this.release !== undefined;
  }

  get ended(): boolean {
    return this.done;
  }

  private async acquire(): Promise<void> {
    this.release = await this.d.take();
    try {
      await this.d.catchUp();
    } catch (e) {
      await this.drop();
      throw e;
    }
  }

  private async drop(): Promise<void> {
    const release = this.release;
    this.release = undefined;
    if (release) await release();
  }

  /** Bring the lock to what the counts ask for, after the transitions before this one. */
  private settle(): Promise<void> {
    const next = this.chain.then(async () => {
      // Work that entered (a job the request started) keeps it held past the request's end.
      const want = this.inside > 0 || (!this.done && this.outside === 0);
      if (want && !this.held) await this.acquire();
      if (!want && this.held) {
        // Handed back for a while only once this member's writes are in the log; at the end,
        // released whatever happens (an unflushed write is appended by the replica later).
        try {
          await this.d.flush();
        } catch (e) {
          if (!this.done) throw e;
        }
        await this.drop();
      }
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  suspend(): Promise<void> {
    if (this.done) return Promise.resolve();
    this.outside++;
    return this.settle();
  }

  resume(): Promise<void> {
    if (this.done) return Promise.resolve();
    this.outside--;
    return this.settle();
  }

  enter(): Promise<void> {
    this.inside++;
    return this.settle();
  }

  leave(): Promise<void> {
    this.inside--;
    return this.settle();
  }

  /** The request is done: its writes go to the log and the lock is released (once no work that entered is left). */
  end(): Promise<void> {
    this.done = true;
    return this.settle();
  }
}
