// /1.0/instances/{name}/files?path= (and the /1.0/containers alias).
import { posix } from "node:path";
import { pipeline } from "node:stream/promises";
import type { FastifyReply } from "fastify";
import type { FileHeaders, FileService, FileType, PushOptions } from "../../files/file-service.js";
import { BadRequest } from "../../shared/errors.js";
import { handled, route, sync, type ApiRequest, type Route } from "../route.js";

function pathParam(req: ApiRequest): string {
  const path = req.query.path;
  if (!path) throw new BadRequest("Missing path argument");
  if (path.includes("\0")) throw new BadRequest("Invalid path");
  return path;
}

const header = (req: ApiRequest, name: string): string => {
  const v = req.headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? "";
};

/**
 * X-LXD-uid / X-LXD-gid: absent means "not given" (LXD's -1); anything else must be a decimal
 * id 0..4294967294 (messages as newer LXD's ParseLXDFileHeaders, which refuses what 5.0.2 ignored).
 */
function idHeader(req: ApiRequest, name: "uid" | "gid"): number | undefined {
  const raw = header(req, `x-lxd-${name}`);
  if (raw === "") return undefined;
  const what = name.toUpperCase();
  if (!/^[0-9]+$/.test(raw)) throw new BadRequest(`Invalid ${what}: strconv.ParseInt: parsing ${JSON.stringify(raw)}: invalid syntax`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n > 0xfffffffe) throw new BadRequest(`Invalid ${what}: strconv.ParseInt: parsing ${JSON.stringify(raw)}: value out of range`);
  return n;
}

/** X-LXD-mode: octal permission bits (the client sends "%04o"), at most 07777. */
function modeHeader(req: ApiRequest): number | undefined {
  const raw = header(req, "x-lxd-mode");
  if (raw === "") return undefined;
  if (!/^[0-7]{1,5}$/.test(raw) || Number.parseInt(raw, 8) > 0o7777) throw new BadRequest(`Invalid Mode: ${JSON.stringify(raw)} is not an octal file mode (0000 to 7777)`);
  return Number.parseInt(raw, 8);
}

export function pushOptions(req: ApiRequest): PushOptions {
  const type = header(req, "x-lxd-type") || "file";
  if (!["file", "directory", "symlink"].includes(type)) throw new BadRequest(`Bad file type: ${type}`);
  const write = header(req, "x-lxd-write") || "overwrite";
  if (write !== "overwrite" && write !== "append") throw new BadRequest(`Bad file write mode: ${write}`);
  return { type: type as FileType, write, uid: idHeader(req, "uid"), gid: idHeader(req, "gid"), mode: modeHeader(req) };
}

/** Go's time.Time.String() in UTC, as LXD's X-LXD-modified. */
function goTime(d: Date): string {
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " +0000 UTC");
}

function setFileHeaders(reply: FastifyReply, h: FileHeaders): void {
  reply
    .header("X-LXD-uid", String(h.uid))
    .header("X-LXD-gid", String(h.gid))
    .header("X-LXD-mode", h.mode.toString(8).padStart(4, "0"))
    .header("X-LXD-modified", goTime(h.modified))
    .header("X-LXD-type", h.type);
}

export function fileRoutes(files: FileService): Route[] {
  const r = route("/1.0/instances/:name/files", {
    GET: (req, reply) => {
      const path = pathParam(req);
      const content = files.get(req.project, req.params.name, path);
      setFileHeaders(reply, content.headers);
      if (content.kind === "directory") return sync(content.entries);
      // Raw content goes straight to the socket, streamed with backpressure.
      reply.hijack();
      const res = reply.raw;
      for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) res.setHeader(k, v as string);
      res.setHeader("content-type", "application/octet-stream");
      res.setHeader("content-disposition", `inline;filename=${posix.basename(path) || "/"}`);
      res.setHeader("last-modified", content.headers.modified.toUTCString());
      if (content.kind === "symlink") {
        const body = Buffer.from(content.target);
        res.setHeader("content-length", String(body.length));
        res.writeHead(200).end(body);
      } else {
        res.setHeader("content-length", String(content.size));
        res.writeHead(200);
        void pipeline(content.open(), res).catch(() => res.destroy());
      }
      return handled();
    },
    HEAD: (req, reply) => {
      const content = files.get(req.project, req.params.name, pathParam(req));
      if (content.kind === "file") content.open().destroy();
      setFileHeaders(reply, content.headers);
      reply.code(200).header("content-type", "application/json").send();
      return handled();
    },
    POST: async (req) => {
      await files.push(req.project, req.params.name, pathParam(req), pushOptions(req), req.stream);
      return sync({});
    },
    DELETE: (req) => {
      files.delete(req.project, req.params.name, pathParam(req));
      return sync({});
    },
  }, "project");
  return [r, { ...r, path: "/1.0/containers/:name/files" }];
}
