// The cluster write lock as a request holds it, and the stretches its work runs outside it.
import { describe, expect, it } from "vitest";
import { RequestLock } from "../../src/cluster/request-lock.js";
import { insideWriteLock, outsideWriteLock, runHoldingWriteLock } from "../../src/shared/write-lock.js";

function fakeLock(opts: { failCatchUp?: boolean } = {}) {
  const log: string[] = [];
  let holders = 0;
  const deps = {
    async take() {
      log.push("take");
      holders++;
      return async () => {
        log.push("release");
        holders--;
      };
    },
    async catchUp() {
      log.push("catchUp");
      if (opts.failCatchUp) throw new Error("etcd unreachable");
    },
    async flush() {
      log.push("flush");
    },
  };
  return { log, deps, holders: () => holders };
}

describe("RequestLock", () => {
  it("is taken caught up, handed back after a flush, taken again caught up, released once at the end", async () => {
    const f = fakeLock();
    const lock = await RequestLock.take(f.deps);
    expect(lock.held).toBe(true);
    await lock.suspend();
    expect(lock.held).toBe(false);
    await lock.resume();
    expect(lock.held).toBe(true);
    await lock.end();
    await lock.end();
    expect(f.log).toEqual(["take", "catchUp", "flush", "release", "take", "catchUp", "flush", "release"]);
    expect(f.holders()).toBe(0);
  });

  it("treats a nested stretch as part of its caller's", async () => {
    const f = fakeLock();
    const lock = await RequestLock.take(f.deps);
    await lock.suspend();
    await lock.suspend();
    await lock.resume();
    expect(lock.held).toBe(false);
    await lock.resume();
    expect(lock.held).toBe(true);
    await lock.end();
    expect(f.log.filter((e) => e === "take")).toHaveLength(2);
  });

  it("does nothing once the request is done (work that outlives it)", async () => {
    const f = fakeLock();
    const lock = await RequestLock.take(f.deps);
    await lock.end();
    await lock.suspend();
    await lock.resume();
    expect(f.log).toEqual(["take", "catchUp", "flush", "release"]);
  });

  it("lets go of the lock when catching up fails", async () => {
    const f = fakeLock({ failCatchUp: true });
    await expect(RequestLock.take(f.deps)).rejects.toThrow("etcd unreachable");
    expect(f.holders()).toBe(0);
  });
});

describe("outsideWriteLock", () => {
  it("runs work directly where no request holds the lock", async () => {
    expect(await outsideWriteLock(async () => 42)).toBe(42);
  });

  it("hands back the lock of the request whose work it runs in, across awaits and queued microtasks", async () => {
    const f = fakeLock();
    const lock = await RequestLock.take(f.deps);
    const seen: boolean[] = [];
    let finished!: Promise<void>;
    runHoldingWriteLock(lock, () => {
      // As an operation's work is started: queued from the request's handler.
      finished = new Promise<void>((resolve, reject) =>
        queueMicrotask(() => {
          (async () => {
            await new Promise((r) => setTimeout(r, 1));
            await outsideWriteLock(async () => void seen.push(lock.held));
            seen.push(lock.held);
          })().then(resolve, reject);
        }),
      );
    });
    await finished;
    expect(seen).toEqual([false, true]);
    await lock.end();
    expect(f.holders()).toBe(0);
  });

  it("holds the lock again for writes within a stretch outside it, nested or not", async () => {
    const f = fakeLock();
    const lock = await RequestLock.take(f.deps);
    const seen: boolean[] = [];
    await runHoldingWriteLock(lock, () =>
      outsideWriteLock(async () => {
        seen.push(lock.held);
        await outsideWriteLock(async () => {
          await insideWriteLock(async () => void seen.push(lock.held));
          seen.push(lock.held);
        });
        await insideWriteLock(async () => void seen.push(lock.held));
        seen.push(lock.held);
      }),
    );
    seen.push(lock.held);
    // Outside the stretch, inside runs directly, holding the lock as the request does.
    await runHoldingWriteLock(lock, () => insideWriteLock(async () => void seen.push(lock.held)));
    expect(seen).toEqual([false, true, false, true, false, true, true]);
    await lock.end();
    expect(f.holders()).toBe(0);
    expect(f.log.filter((e) => e === "take")).toHaveLength(4);
  });

  it("keeps the lock for work the request started until that work ends, past the request's end", async () => {
    const f = fakeLock();
    const lock = await RequestLock.take(f.deps);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const seen: boolean[] = [];
    let job!: Promise<void>;
    runHoldingWriteLock(lock, () => {
      job = insideWriteLock(async () => {
        await gate;
        seen.push(lock.held);
      });
    });
    await lock.end();
    expect(lock.held).toBe(true);
    open();
    await job;
    expect(seen).toEqual([true]);
    expect(lock.held).toBe(false);
    expect(f.holders()).toBe(0);
    // Work starting after the end runs without it (it would take a lock of its own).
    await runHoldingWriteLock(lock, () => insideWriteLock(async () => void seen.push(lock.held)));
    expect(seen).toEqual([true, false]);
  });

  it("takes the lock again even when the work fails", async () => {
    const f = fakeLock();
    const lock = await RequestLock.take(f.deps);
    await expect(runHoldingWriteLock(lock, () => outsideWriteLock(async () => Promise.reject(new Error("download failed"))))).rejects.toThrow("download failed");
    expect(lock.held).toBe(true);
    await lock.end();
  });
});
