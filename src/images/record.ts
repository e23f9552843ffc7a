// An image record as the API shows it (LXD 5.0.2's field order), and the time and requestor
// fields as LXD writes them.
import type { ImageRecordRow, ImageRepo, ImageSourceRow } from "../db/image-repo.js";
import { sortedMap } from "../db/image-repo.js";
import { NotFound } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";
import type { EventRequestor } from "../operations/types.js";

export const ZERO_TIME = "0001-01-01T00:00:00Z";

/** A time as Go's encoding/json writes it (RFC 3339, no zero fraction). */
export function goTime(d: Date): string {
  return d.toISOString().replace(/\.000Z$/, "Z");
}

export const unixTime = (seconds: number): string => goTime(new Date(seconds * 1000));

/** A client-given RFC 3339 time as stored, or undefined when absent or unparsable. */
export const validTime = (t: string | undefined): string | undefined =>
  t && !Number.isNaN(new Date(t).getTime()) ? (t.startsWith("0001-01-01") ? ZERO_TIME : goTime(new Date(t))) : undefined;

export interface ImageAliasEntry {
  name: string;
  description: string;
}

/** The image object as LXD 5.0.2 serialises it (field order included). */
export interface ImageView {
  auto_update: boolean;
  properties: Record<string, string>;
  public: boolean;
  expires_at: string;
  profiles: string[];
  aliases: ImageAliasEntry[];
  architecture: string;
  cached: boolean;
  filename: string;
  fingerprint: string;
  size: number;
  /** Where a remote image came from (LXD's images_source), for images that have one. */
  update_source?: { alias: string; certificate: string; protocol: string; server: string; image_type: string };
  type: string;
  created_at: string;
  last_used_at: string;
  uploaded_at: string;
}

export function imageView(repo: Pick<ImageRepo, "aliasesOf" | "source">, row: ImageRecordRow): ImageView {
  return {
    auto_update: row.auto_update,
    properties: sortedMap(row.properties),
    public: row.public,
    expires_at: row.expires_at,
    profiles: row.profiles,
    aliases: repo.aliasesOf(row.project, row.fingerprint).map((a) => ({ name: a.name, description: a.description })),
    architecture: row.architecture,
    cached: row.cached,
    filename: row.filename,
    fingerprint: row.fingerprint,
    size: row.size,
    ...updateSource(repo.source(row.project, row.fingerprint)),
    type: row.type,
    created_at: row.created_at,
    last_used_at: row.last_used_at,
    uploaded_at: row.uploaded_at,
  };
}

function updateSource(src: ImageSourceRow | undefined): Pick<ImageView, "update_source"> {
  return src ? { update_source: { alias: src.alias, certificate: src.certificate, protocol: src.protocol, server: src.server, image_type: "" } } : {};
}

/** Who asked, as a lifecycle event names them. */
export function eventRequestor(r?: Requestor): EventRequestor | undefined {
  return r ? { username: r.username, protocol: r.protocol, address: r.address } : undefined;
}

export function imageNotFound(): never {
  throw new NotFound("Image not found");
}
