// Receiving POST /1.0/images bodies: streamed to a build directory under $LXD_DIR/images
// while hashed, before the operation starts (as LXD does). Unified tarball, split
// multipart upload, or a JSON request (publish, remote sources).
import { createHash, randomUUID } from "node:crypto";
import { mkdir, open, readFile, rm, type FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Readable } from "node:stream";
import { BadRequest } from "../shared/errors.js";
import { parseJson } from "../shared/json.js";
import { boundaryOf, readMultipart, type PartSink } from "./multipart.js";

export const BUILD_PREFIX = ".build-";

interface Common {
  /** Build directory; removed by `discard()`. */
  dir: string;
  fingerprint: string;
  size: number;
  filename: string;
}
export type Upload =
  | (Common & { kind: "unified"; file: string })
  | (Common & { kind: "split"; metaFile: string; rootfsFile: string; rootfsPart: "rootfs" | "rootfs.img" });
export type Received = { kind: "json"; body: unknown } | Upload;

const JSON_SNIFF_LIMIT = 32 * 1024 * 1024;

/** A client-supplied filename, made safe to store and to echo in Content-Disposition. */
export function cleanFilename(name: string | undefined): string {
  if (!name) return "";
  return basename(name.replace(/\\/g, "/")).replace(/[\x00-\x1f\x7f"]/g, "");
}

async function fileSink(path: string, hash: ReturnType<typeof createHash>, count: (n: number) => void): Promise<PartSink & { fh: FileHandle }> {
  const fh = await open(path, "wx", 0o600);
  let closed = false;
  return {
    fh,
    async write(chunk) {
      hash.update(chunk);
      count(chunk.length);
      await fh.write(chunk);
    },
    async close() {
      if (closed) return;
      closed = true;
      await fh.sync();
      await fh.close();
    },
  };
}

/** `quota` (bytes, -1 for none) caps what the upload may write, as LXD's QuotaWriter (a project's limits.disk). */
export async function receiveUpload(imagesDir: string, stream: Readable, headers: Record<string, string | string[] | undefined>, quota = -1): Promise<Received> {
  const contentType = String(headers["content-type"] ?? "");
  if (/^application\/json\b/i.test(contentType)) {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of stream) {
      n += (c as Buffer).length;
      if (n > JSON_SNIFF_LIMIT) throw new BadRequest("Request body too large");
      chunks.push(c as Buffer);
    }
    return { kind: "json", body: parseJson(Buffer.concat(chunks).toString("utf8")) };
  }
  const dir = join(imagesDir, `${BUILD_PREFIX}${randomUUID()}`);
  await mkdir(dir, { mode: 0o700 });
  try {
    const hash = createHash("sha256");
    let size = 0;
    const count = (n: number) => {
      size += n;
      if (quota >= 0 && size > quota) throw new Error(`reached ${size} bytes, exceeding quota of ${quota}`);
    };
    if (/^multipart\/form-data\b/i.test(contentType)) {
      const boundary = boundaryOf(contentType);
      if (!boundary) throw new BadRequest("Invalid multipart image");
      const metaFile = join(dir, "metadata");
      const rootfsFile = join(dir, "rootfs");
      let rootfsPart: "rootfs" | "rootfs.img" | undefined;
      let filename = "";
      const discard: PartSink = { write: async () => {}, close: async () => {} };
      const opened: PartSink[] = [];
      const parts = await readMultipart(stream, boundary, (part, index) => {
        if (index === 0 && part.name !== "metadata") throw new BadRequest("Invalid multipart image");
        if (index === 1) {
          if (part.name !== "rootfs" && part.name !== "rootfs.img") throw new BadRequest("Invalid multipart image");
          rootfsPart = part.name;
          filename = cleanFilename(part.filename);
        }
        if (index > 1) return discard;
        // Open lazily: the sink's first write awaits the file.
        const pending = fileSink(index === 0 ? metaFile : rootfsFile, hash, count);
        const sink: PartSink = {
          write: async (c) => (await pending).write(c),
          close: async () => (await pending).close(),
        };
        opened.push(sink);
        return sink;
      });
      for (const s of opened) await s.close();
      if (parts < 2 || !rootfsPart) throw new BadRequest("Invalid multipart image");
      return { kind: "split", dir, metaFile, rootfsFile, rootfsPart, fingerprint: hash.digest("hex"), size, filename };
    }
    const file = join(dir, "image");
    const sink = await fileSink(file, hash, count);
    try {
      for await (const c of stream) await sink.write(c as Buffer);
    } finally {
      await sink.close();
    }
    // Like LXD, a body that decodes as JSON is a JSON request whatever its Content-Type says.
    if (size > 0 && size <= JSON_SNIFF_LIMIT && (await firstByte(file)) === "{") {
      const text = (await readFile(file)).toString("utf8");
      {
        try {
          const body = JSON.parse(text);
          await rm(dir, { recursive: true, force: true });
          return { kind: "json", body };
        } catch {
          /* not JSON: an image */
        }
      }
    }
    return { kind: "unified", dir, file, fingerprint: hash.digest("hex"), size, filename: cleanFilename(String(headers["x-lxd-filename"] ?? "")) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function firstByte(file: string): Promise<string> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(64);
    const { bytesRead } = await fh.read(buf, 0, 64, 0);
    return buf.toString("utf8", 0, bytesRead).trimStart().slice(0, 1);
  } finally {
    await fh.close();
  }
}

export async function discardUpload(u: Upload): Promise<void> {
  await rm(u.dir, { recursive: true, force: true });
}
