// The LXD protocol as a client of another LXD (or nodelxd): GET /1.0 over HTTPS with the
// server's certificate pinned when one is given, aliases via /1.0/images/aliases/<name>,
// the image via /1.0/images/<fp>[?secret=], its files via /export (unified, or multipart
// "metadata" + "rootfs"/"rootfs.img"), the sha256 of all bytes checked against the fingerprint.
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { Writable } from "node:stream";
import { boundaryOf, readMultipart, type PartSink } from "../multipart.js";
import { httpsGet, readBody, streamBody } from "./http.js";
import { progressTracker } from "./progress.js";
import type { DownloadResult, ImageServer, RemoteImage, ServerAddress, TransferOptions } from "./types.js";

interface Envelope {
  type?: string;
  status_code?: number;
  error_code?: number;
  error?: string;
  metadata?: unknown;
}

/** The error an LXD envelope carries, or the HTTP status. */
async function envelopeError(res: IncomingMessage): Promise<Error> {
  try {
    const body = JSON.parse((await readBody(res, 1024 * 1024)).toString("utf8")) as Envelope;
    if (body?.type === "error" && typeof body.error === "string") return new Error(body.error);
  } catch {
    /* not an envelope */
  }
  return new Error(`${res.statusCode} ${res.statusMessage ?? ""}`.trimEnd());
}

export function lxdServer(address: ServerAddress, project = ""): ImageServer {
  const base = address.server.replace(/\/+$/, "");
  const t = (opts: TransferOptions) => ({ certificate: address.certificate || undefined, client: address.client, signal: opts.signal });
  const withQuery = (path: string, q: Record<string, string | undefined>) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v) p.set(k, v);
    const s = p.toString();
    return `${base}${path}${s ? `?${s}` : ""}`;
  };
  let connected = false;

  const query = async (path: string, q: Record<string, string | undefined>, opts: TransferOptions): Promise<unknown> => {
    if (!connected) {
      // ConnectPublicLXD: the server must answer GET /1.0 (this also proves the pinned certificate).
      try {
        const res = await httpsGet(`${base}/1.0`, t(opts));
        if (res.statusCode !== 200) throw await envelopeError(res);
        await readBody(res);
      } catch (e) {
        throw new Error(`Failed to connect to LXD server "${address.server}": ${(e as Error).message}`);
      }
      connected = true;
    }
    const res = await httpsGet(withQuery(path, { ...q, project: project || undefined }), t(opts));
    if (res.statusCode !== 200) throw await envelopeError(res);
    const body = JSON.parse((await readBody(res)).toString("utf8")) as Envelope;
    if (body?.type !== "sync") throw new Error("Unexpected response from the remote server");
    return body.metadata;
  };

  return {
    async alias(name, type, opts) {
      let entry: { name?: string; target?: string; type?: string };
      try {
        entry = (await query(`/1.0/images/aliases/${encodeURIComponent(name)}`, {}, opts)) as typeof entry;
      } catch (e) {
        if ((e as Error).message.startsWith("Failed to connect")) throw e;
        return undefined;
      }
      if (!entry || typeof entry.target !== "string") return undefined;
      if (type !== "" && entry.type !== type) return undefined;
      return { name: entry.name ?? name, target: entry.target, type: entry.type ?? "container" };
    },

    async image(fingerprint, opts) {
      const raw = (await query(`/1.0/images/${encodeURIComponent(fingerprint)}`, { secret: opts.secret }, opts)) as Partial<RemoteImage> | null;
      if (!raw || typeof raw.fingerprint !== "string" || !/^[0-9a-f]{64}$/.test(raw.fingerprint)) throw new Error("Invalid image description from the remote server");
      return {
        fingerprint: raw.fingerprint,
        type: raw.type === "virtual-machine" ? "virtual-machine" : "container",
        architecture: String(raw.architecture ?? ""),
        public: raw.public === true,
        filename: String(raw.filename ?? ""),
        size: Number(raw.size ?? 0),
        properties: Object.fromEntries(Object.entries(raw.properties ?? {}).map(([k, v]) => [k, String(v)])),
        aliases: Array.isArray(raw.aliases) ? raw.aliases.map((a) => ({ name: String(a?.name ?? ""), description: String(a?.description ?? "") })) : [],
        created_at: String(raw.created_at ?? ""),
        expires_at: String(raw.expires_at ?? ""),
        uploaded_at: String(raw.uploaded_at ?? ""),
      };
    },

    async download(image, into, opts): Promise<DownloadResult> {
      const url = withQuery(`/1.0/images/${image.fingerprint}/export`, { secret: opts.secret, project: project || undefined });
      const res = await httpsGet(url, t(opts));
      if (res.statusCode !== 200) throw await envelopeError(res);
      const hash = createHash("sha256");
      const limit = opts.limit;
      const contentType = String(res.headers["content-type"] ?? "application/octet-stream");
      const track = lxdProgress(opts.progress);
      let size = 0;
      let result: DownloadResult;
      if (/^multipart\/form-data\b/i.test(contentType)) {
        const boundary = boundaryOf(contentType);
        if (!boundary) throw new Error("Invalid multipart image");
        const total = Number(res.headers["content-length"] ?? 0) || 0;
        let rootfsPart: "rootfs" | "rootfs.img" | undefined;
        const sinkOf = (w: Writable): PartSink => ({
          write: async (c) => {
            size += c.length;
            if (limit !== undefined && size > limit) throw new Error(`Remote image exceeds the allowed size of ${limit} bytes`);
            hash.update(c);
            track(size, total);
            if (!w.write(c)) await new Promise<void>((r) => w.once("drain", () => r()));
          },
          close: async () => {},
        });
        const discard: PartSink = { write: async () => {}, close: async () => {} };
        const parts = await readMultipart(res, boundary, (part, index) => {
          if (index === 0 && part.name !== "metadata") throw new Error("Invalid multipart image");
          if (index === 1) {
            if (part.name !== "rootfs" && part.name !== "rootfs.img") throw new Error("Invalid multipart image");
            rootfsPart = part.name;
          }
          if (index > 1) return discard;
          return sinkOf(index === 0 ? into.meta : into.rootfs);
        });
        if (!res.complete) throw new Error(`Download of ${url} was truncated`);
        if (parts < 2 || !rootfsPart) throw new Error("Invalid multipart image");
        result = { split: true, fingerprint: "", size, rootfsPart };
      } else {
        size = await streamBody(url, res, into.meta, { combined: hash, limit, onBytes: track });
        result = { split: false, fingerprint: "", size };
      }
      const got = hash.digest("hex");
      if (!got.startsWith(image.fingerprint)) throw new Error(`Image fingerprint doesn't match. Got ${got} expected ${image.fingerprint}`);
      return { ...result, fingerprint: got };
    },
  };
}

/** lxdDownloadImage's progress text: "45% (1.20MB/s)", or bytes when the length is unknown. */
function lxdProgress(report: TransferOptions["progress"]): (done: number, total: number) => void {
  const inner = progressTracker("", report);
  return (done, total) => inner(done, total);
}
