// HTTPS for image servers: the CA store Go's crypto/x509 uses on Linux (SSL_CERT_FILE, else the
// distribution bundle, plus the files of SSL_CERT_DIR), or one pinned server certificate (LXD
// peers); at most 10 redirects (Go's http.Client limit and message); bounded JSON bodies;
// streamed downloads hashed as they arrive. Every call takes an AbortSignal.
import { X509Certificate, createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";

/** Go's http.Client: "stopped after 10 redirects". */
const MAX_REDIRECTS = 10;
/** No index, products file or API answer we read is anywhere near this. */
export const JSON_LIMIT = 32 * 1024 * 1024;
const HEADER_TIMEOUT_MS = 30_000;
export const USER_AGENT = "LXD 5.0.2";

let systemStore: string[] | undefined;

/** The certificates Go trusts on Linux: $SSL_CERT_FILE or the first bundle found, and $SSL_CERT_DIR. */
export function systemCertificates(): string[] {
  if (systemStore) return systemStore;
  const pems: string[] = [];
  const files = process.env.SSL_CERT_FILE ? [process.env.SSL_CERT_FILE] : ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem"];
  for (const f of files) {
    try {
      pems.push(...splitPem(readFileSync(f, "utf8")));
      break;
    } catch {
      /* next candidate */
    }
  }
  for (const dir of (process.env.SSL_CERT_DIR ?? "").split(":").filter(Boolean)) {
    for (const name of safeReaddir(dir)) {
      try {
        pems.push(...splitPem(readFileSync(join(dir, name), "utf8")));
      } catch {
        /* unreadable entries are skipped, as Go does */
      }
    }
  }
  systemStore = pems;
  return pems;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

export interface Transport {
  /** PEM of the one certificate the server must present (LXD's TLSServerCert); absent: the system store. */
  certificate?: string;
  signal?: AbortSignal;
  /** Plain http:// is allowed (simplestreams servers, as LXD allows them); never for LXD peers. */
  allowHttp?: boolean;
  /** A client certificate to present. */
  client?: { cert: string; key: string };
}

/** The pinned certificate's DER, or a clear error for a malformed one. */
function pinned(pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new Error("Invalid remote certificate");
  }
}

/** GET `url` over HTTPS, following redirects; resolves with the final response (any status). */
export async function httpsGet(url: string, t: Transport, headers: Record<string, string> = {}, method: "GET" | "HEAD" = "GET"): Promise<IncomingMessage> {
  let current = url;
  for (let hops = 0; ; hops++) {
    const res = await send(current, t, { method, headers });
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && status !== 304 && res.headers.location) {
      res.resume();
      if (hops >= MAX_REDIRECTS) throw new Error(`Get "${current}": stopped after ${MAX_REDIRECTS} redirects`);
      const next = new URL(res.headers.location, current);
      // Never from https down to plain http (a redirect cannot undo the transport's protection).
      if (next.protocol === "http:" && new URL(current).protocol === "https:") throw new Error(`Get "${next}": redirect from https to http refused`);
      current = next.toString();
      continue;
    }
    return res;
  }
}

export interface SendOptions {
  method: string;
  headers?: Record<string, string>;
  /** Request body: a buffer, or a stream (give Content-Length in headers when known). */
  body?: Buffer | Readable;
  /** Time allowed until the response headers arrive; 0 for none (long polls). Default 30 s. */
  headerTimeout?: number;
}

/** One HTTP(S) request, no redirects; plain http only where the transport allows it. */
export function send(url: string, t: Transport, opts: SendOptions): Promise<IncomingMessage> {
  const u = new URL(url);
  const verb = opts.method === "GET" || opts.method === "HEAD" ? "Get" : opts.method.charAt(0) + opts.method.slice(1).toLowerCase();
  const plain = u.protocol === "http:" && t.allowHttp === true;
  if (u.protocol !== "https:" && !plain) return Promise.reject(new Error(`${verb} "${url}": unsupported protocol scheme "${u.protocol.replace(/:$/, "")}"`));
  const pin = t.certificate && !plain ? pinned(t.certificate) : undefined;
  return new Promise((resolve, reject) => {
    const common = { method: opts.method, headers: { "User-Agent": USER_AGENT, ...(opts.headers ?? {}) }, signal: t.signal, agent: false as const };
    const onError = (e: Error) => reject(t.signal?.aborted ? new Error("Operation cancelled") : wrap(verb, url, e));
    const req = plain
      ? httpRequest(url, common, resolve)
      : httpsRequest(
          url,
          {
            ...common,
            ca: pin ? [pin.toString()] : systemCertificates(),
            ...(t.client ? { cert: t.client.cert, key: t.client.key } : {}),
            // A pinned certificate is the identity: as LXD, any name is accepted when the exact certificate is presented.
            ...(pin ? { checkServerIdentity: (_host: string, cert: { fingerprint256: string }) => (cert.fingerprint256 === pin.fingerprint256 ? undefined : new Error("Server certificate does not match the pinned certificate")) } : {}),
          },
          resolve,
        );
    const timeout = opts.headerTimeout ?? HEADER_TIMEOUT_MS;
    if (timeout > 0) {
      // Only until the answer starts: a long upload or download is not cut.
      req.setTimeout(timeout, () => req.destroy(new Error(`${verb} "${url}": timeout awaiting response headers`)));
      req.once("response", () => req.setTimeout(0));
    }
    req.on("error", onError);
    const body = opts.body;
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else {
      body.once("error", (e) => req.destroy(e));
      body.pipe(req);
    }
  });
}

