// A cluster member that must unpack an image whose files another member holds copies them first,
// as LXD's imageImportFromNode: the image's /export from the first other member that answers, as
// an LXD client of it (unified, or split as multipart), the sha256 checked against the
// fingerprint, written beside the store and renamed into place only when complete.
import { randomBytes } from "node:crypto";
import { createWriteStream, type WriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ImageFiles } from "./files.js";
import { BUILD_PREFIX } from "./upload.js";
import { lxdServer } from "./remote/lxd.js";
import type { RemoteImage, ServerAddress } from "./remote/types.js";

function closed(w: WriteStream): Promise<void> {
  return new Promise((resolve, reject) => {
    w.once("error", reject);
    w.end(() => resolve());
  });
}

/** Copy `fingerprint`'s files from the first of `peers` that has them into the store. */
export async function copyImageFromMembers(peers: ServerAddress[], project: string, fingerprint: string, files: ImageFiles): Promise<void> {
  const errors: string[] = [];
  for (const peer of peers) {
    // Build names: a copy cut by a crash is removed at the next start.
    const tmp = join(files.dir, `${BUILD_PREFIX}member-copy-${randomBytes(6).toString("hex")}`);
    const metaTmp = `${tmp}.meta`;
    const rootfsTmp = `${tmp}.rootfs`;
    const meta = createWriteStream(metaTmp, { mode: 0o600 });
    const rootfs = createWriteStream(rootfsTmp, { mode: 0o600 });
    try {
      const got = await lxdServer(peer, project).download({ fingerprint } as RemoteImage, { meta, rootfs }, {});
      await Promise.all([closed(meta), closed(rootfs)]);
      if (got.fingerprint !== fingerprint) throw new Error(`Image fingerprint doesn't match. Got ${got.fingerprint} expected ${fingerprint}`);
      if (got.split) await rename(rootfsTmp, files.rootfsFile(fingerprint));
      await rename(metaTmp, files.imageFile(fingerprint));
      return;
    } catch (err) {
      meta.destroy();
      rootfs.destroy();
      errors.push(`${peer.server}: ${(err as Error).message}`);
    } finally {
      await rm(metaTmp, { force: true });
      await rm(rootfsTmp, { force: true });
    }
  }
  throw new Error(`No cluster member has the files of image ${fingerprint}${errors.length ? ` (${errors.join("; ")})` : ""}`);
}
