// The image store's files: $LXD_DIR/images/<fingerprint> (+ <fingerprint>.rootfs for split
// images) and the unpacked trees in $LXD_DIR/cache/image-trees, with one lock per fingerprint
// that serialises placing, unpacking and removing them.
import { link, lstat, readdir, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { BUILD_PREFIX, type Upload } from "./upload.js";

export const FINGERPRINT_RE = /^[0-9a-f]{64}$/;

export class ImageFiles {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    readonly dir: string,
    /** Where unpacked, validated image trees are kept (one directory per fingerprint). */
    readonly treesDir: string,
  ) {}

  imageFile(fingerprint: string): string {
    return join(this.dir, fingerprint);
  }

  rootfsFile(fingerprint: string): string {
    return join(this.dir, `${fingerprint}.rootfs`);
  }

  treeDir(fingerprint: string): string {
    return join(this.treesDir, fingerprint);
  }

  /** Run `fn` alone among the file work on `fingerprint`. */
  withLock<T>(fingerprint: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(fingerprint) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => {});
    this.locks.set(fingerprint, settled);
    void settled.then(() => {
      if (this.locks.get(fingerprint) === settled) this.locks.delete(fingerprint);
    });
    return next;
  }

  /** Start-up: remove build directories a crash left behind, and files no record refers to. */
  async cleanup(known: Set<string>, log: Logger): Promise<void> {
    for (const name of await readdir(this.treesDir).catch(() => [] as string[])) {
      if (!known.has(name)) await rm(join(this.treesDir, name), { recursive: true, force: true });
    }
    for (const name of await readdir(this.dir)) {
      const fp = name.replace(/\.rootfs$/, "");
      if (name.startsWith(BUILD_PREFIX) || (FINGERPRINT_RE.test(fp) && !known.has(fp))) {
        log.info({ file: name }, "removing leftover image file");
        await rm(join(this.dir, name), { recursive: true, force: true });
      }
    }
  }

  /** The fingerprints whose files (or kept tree) this member holds. */
  async held(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const fp = name.replace(/\.rootfs$/, "");
      if (FINGERPRINT_RE.test(fp)) out.add(fp);
    }
    for (const name of await readdir(this.treesDir).catch(() => [] as string[])) if (FINGERPRINT_RE.test(name)) out.add(name);
    return out;
  }

  /** Where an upload's files go in the store. */
  uploadMoves(upload: Upload): [string, string][] {
    return upload.kind === "unified"
      ? [[upload.file, this.imageFile(upload.fingerprint)]]
      : [
          [upload.metaFile, this.imageFile(upload.fingerprint)],
          [upload.rootfsFile, this.rootfsFile(upload.fingerprint)],
        ];
  }

  /** Hard-link files into the store; returns the paths this call created. */
  async place(moves: [string, string][]): Promise<string[]> {
    const created: string[] = [];
    try {
      for (const [from, to] of moves) {
        // Another project may hold the same image already: the file is shared, keep it.
        if (await exists(to)) continue;
        // link() fails if `to` appeared meanwhile, where rename() would replace it under a reader.
        const made = await link(from, to).then(
          () => true,
          (e: NodeJS.ErrnoException) => {
            if (e.code !== "EEXIST") throw e;
            return false;
          },
        );
        if (made) created.push(to);
      }
      return created;
    } catch (err) {
      await this.unplace(created);
      throw err;
    }
  }

  /** Take back the files a place() created. */
  async unplace(created: string[]): Promise<void> {
    for (const p of created) await unlink(p).catch(() => {});
  }

  /** Remove an image's files and tree (no project holds it any more). */
  async remove(fingerprint: string): Promise<void> {
    await rm(this.imageFile(fingerprint), { force: true });
    await rm(this.rootfsFile(fingerprint), { force: true });
    await rm(this.treeDir(fingerprint), { recursive: true, force: true });
  }
}

export async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}
