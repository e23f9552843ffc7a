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
    req.on("error", (e) => reject(new Error(goRequestError(method, path, socketPath, e))));
    if (payload) req.write(payload);
    req.end();
  });
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: "no such file or directory",
  ECONNREFUSED: "connection refused",
  EACCES: "permission denied",
  ECONNRESET: "connection reset by peer",
  ENOTSOCK: "socket operation on non-socket",
};

/** A failed request as Go's net/http client words it (what `lxd` prints), e.g. for a missing socket. */
export function goRequestError(method: string, path: string, socketPath: string, e: NodeJS.ErrnoException): string {
  const verb = method.charAt(0) + method.slice(1).toLowerCase();
  const url = `"http://unix.socket${path}"`;
  const text = e.code ? ERRNO_TEXT[e.code] : undefined;
  if (e.syscall === "connect" && text) return `${verb} ${url}: dial unix ${socketPath}: connect: ${text}`;
  return `${verb} ${url}: ${text ?? e.message}`;
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
