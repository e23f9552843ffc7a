// The daemon's idle memory after start-up (issue #20). Loading the daemon allocates briskly and
// most of it survives (compiled code, route tables), so V8 grows its young generation to 16 MiB
// and more and an idle daemon would keep it (~20 MiB of RSS). A second after the daemon is
// ready (so the first requests clients send once it answers are not held up by a full
// collection), the addon tells V8 memory is low: full collections that compact the old space
// and shrink the young generation back to its initial size, then glibc's malloc_trim.
// Under request load V8 grows the young generation again as it sees fit.
import { native } from "../os/native.js";

/** How long after ready the collection runs. */
export const IDLE_RELEASE_DELAY_MS = 1000;

/** Release start-up's memory once, `delayMs` from now (the timer does not keep the process alive). */
export function releaseIdleMemorySoon(delayMs = IDLE_RELEASE_DELAY_MS): void {
  setTimeout(() => native.releaseIdleMemory(), delayMs).unref();
}
