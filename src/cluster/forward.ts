// Member-to-member HTTPS: every member serves and presents the shared cluster certificate, and
// a member only talks to a peer whose certificate is that one (pinned by fingerprint). Requests
// for another member's objects are proxied whole (status, headers, streamed body), websocket
// upgrades (exec, console, events) as raw byte streams after the upgrade request.
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Agent, type RequestOptions } from "node:https";
import type { Duplex } from "node:stream";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { jsonPayload, readReply, send, type Reply } from "../os/http-client.js";

export interface MemberTls {
  cert: string;
  key: string;
  /** The certificate the peer must present (the cluster certificate). */
  fingerprint: string;
}

/** Headers a forwarded request carries: who really asked (a restricted client stays restricted). */
export const FORWARDED_FOR = "x-nodelxd-forwarded-for";
/** A member asking another for its own objects only (listings fan-out). */
export { LOCAL_ONLY_HEADER as LOCAL_ONLY } from "../shared/requestor.js";

function target(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port || 8443) };
}

function pinned(sock: TLSSocket, fingerprint: string): boolean {
  const der = sock.getPeerCertificate()?.raw;
  return !!der && createHash("sha256").update(der).digest("hex") === fingerprint;
}

function options(url: string, tls: MemberTls, method: string, path: string, headers: Record<string, string | string[] | undefined>): RequestOptions {
  const { host, port } = target(url);
  return { host, port, method, path, headers, cert: tls.cert, key: tls.key, rejectUnauthorized: false, agent: false, timeout: 30_000 };
}

export type MemberResponse = Reply;

const notPinned = (url: string, tls: MemberTls) => (res: IncomingMessage) =>
  pinned(res.socket as TLSSocket, tls.fingerprint) ? undefined : new Error(`Member ${url} does not present the cluster certificate`);

/**
 * Connections for members' JSON requests stay open between requests (a listing asks every member
 * each time; a TLS handshake per request cost more than the answer). The agent keys connections by
 * address and certificate, so a new cluster certificate opens new ones; idle ones close after 10 s,
 * before the peer's 30 s idle limit.
 */
// No TLS session resumption: a resumed session has no peer certificate to check the pin against.
const memberAgent = new Agent({ keepAlive: true, maxSockets: 16, timeout: 10_000, maxCachedSessions: 0 });

/** A JSON request to a member over HTTPS with the cluster certificate. */
export async function memberRequest(url: string, tls: MemberTls, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<MemberResponse> {
  const json = jsonPayload(body);
  const opts = { ...options(url, tls, method, path, { ...headers, ...json.headers }), agent: memberAgent };
  return readReply(await send({ ...opts, tls: true, timeoutError: `Member ${url} did not answer`, check: notPinned(url, tls) }, json.payload));
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "host"]);

/** Proxy a whole request to a member; resolves with the member's status and (for JSON) its body. */
export async function proxyRequest(req: IncomingMessage, res: ServerResponse, url: string, tls: MemberTls, extra: Record<string, string>, path = req.url ?? "/"): Promise<{ status: number; json?: any }> {
  const headers: Record<string, string | string[] | undefined> = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && k !== FORWARDED_FOR) headers[k] = v;
  Object.assign(headers, extra);
  const up = await send({ ...options(url, tls, req.method ?? "GET", path, headers), timeout: 0, tls: true, check: notPinned(url, tls) }, req);
  const h: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) h[k] = v;
  if (!String(up.headers["content-type"] ?? "").includes("application/json")) {
    res.writeHead(up.statusCode ?? 502, h);
    return new Promise((resolve, reject) => {
      up.pipe(res);
      up.on("end", () => resolve({ status: up.statusCode ?? 502 }));
      up.on("error", reject);
    });
  }
  const r = await readReply(up);
  res.writeHead(up.statusCode ?? 502, { ...h, "content-length": String(r.raw.length) });
  res.end(r.raw);
  return { status: up.statusCode ?? 502, json: r.body };
}

/** Proxy a websocket upgrade: send the upgrade request on, then splice the two streams. */
export function proxyUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: string, tls: MemberTls, extra: Record<string, string>): void {
  const { host, port } = target(url);
  const up = tlsConnect({ host, port, cert: tls.cert, key: tls.key, rejectUnauthorized: false, servername: undefined }, () => {
    if (!pinned(up, tls.fingerprint)) {
      up.destroy();
      socket.destroy();
      return;
    }
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (const [k, v] of Object.entries(req.headers)) {
      if (k === "host" || k === FORWARDED_FOR || v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`);
    }
    lines.push(`host: ${host}:${port}`);
    for (const [k, v] of Object.entries(extra)) lines.push(`${k}: ${v}`);
    up.write(lines.join("\r\n") + "\r\n\r\n");
    if (head.length) up.write(head);
    up.pipe(socket);
    socket.pipe(up);
  });
  const close = () => {
    up.destroy();
    socket.destroy();
  };
  up.on("error", close);
  socket.on("error", close);
  up.on("close", () => socket.destroy());
  socket.on("close", () => up.destroy());
}
