// A request body streamed to a private temp file (backup imports): the directory is 0700, the
// file 0600 and created exclusively; `discard` removes both, and a failed write leaves nothing.
import { randomUUID } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";

export async function receiveToTempFile(parent: string, prefix: string, body: Readable): Promise<{ file: string; discard: () => void }> {
  const dir = join(parent, `${prefix}${randomUUID()}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, "backup");
  const discard = () => rmSync(dir, { recursive: true, force: true });
  try {
    const fh = await open(file, "wx", 0o600);
    try {
      for await (const c of body) await fh.write(c as Buffer);
    } finally {
      await fh.close();
    }
  } catch (e) {
    discard();
    throw e;
  }
  return { file, discard };
}
