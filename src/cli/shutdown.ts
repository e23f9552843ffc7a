import { apiRequest, sleep } from "./client.js";

/** Ask the daemon to stop its instances and exit, then wait until it is gone (as `lxd shutdown`). */
export async function shutdown(socket: string, timeoutSeconds: number, force: boolean): Promise<void> {
  const res = await apiRequest(socket, "PUT", `/internal/shutdown?force=${force}`, undefined, 0);
  if (res.status !== 200) throw new Error(res.body?.error ?? `HTTP ${res.status}`);
  const deadline = timeoutSeconds > 0 ? Date.now() + timeoutSeconds * 1000 : Infinity;
  while (Date.now() < deadline) {
    try {
      await apiRequest(socket, "GET", "/1.0", undefined, 2000);
    } catch {
      return;
    }
    await sleep(100);
  }
  throw new Error(`LXD still running after ${timeoutSeconds}s timeout`);
}
