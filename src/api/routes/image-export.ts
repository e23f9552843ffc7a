// An image's files as one HTTP body, as LXD sends them: the stored tarball as-is (unified), or a
// multipart body with the metadata and rootfs parts (split). Served by GET
// /1.0/images/{fingerprint}/export (and the guest API's), and uploaded by an image push.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyReply } from "fastify";
import type { ServerResponse } from "node:http";
import type { ApiRequest } from "../route.js";
import type { ImageRecordRow } from "../../db/image-repo.js";
import { detectFileCodec } from "../../images/compression.js";
import { encode, errorEnvelope } from "../../shared/envelope.js";
import { NotFound, toApiError } from "../../shared/errors.js";
import type { ImageService } from "../../images/service.js";

async function nameFor(fingerprint: string, file: string): Promise<string> {
  const codec = await detectFileCodec(file).catch(() => undefined);
  return fingerprint + (codec?.extension ?? "");
}

export interface ImageBody {
  /** Content-Type: application/octet-stream, or multipart/form-data with its boundary. */
  contentType: string;
  length: number;
  /** The unified file's name (Content-Disposition), "" for multipart. */
  filename: string;
  /** A fresh stream of the body's bytes. */
  open(): Readable;
}

/**
 * The body for `row`. `names` chooses the file names: "export" as GET /export names them
 * (FINGERPRINT.EXT, meta-FINGERPRINT.EXT), "push" as LXD's push names them (the store's
 * file names: FINGERPRINT and FINGERPRINT.rootfs).
 */
export async function imageBody(images: ImageService, row: ImageRecordRow, names: "export" | "push"): Promise<ImageBody> {
  const fp = row.fingerprint;
  const meta = images.imageFile(fp);
  if (!row.split) {
    return { contentType: "application/octet-stream", length: (await stat(meta)).size, filename: names === "push" ? fp : await nameFor(fp, meta), open: () => createReadStream(meta) };
  }
  const rootfs = images.rootfsFile(fp);
  const boundary = randomBytes(30).toString("hex");
  const partHead = (name: string, filename: string, first: boolean) =>
    Buffer.from(`${first ? "" : "\r\n"}--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
  const metaName = names === "push" ? fp : "meta-" + (await nameFor(fp, meta));
  const rootfsName = names === "push" ? `${fp}.rootfs` : await nameFor(fp, rootfs);
  const heads = [partHead("metadata", metaName, true), partHead(row.type === "virtual-machine" ? "rootfs.img" : "rootfs", rootfsName, false)];
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const sizes = [(await stat(meta)).size, (await stat(rootfs)).size];
  async function* parts(): AsyncGenerator<Buffer> {
    for (const [i, file] of [meta, rootfs].entries()) {
      yield heads[i];
      for await (const chunk of createReadStream(file)) yield chunk as Buffer;
    }
    yield tail;
  }
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    length: heads[0].length + heads[1].length + tail.length + sizes[0] + sizes[1],
    filename: "",
    open: () => Readable.from(parts(), { objectMode: false }),
  };
}

/** Write the export of `row` to a raw response (headers included). */
export async function writeImageExport(images: ImageService, row: ImageRecordRow, res: ServerResponse): Promise<void> {
  const body = await imageBody(images, row, "export");
  const headers: Record<string, string> = { "content-type": body.contentType, "content-length": String(body.length) };
  if (body.filename) headers["content-disposition"] = `inline;filename=${body.filename}`;
  res.writeHead(200, headers);
  await pipeline(body.open(), res).catch(() => res.destroy());
}

export async function exportImage(images: ImageService, row: ImageRecordRow, req: ApiRequest, reply: FastifyReply): Promise<void> {
  reply.hijack();
  await writeImageExport(images, row, reply.raw);
  images.retrieved(row.project, row.fingerprint, req.requestor);
}

/**
 * GET /1.0/images/{fp}/export on /dev/lxd (security.devlxd.images): LXD serves the image of the
 * request's project (default "default") that the prefix names, if it is public or cached;
 * anything else is its 404 envelope, "Image not found" or `Image "<fp>" not found`.
 */
export async function exportForGuest(images: ImageService, project: string, fingerprint: string, res: ServerResponse): Promise<void> {
  let row: ImageRecordRow;
  try {
    row = images.byPrefix(images.projectFor(project), fingerprint);
    if (!row.public && !row.cached) throw new NotFound(`Image ${JSON.stringify(fingerprint)} not found`);
  } catch (e) {
    const err = toApiError(e);
    res.writeHead(err.status, { "content-type": "application/json" });
    res.end(encode(errorEnvelope(err.status, err.message)));
    return;
  }
  await writeImageExport(images, row, res);
  images.retrieved(row.project, row.fingerprint);
}
