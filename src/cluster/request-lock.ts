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
  private outside = 0;
  private ended = false;
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

  private step(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined);
    return next;
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

  suspend(): Promise<void> {
    if (this.ended || this.outside++ > 0) return Promise.resolve();
    return this.step(async () => {
      if (!this.held) return;
      await this.d.flush();
      await this.drop();
    });
  }

  resume(): Promise<void> {
    if (this.ended || --this.outside > 0) return Promise.resolve();
    return this.step(async () => {
      if (!this.held && !this.ended) await this.acquire();
    });
  }

  /** The request is done: its writes go to the log and the lock is released. */
  end(): Promise<void> {
    if (this.ended) return this.chain;
    this.ended = true;
    return this.step(async () => {
      if (!this.held) return;
      try {
        await this.d.flush();
      } finally {
        await this.drop();
      }
    });
  }
}
