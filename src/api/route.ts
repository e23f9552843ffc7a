// Routes are declared as data: a path and its method handlers. Methods a path does not
// declare answer LXD's 501 "not implemented"; unknown paths answer 404 "not found".
import type { IncomingMessage } from "node:http";
import { pipeline } from "node:stream/promises";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { z } from "zod";
import type { OperationView } from "../operations/types.js";
import { METHODS, mayUseProject, type Access, type Method } from "./access.js";
import type { Requestor } from "../shared/requestor.js";
import { etagOf } from "../shared/etag.js";
import { BadRequest, PreconditionFailed } from "../shared/errors.js";
import { decode, parseJson, readBody } from "../shared/json.js";




export interface ApiRequest {
  method: string;
  url: string;
  params: Record<string, string>;
  query: Record<string, string | undefined>;
  headers: IncomingMessage["headers"];
  requestor: Requestor;
  /** The request project (`?project=`, default "default"). */
  project: string;
  /** `?recursion=` as a number (0 when absent). */
  recursion: number;
  /** Whether the caller may see and use objects of `project` (filters `all-projects` listings). */
  mayUse(project: string): boolean;
  /** The unread request body, for streaming endpoints (file push, image upload). */
  stream: IncomingMessage;
  /** Read and parse the body as JSON, validated by `schema`; `goType` names it in type errors. */
  body<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, goType: string): Promise<T>;
  /** Read and parse the body as JSON with no schema. */
  json(): Promise<unknown>;
}

export type Result =
  | { kind: "sync"; metadata: unknown; etag?: string; status?: number; location?: string }
  | { kind: "async"; operation: OperationView; location?: string }
  /** A sync response whose envelope was encoded ahead of time (hot, rarely changing documents). */
  | { kind: "encoded"; body: Buffer; etag?: string }
  | { kind: "handled" };

export const sync = (metadata: unknown, opts: { etag?: unknown } = {}): Result => ({
  kind: "sync",
  metadata,
  etag: opts.etag === undefined ? undefined : etagOf(opts.etag),
});
export const created = (location: string, metadata: unknown = {}): Result => ({ kind: "sync", metadata, status: 201, location });
export const operation = (op: OperationView): Result => ({ kind: "async", operation: op });
/** The handler wrote the reply itself (raw downloads, websocket upgrades). */
export const handled = (): Result => ({ kind: "handled" });

/** A backup file to download: its size and time, its bytes, and what to do once all are sent. */
export interface DownloadFile {
  size: number;
  mtime: Date;
  stream(): NodeJS.ReadableStream;
  retrieved(): void;
}

/** Send a backup file as LXD does (an empty filename: the client names the file). */
export function sendDownload(reply: FastifyReply, file: DownloadFile): Result {
  reply.hijack();
  reply.raw.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-length": String(file.size),
    "content-disposition": "inline;filename=",
    "last-modified": file.mtime.toUTCString(),
  });
  void pipeline(file.stream(), reply.raw)
    .then(() => file.retrieved())
    .catch(() => reply.raw.destroy());
  return handled();
}

export type Handler = (req: ApiRequest, reply: FastifyReply) => Promise<Result> | Result;

export interface Route {
  path: string;
  handlers: Partial<Record<Method, Handler>>;
  /** Who may call each method (see access.ts); the router enforces it before the handler runs. */
  access: Record<Method, Access>;
  /**
   * The project feature deciding which project holds this route's objects (features.networks=false:
   * the default project's). A restricted client may change them only if it holds that project.
   */
  feature?: ProjectFeature;
}

export type ProjectFeature = "images" | "profiles" | "storage.volumes" | "networks";

/** One level for every method, or one per method (a method left out is "admin", as LXD's default). */
export type AccessDecl = Access | Partial<Record<Method, Access>>;

const ALL_METHODS: Method[] = [...METHODS, "HEAD"];

/**
 * A route: its path, handlers, and who may call them. Without a declaration a method is
 * "admin" (unrestricted trusted clients only), as an LXD endpoint without an access handler.
 */
export const route = (path: string, handlers: Route["handlers"], access: AccessDecl = "admin", opts: { feature?: ProjectFeature } = {}): Route => ({
  path,
  handlers,
  feature: opts.feature,
  access: Object.fromEntries(ALL_METHODS.map((m) => [m, typeof access === "string" ? access : (access[m] ?? "admin")])) as Record<Method, Access>,
});


/** LXD's If-Match check: a mismatch is 412 "ETag doesn't match: <ours> vs <theirs>". */
export function checkEtag(req: ApiRequest, current: unknown): void {
  const header = req.headers["if-match"];
  if (!header) return;
  const theirs = String(header).replace(/^W\//, "").replace(/^"|"$/g, "");
  const ours = etagOf(current);
  if (theirs !== ours) throw new PreconditionFailed(`ETag doesn't match: ${ours} vs ${theirs}`);
}

export function toApiRequest(req: FastifyRequest, requestor: Requestor): ApiRequest {
  const query = (req.query ?? {}) as Record<string, string | undefined>;
  const recursion = Number.parseInt(query.recursion ?? "0", 10);
  let bodyRead: Promise<unknown> | undefined;
  const json = () => (bodyRead ??= readBody(req.raw).then((b) => parseJson(b.toString("utf8"))));
  return {
    method: req.method,
    url: req.url,
    params: (req.params ?? {}) as Record<string, string>,
    query,
    headers: req.headers,
    requestor,
    project: query.project || "default",
    recursion: Number.isNaN(recursion) ? 0 : recursion,
    mayUse: (project) => mayUseProject(requestor, project),
    stream: req.raw,
    json,
    async body(schema, goType) {
      return decode(schema, await json(), goType);
    },
  };
}

/** Parse a `?recursion=`-style integer query parameter strictly. */
export function intParam(req: ApiRequest, name: string, fallback: number): number {
  const raw = req.query[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new BadRequest(`Invalid ${name} value "${raw}"`);
  return n;
}
