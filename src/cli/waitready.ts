import { apiRequest, sleep } from "./client.js";

/** Wait until the daemon answers GET /internal/ready (as `lxd waitready`). */
export async function waitReady(socket: string, timeoutSeconds: number): Promise<void> {
  const deadline = timeoutSeconds > 0 ? Date.now() + timeoutSeconds * 1000 : Infinity;
  let lastError = "";
  while (Date.now() < deadline) {
    try {
      const res = await apiRequest(socket, "GET", "/internal/ready", undefined, 5000);
      if (res.status === 200) return;
      lastError = res.body?.error ?? `HTTP ${res.status}`;
    } catch (e) {
      lastError = (e as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`Daemon still not running after ${timeoutSeconds}s timeout (${lastError})`);
}
