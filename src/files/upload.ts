// Upload bodies into files: batched writevs through the threadpool, the next batch gathering
// while one is written, so the event loop never waits on the disk and memory stays bounded.
import { fstatSync, ftruncateSync, writev } from "node:fs";
import type { Readable } from "node:stream";

/** While one writev is in flight the next batch gathers; beyond this size the upload pauses. */
const WRITE_BATCH = 1 << 20;

/** The buffers left after the first `n` bytes of `bufs`. */
function after(bufs: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) n -= b.length;
    else {
      out.push(n ? b.subarray(n) : b);
      n = 0;
    }
  }
  return out;
}

/** writev all of `bufs` (libuv resumes short writes; one ends early only at an error, surfaced by the retry). */
function writeAll(fd: number, bufs: Buffer[], done: (err: Error | null, written: number) => void, before = 0): void {
  writev(fd, bufs, (err, n) => {
    if (err) return done(err, before);
    const left = after(bufs, n);
    if (!left.length) return done(null, before + n);
    if (n === 0) return done(Object.assign(new Error("write made no progress"), { code: "EIO" }), before);
    writeAll(fd, left, done, before + n);
  });
}

/**
 * Stream `body` into `fd`: memory stays under two batches (one being written, one gathering).
 * Whatever arrived is written even when the upload breaks off, as LXD does; in overwrite mode
 * the file then ends where the written content ends. Events rather than `for await`: with
 * async hooks on (the request context), a promise per chunk made a push cost ~40% more CPU.
 */
export function writeContent(body: Readable, fd: number, overwrite: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let batch: Buffer[] = [];
    let size = 0;
    let written = 0;
    let writing = false;
    let ended = false;
    let failure: { error: unknown } | undefined;
    let writeFailed = false;
    const settle = () => {
      body.off("data", onData).off("end", onEnd).off("error", onError).on("error", () => {});
      body.resume(); // after a write error, the rest of the upload is read and dropped
      try {
        if (overwrite && fstatSync(fd).isFile()) ftruncateSync(fd, written);
      } catch (e) {
        failure ??= { error: e };
      }
      if (failure) reject(failure.error);
      else resolve();
    };
    const pump = () => {
      if (writing) return;
      if (size && !writeFailed) {
        const bufs = batch;
        batch = [];
        size = 0;
        writing = true;
        writeAll(fd, bufs, (err, n) => {
          writing = false;
          written += n;
          if (err) {
            writeFailed = ended = true;
            failure ??= { error: err };
          }
          if (body.isPaused()) body.resume();
          pump();
        });
      } else if (ended) settle();
    };
    const onData = (chunk: Buffer) => {
      batch.push(chunk);
      size += chunk.length;
      if (writing && size >= WRITE_BATCH) body.pause();
      pump();
    };
    const onEnd = () => {
      ended = true;
      pump();
    };
    const onError = (error: unknown) => {
      failure ??= { error };
      onEnd();
    };
    body.on("data", onData).on("end", onEnd).on("error", onError);
  });
}
