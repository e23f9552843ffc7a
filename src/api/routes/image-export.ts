// GET /1.0/images/{fingerprint}/export (and the guest API's): the image's body (images/image-body.ts)
// written to the response with LXD's headers.
import { pipeline } from "node:stream/promises";
import type { FastifyReply } from "fastify";
import type { ServerResponse } from "node:http";
import type { ApiRequest } from "../route.js";
import type { ImageRecordRow } from "../../db/image-repo.js";
import { encode, errorEnvelope } from "../../shared/envelope.js";
import { NotFound, toApiError } from "../../shared/errors.js";
import type { ImageService } from "../../images/service.js";
import { imageBody } from "../../images/image-body.js";

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
