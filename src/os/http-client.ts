// One small HTTP client for the daemon's own requests (cluster members, its CLI) and for the tests
// that drive it: send a request, check the response before its body is read, read the reply whole.
import { request as plainRequest, type IncomingHttpHeaders, type IncomingMessage, type RequestOptions } from "node:http";
import { request as tlsRequest } from "node:https";
import type { Readable } from "node:stream";

export interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  raw: Buffer;
}

export interface Reply extends RawReply {
  text: string;
  /** The body's JSON, or undefined when it is none. */
  body: any;
}

export interface SendOptions extends RequestOptions {
  /** HTTPS (the key, certificate and peer checks go in the usual options). */
  tls?: boolean;
  /** The error a `timeout` (idle socket) ends the request with. */
  timeoutError?: string;
  /** Refuse a response before its body is read (a pinned certificate, say): the error to fail with. */
  check?: (res: IncomingMessage) => Error | undefined;
}

/** Send one request with an optional payload (a stream is piped); resolves with the response once its headers are in. */
export function send(options: SendOptions, payload?: string | Buffer | Readable): Promise<IncomingMessage> {
  const { tls, timeoutError, check, ...rest } = options;
  return new Promise((resolve, reject) => {
    const req = (tls ? tlsRequest : plainRequest)(rest, (res) => {
      const refused = check?.(res);
      if (refused) {
        res.destroy();
        return reject(refused);
      }
      resolve(res);
    });
    req.on("timeout", () => req.destroy(new Error(timeoutError ?? "request timed out")));
    req.on("error", reject);
    if (payload === undefined || typeof payload === "string" || Buffer.isBuffer(payload)) req.end(payload);
    else {
      payload.on("error", (e) => req.destroy(e));
      payload.pipe(req);
    }
  });
}

/** Read a whole response body. */
export function readRaw(res: IncomingMessage): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("error", reject);
    res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: Buffer.concat(chunks) }));
  });
}

/** Read a whole response: its text, and its JSON when it is JSON. */
export async function readReply(res: IncomingMessage): Promise<Reply> {
  const r = await readRaw(res);
  const text = r.raw.toString("utf8");
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { ...r, text, body };
}

/** A value sent as JSON: the payload and its content headers (none without a body). */
export function jsonPayload(body: unknown): { payload?: Buffer; headers: Record<string, string> } {
  if (body === undefined) return { headers: {} };
  const payload = Buffer.from(JSON.stringify(body));
  return { payload, headers: { "content-type": "application/json", "content-length": String(payload.length) } };
}
