// A minimal LXD API client over the unix socket, for the daemon's own CLI commands.
import { jsonPayload, readReply, send } from "../os/http-client.js";

export interface ApiResponse {
  status: number;
  body: any;
}

export async function apiRequest(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<ApiResponse> {
  const json = jsonPayload(body);
  try {
    const r = await readReply(await send({ socketPath, method, path, headers: json.headers, timeout: timeoutMs }, json.payload));
    return { status: r.status, body: r.body === undefined ? r.text : r.body };
  } catch (e) {
    throw new Error(goRequestError(method, path, socketPath, e as NodeJS.ErrnoException));
  }
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
