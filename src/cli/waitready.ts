import { apiRequest, sleep } from "./client.js";

/** Wait until the daemon answers GET /1.0 and then GET /internal/ready (as `lxd waitready`). */
export async function waitReady(socket: string, timeoutSeconds: number): Promise<void> {
  const deadline = timeoutSeconds > 0 ? Date.now() + timeoutSeconds * 1000 : Infinity;
  let lastError = "";
  while (Date.now() < deadline) {
    try {
      const server = await apiRequest(socket, "GET", "/1.0", undefined, 5000);
      if (server.status !== 200) throw new Error(server.body?.error ?? `HTTP ${server.status}`);
      const res = await apiRequest(socket, "GET", "/internal/ready", undefined, 5000);
      if (res.status === 200) return;
      lastError = res.body?.error ?? `HTTP ${res.status}`;
    } catch (e) {
      lastError = (e as Error).message;
    }
    await sleep(Math.min(250, Math.max(0, deadline - Date.now())));
  }
  throw new Error(`LXD still not running after ${timeoutSeconds}s timeout (${lastError})`);
}
