// Member-to-member HTTPS: every member serves and presents the shared cluster certificate, and
// a member only talks to a peer whose certificate is that one (pinned by fingerprint). Requests
// for another member's objects are proxied whole (status, headers, streamed body), websocket
// upgrades (exec, console, events) as raw byte streams after the upgrade request.
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import type { Duplex } from "node:stream";
import { connect as tlsConnect, type TLSSocket } from "node:tls";

export interface MemberTls {
  cert: string;
  key: string;
  /** The certificate the peer must present (the cluster certificate). */
  fingerprint: string;
}

/** Headers a forwarded request carries: who really asked (a restricted client stays restricted). */
export const FORWARDED_FOR = "x-nodelxd-forwarded-for";
/** A member asking another for its own objects only (listings fan-out). */
export const LOCAL_ONLY = "x-nodelxd-local-only";

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

export interface MemberResponse {
  status: number;
  headers: IncomingMessage["headers"];
  text: string;
  body: any;
}

/** A JSON request to a member over HTTPS with the cluster certificate. */
export function memberRequest(url: string, tls: MemberTls, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<MemberResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const h: Record<string, string> = { ...headers };
    if (payload) Object.assign(h, { "content-type": "application/json", "content-length": String(payload.length) });
    const req = httpsRequest(options(url, tls, method, path, h), (res) => {
      if (!pinned(res.socket as TLSSocket, tls.fingerprint)) {
        res.destroy();
        return reject(new Error(`Member ${url} does not present the cluster certificate`));
      }
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`Member ${url} did not answer`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** A raw GET from a member (a whole body in memory). */
export function memberRawGet(url: string, tls: MemberTls, path: string): Promise<{ status: number; type: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(options(url, tls, "GET", path, {}), (res) => {
      if (!pinned(res.socket as TLSSocket, tls.fingerprint)) {
        res.destroy();
        return reject(new Error(`Member ${url} does not present the cluster certificate`));
      }
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "host"]);

/** Proxy a whole request to a member; resolves with the member's status and (for JSON) its body. */
export function proxyRequest(req: IncomingMessage, res: ServerResponse, url: string, tls: MemberTls, extra: Record<string, string>, path = req.url ?? "/"): Promise<{ status: number; json?: any }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[] | undefined> = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && k !== FORWARDED_FOR) headers[k] = v;
    Object.assign(headers, extra);
    const out = httpsRequest({ ...options(url, tls, req.method ?? "GET", path, headers), timeout: 0 }, (up) => {
      if (!pinned(up.socket as TLSSocket, tls.fingerprint)) {
        up.destroy();
        return reject(new Error(`Member ${url} does not present the cluster certificate`));
      }
      const h: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) h[k] = v;
      const isJson = String(up.headers["content-type"] ?? "").includes("application/json");
      if (!isJson) {
        res.writeHead(up.statusCode ?? 502, h);
        up.pipe(res);
        up.on("end", () => resolve({ status: up.statusCode ?? 502 }));
        up.on("error", reject);
        return;
      }
      const chunks: Buffer[] = [];
      up.on("data", (c: Buffer) => chunks.push(c));
      up.on("error", reject);
      up.on("end", () => {
        const buf = Buffer.concat(chunks);
        res.writeHead(up.statusCode ?? 502, { ...h, "content-length": String(buf.length) });
        res.end(buf);
        let json: unknown;
        try {
          json = JSON.parse(buf.toString("utf8"));
        } catch {
          json = undefined;
        }
        resolve({ status: up.statusCode ?? 502, json });
      });
    });
    out.on("error", reject);
    req.pipe(out);
  });
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