function wrap(verb: string, url: string, e: Error): Error {
  return /^(Get|Head|Post|Put|Patch|Delete) "/.test(e.message) ? e : new Error(`${verb} "${url}": ${e.message}`);
}

/** Read a bounded body. */
export async function readBody(res: IncomingMessage, limit = JSON_LIMIT): Promise<Buffer> {
  const declared = Number(res.headers["content-length"] ?? -1);
  if (declared > limit) {
    res.destroy();
    throw new Error(`Response too large (${declared} bytes, limit ${limit})`);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    n += (c as Buffer).length;
    if (n > limit) {
      res.destroy();
      throw new Error(`Response too large (over ${limit} bytes)`);
    }
    chunks.push(c as Buffer);
  }
  if (!res.complete) throw new Error("Response truncated");
  return Buffer.concat(chunks);
}

/** GET and decode a JSON document; a non-200 answer is "Unable to fetch URL: STATUS" as LXD's. */
export async function getJson(url: string, t: Transport): Promise<unknown> {
  const res = await httpsGet(url, t);
  if (res.statusCode !== 200) {
    res.resume();
    throw new Error(`Unable to fetch ${url}: ${res.statusCode} ${res.statusMessage ?? ""}`.trimEnd());
  }
  const body = await readBody(res);
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (e) {
    throw new Error(`Failed decoding JSON from ${url}: ${(e as Error).message}`);
  }
}

export interface DownloadOptions {
  /** Expected sha256 of this body (simplestreams items); checked at the end. */
  sha256?: string;
  /** A hash fed with every byte as well (the image's combined fingerprint). */
  combined?: ReturnType<typeof createHash>;
  /** Largest body accepted. */
  limit?: number;
  /** Called with (bytes so far, total or 0). */
  onBytes?: (done: number, total: number) => void;
}

/**
 * Stream a 200 response body into `sink`, counting, hashing and enforcing `limit`.
 * Returns the size. Truncation (fewer bytes than Content-Length, a cut connection) is an error.
 */
export async function streamBody(url: string, res: IncomingMessage, sink: Writable, opts: DownloadOptions): Promise<number> {
  const total = Number(res.headers["content-length"] ?? 0) || 0;
  const limit = opts.limit ?? Number.MAX_SAFE_INTEGER;
  if (total > limit) {
    res.destroy();
    throw new Error(`Remote file ${url} is too large (${total} bytes)`);
  }
  const own = opts.sha256 ? createHash("sha256") : undefined;
  let n = 0;
  for await (const chunk of res) {
    const c = chunk as Buffer;
    n += c.length;
    if (n > limit) {
      res.destroy();
      throw new Error(`Remote file ${url} is too large (over ${limit} bytes)`);
    }
    own?.update(c);
    opts.combined?.update(c);
    if (!sink.write(c)) await new Promise<void>((r) => sink.once("drain", () => r()));
    opts.onBytes?.(n, total);
  }
  if (!res.complete || (total > 0 && n !== total)) throw new Error(`Download of ${url} was truncated (${n} of ${total || "?"} bytes)`);
  if (own && opts.sha256) {
    const got = own.digest("hex");
    if (got !== opts.sha256) throw new Error(`Hash mismatch for ${url}: ${got} != ${opts.sha256}`);
  }
  return n;
}

export function certificateFingerprint(pem: string): string {
  return pinned(pem).fingerprint256.replace(/:/g, "").toLowerCase();
}
