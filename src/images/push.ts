// Image push (LXD's images_push_relay), both ends:
// - source: POST /1.0/images/{fp}/export {target, certificate, secret, project} connects to the
//   target (its certificate pinned, no client certificate: the push token is the credential),
//   uploads the stored files to the target's POST /1.0/images with X-LXD-fingerprint and
//   X-LXD-secret, and waits on the target's operation with the secret it answers with.
// - target: POST /1.0/images {source: {mode: "push", fingerprint}} from a trusted client makes a
//   push token (the image's aliases, expires_at, properties and public ride in its metadata);
//   the upload presenting it is admitted even from an untrusted peer, takes those fields, and its
//   operation can be waited on with the secret in its metadata.
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { z } from "zod";
import { BadRequest } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";
import type { ImageRecordRow } from "../db/image-repo.js";
import type { EventHub } from "../operations/events.js";
import { imageBody } from "./image-body.js";
import { readBody, send, type Transport } from "./remote/http.js";
import type { ImageService } from "./service.js";

export const ImageExportPost = z.object({
  target: z.string().optional().default(""),
  certificate: z.string().optional().default(""),
  secret: z.string().optional().default(""),
  aliases: z.array(z.object({ name: z.string(), description: z.string().optional().default("") })).nullable().optional(),
  project: z.string().optional().default(""),
  profiles: z.array(z.string()).nullable().optional(),
});
export type ImageExportPostBody = z.infer<typeof ImageExportPost>;

interface Envelope {
  type?: string;
  status?: string;
  status_code?: number;
  error?: string;
  metadata?: { id?: string; status?: string; status_code?: number; err?: string; metadata?: Record<string, unknown> | null } | null;
}

async function envelope(res: IncomingMessage): Promise<Envelope> {
  const raw = (await readBody(res, 4 * 1024 * 1024)).toString("utf8");
  let body: Envelope;
  try {
    body = JSON.parse(raw) as Envelope;
  } catch {
    throw new Error(`${res.statusCode} ${res.statusMessage ?? ""}`.trimEnd());
  }
  if (body?.type === "error") throw new Error(String(body.error ?? "Unknown error"));
  return body;
}

/** Go's %q for a plain string. */
const quote = (s: string) => JSON.stringify(s);

export interface PushDeps {
  images: ImageService;
  events: EventHub;
}

/** The source side: push `row` to the target named in `req`. */
export async function pushImage(deps: PushDeps, row: ImageRecordRow, req: ImageExportPostBody, opts: { signal?: AbortSignal; requestor?: Requestor }): Promise<void> {
  let base: URL;
  try {
    base = new URL(req.target);
  } catch {
    throw new BadRequest(`Invalid target URL "${req.target}"`);
  }
  // An LXD peer is always HTTPS; the pinned certificate (when given) is its identity.
  if (base.protocol !== "https:" || base.username || base.password) throw new BadRequest(`Invalid target URL "${req.target}": only https:// is supported`);
  const root = req.target.replace(/\/+$/, "");
  const t: Transport = { certificate: req.certificate || undefined, signal: opts.signal };
  const query = (extra: Record<string, string> = {}) => {
    const q = new URLSearchParams(extra);
    if (req.project) q.set("project", req.project);
    const s = q.toString();
    return s ? `?${s}` : "";
  };

  // ConnectLXD: GET /1.0 proves the address and the certificate.
  try {
    const res = await send(`${root}/1.0`, t, { method: "GET" });
    await envelope(res);
  } catch (e) {
    if (opts.signal?.aborted) throw new Error("Operation cancelled");
    throw new Error(`Failed to connect to the target: ${(e as Error).message}`);
  }

  const body = await imageBody(deps.images, row, "push");
  const headers: Record<string, string> = { "Content-Type": body.contentType, "Content-Length": String(body.length), "X-LXD-filename": row.fingerprint };
  if (req.secret) {
    headers["X-LXD-fingerprint"] = row.fingerprint;
    headers["X-LXD-secret"] = req.secret;
  }
  let op: NonNullable<Envelope["metadata"]>;
  try {
    const res = await send(`${root}/1.0/images${query()}`, t, { method: "POST", headers, body: body.open() });
    const env = await envelope(res);
    if (env.type !== "async" || !env.metadata?.id) throw new Error("Unexpected answer to the image upload");
    op = env.metadata;
  } catch (e) {
    if (opts.signal?.aborted) throw new Error("Operation cancelled");
    throw e;
  }
  const secret = typeof op.metadata?.secret === "string" ? op.metadata.secret : "";
  // GetOperationWaitSecret(id, secret, -1): wait as long as the target works.
  const wait = await send(`${root}/1.0/operations/${encodeURIComponent(op.id!)}/wait${query({ secret, timeout: "-1" })}`, t, { method: "GET", headerTimeout: 0 });
  const done = (await envelope(wait)).metadata;
  if (done?.status_code !== 200) throw new Error(`Failed operation ${quote(String(done?.status ?? ""))}: ${quote(String(done?.err ?? ""))}`);
  deps.events.lifecycle("image-retrieved", `/1.0/images/${row.fingerprint}`, {
    project: row.project,
    context: { target: req.target },
    requestor: opts.requestor ? { username: opts.requestor.username, protocol: opts.requestor.protocol, address: opts.requestor.address } : undefined,
  });
}

/** What a push token asked for the image (LXD's token metadata), read back from its JSON form. */
export interface PushedFields {
  aliases: { name: string; description: string }[];
  expiresAt?: string;
  properties?: Record<string, string>;
  public?: boolean;
}

export function pushTokenMetadata(body: { aliases?: { name: string; description: string }[] | null; expires_at?: string; properties?: Record<string, string> | null; public: boolean }): Record<string, unknown> {
  return { aliases: body.aliases ?? null, expires_at: body.expires_at ?? "0001-01-01T00:00:00Z", properties: body.properties ?? null, public: body.public };
}

export function pushedFields(meta: Record<string, unknown>): PushedFields {
  const aliases = Array.isArray(meta.aliases)
    ? (meta.aliases as unknown[]).filter((a): a is { name: string; description?: string } => typeof (a as { name?: unknown })?.name === "string").map((a) => ({ name: a.name, description: String(a.description ?? "") }))
    : [];
  const props = meta.properties && typeof meta.properties === "object" ? Object.fromEntries(Object.entries(meta.properties as Record<string, unknown>).map(([k, v]) => [k, String(v)])) : undefined;
  return {
    aliases,
    expiresAt: typeof meta.expires_at === "string" && meta.expires_at !== "" ? meta.expires_at : undefined,
    properties: props,
    public: typeof meta.public === "boolean" ? meta.public : undefined,
  };
}

/** The secret an upload operation answers with, so an untrusted pusher can wait on it. */
export function uploadSecret(): string {
  return randomBytes(32).toString("hex");
}
