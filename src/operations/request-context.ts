// The requestor of the API call being served, carried through async work (including the
// operations it starts) so lifecycle events name who caused them, as LXD's do.
import { AsyncLocalStorage } from "node:async_hooks";
import type { EventRequestor } from "./types.js";

const storage = new AsyncLocalStorage<EventRequestor>();

export const withRequestor = <T>(requestor: EventRequestor, fn: () => T): T => storage.run(requestor, fn);

export const currentRequestor = (): EventRequestor | undefined => storage.getStore();
