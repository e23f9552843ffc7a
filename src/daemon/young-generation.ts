// V8's young generation during start-up. Loading the daemon's modules allocates briskly and
// most of it survives (compiled code, route tables), so V8 doubles its semi-spaces at every
// scavenge and an idle daemon keeps a 16 MiB young generation it no longer uses (~20 MiB of
// RSS). `node --max-semi-space-size=1` would avoid it, but the daemon is started as
// `node dist/main.js` (no flags), so the growth factor is set from inside, before anything
// is loaded: V8 reads it at each growth decision. Once the daemon is ready the default comes
// back, so a daemon under request load grows its young generation as V8 sees fit.
import { setFlagsFromString } from "node:v8";

/** V8's default --semi-space-growth-factor (V8 11, Node 20). */
const DEFAULT_GROWTH_FACTOR = 2;

/** Keep the young generation at its initial size (call before loading the daemon's modules). */
export function holdYoungGeneration(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
}

/** Let V8 grow the young generation again (the daemon is ready). */
export function releaseYoungGeneration(): void {
  setFlagsFromString(`--semi-space-growth-factor=${DEFAULT_GROWTH_FACTOR}`);
}
