// GET /1.0/images/{fingerprint}/export: the stored tarball as-is (unified), or a
// multipart body with the metadata and rootfs parts (split), as LXD sends them.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import type { FastifyReply } from "fastify";
import type { ApiRequest } from "../route.js";
import type { ImageRecordRow } from "../../db/image-repo.js";
import { detectFileCodec } from "../../images/compression.js";
import type { ImageService } from "../../images/service.js";

async function nameFor(fingerprint: string, file: string): Promise<string> {
  const codec = await detectFileCodec(file).catch(() => undefined);
  return fingerprint + (codec?.extension ?? "");
}

export async function exportImage(images: ImageService, row: ImageRecordRow, req: ApiRequest, reply: FastifyReply): Promise<void> {
  const fp = row.fingerprint;
  const meta = images.imageFile(fp);
  reply.hijack();
  const res = reply.raw;
  if (!row.split) {
    const size = (await stat(meta)).size;
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": String(size),
      "content-disposition": `inline;filename=${await nameFor(fp, meta)}`,
    });
    await pipeline(createReadStream(meta), res).catch(() => res.destroy());
  } else {
    const rootfs = images.rootfsFile(fp);
    const boundary = randomBytes(30).toString("hex");
    const partHead = (name: string, filename: string, first: boolean) =>
      Buffer.from(`${first ? "" : "\r\n"}--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    const heads = [partHead("metadata", "meta-" + (await nameFor(fp, meta)), true), partHead(row.type === "virtual-machine" ? "rootfs.img" : "rootfs", await nameFor(fp, rootfs), false)];
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const sizes = [(await stat(meta)).size, (await stat(rootfs)).size];
    const length = heads[0].length + heads[1].length + tail.length + sizes[0] + sizes[1];
    res.writeHead(200, { "content-type": `multipart/form-data; boundary=${boundary}`, "content-length": String(length) });
    try {
      for (const [i, file] of [meta, rootfs].entries()) {
        res.write(heads[i]);
        await pipeline(createReadStream(file), res, { end: false });
      }
      res.end(tail);
    } catch {
      res.destroy();
    }
  }
  images.retrieved(row.project, fp, req.requestor);
}
