// An image's files as one HTTP body, as LXD sends them: the stored tarball as-is (unified), or a
// multipart body with the metadata and rootfs parts (split). GET /1.0/images/{fp}/export (and the
// guest API's) serve it; an image push uploads it.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { ImageRecordRow } from "../db/image-repo.js";
import { detectFileCodec } from "./compression.js";
import type { ImageService } from "./service.js";

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
