// A minimal LXD API client over the unix socket, for the daemon's own CLI commands.
import { request } from "node:http";

export interface ApiResponse {
  status: number;
  body: any;
}

export function apiRequest(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      { socketPath, method, path, headers: payload ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {}, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** Throw the server's error message unless the response is a success. */
export function expectSuccess(res: ApiResponse): any {
  if (res.status >= 400 || res.body?.type === "error") throw new Error(res.body?.error || `HTTP ${res.status}`);
  return res.body?.metadata;
}

/** Follow an async response to its end; throw the operation's error if it failed. */
export async function waitOperation(socketPath: string, res: ApiResponse): Promise<any> {
  const meta = expectSuccess(res);
  if (res.body?.type !== "async") return meta;
  const op = expectSuccess(await apiRequest(socketPath, "GET", `${res.body.operation}/wait?timeout=-1`, undefined, 0));
  if (op.status_code !== 200) throw new Error(op.err || op.status);
  return op;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
