// Whether the running code is an image background task (auto-update, expiry). Such a task's global
// writes take the cluster write lock themselves, as a request's do at the router; work a request
// started runs under the request's lock already and must not ask again (the lock is not re-entrant).
import { AsyncLocalStorage } from "node:async_hooks";

const background = new AsyncLocalStorage<boolean>();

export const inBackgroundTask = (): boolean => background.getStore() === true;

/** Run `job` as a background task. */
export function asBackgroundTask<T>(job: () => Promise<T>): Promise<T> {
  return background.run(true, job);
}
