// ETags of API objects, the same bytes LXD hashes.
import { createHash } from "node:crypto";

/** LXD's ETag: sha256 of the value as Go's json.Encoder writes it (HTML-escaped, newline-terminated). */
export function etagOf(value: unknown): string {
  const json = JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  return createHash("sha256").update(json + "\n").digest("hex");
}
