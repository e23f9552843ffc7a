// Unpacking images into instance volumes. The first unpack of an image also keeps the validated
// tree in $LXD_DIR/cache/image-trees: later instances copy it instead of decompressing and
// checking the tarball again.
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { lstat, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { ImageRecordRow } from "../db/image-repo.js";
import { BadRequest, NotFound } from "../shared/errors.js";
import { copyTreeInto } from "../storage/tree-copy.js";
import { extractTarball } from "./archive.js";
import { exists, FINGERPRINT_RE, type ImageFiles } from "./files.js";
import { imageNotFound } from "./record.js";
import { extractSquashfs, isSquashfs } from "./squashfs.js";
import { BUILD_PREFIX } from "./upload.js";

/** How long after a first unpack the image's tree is built (see buildTreeLater). */
const TREE_BUILD_DELAY_MS = 3000;

export interface ImageTreesDeps {
  files: ImageFiles;
  /** Any project's record of a fingerprint. */
  anyRecord(fingerprint: string): ImageRecordRow | undefined;
  /** A cluster member without an image's files copies them from another member on demand. */
  fetchFromMember?: (project: string, fingerprint: string) => Promise<void>;
  log: Logger;
}

export class ImageTrees {
  /** Trees being built after a first unpack, by fingerprint. */
  private readonly treeBuilds = new Map<string, Promise<unknown>>();
  private readonly background = new AbortController();
  private readonly files: ImageFiles;

  constructor(private readonly deps: ImageTreesDeps) {
    this.files = deps.files;
  }

  /** Unpack an image into `target` (an existing, empty directory) as an instance volume lays it out (ImagesPort). */
  async unpackInto(fingerprint: string, target: string, opts: { signal?: AbortSignal; progress?: (percent: number) => void } = {}): Promise<void> {
    if (!FINGERPRINT_RE.test(fingerprint)) throw new NotFound("Image not found");
    const row = this.deps.anyRecord(fingerprint) ?? imageNotFound();
    if (row.type !== "container") throw new BadRequest("Only container images can be unpacked");
    const st = await lstat(target);
    if (!st.isDirectory()) throw new Error(`Unpack target ${target} is not a directory`);
    if ((await readdir(target)).length > 0) throw new Error(`Unpack target ${target} is not empty`);
    const fetch = this.deps.fetchFromMember;
    if (fetch && !existsSync(this.files.imageFile(fingerprint))) {
      await this.files.withLock(fingerprint, async () => {
        if (!existsSync(this.files.imageFile(fingerprint))) await fetch(row.project, fingerprint);
      });
    }
    // First use of a split image (what image servers ship): unpack straight into the target, as
    // LXD does, and keep the image's tree for later instances by building it afterwards, off this
    // launch's path (an unpack and a full copy less for the first launch from a remote image).
    if (row.split && !(await exists(this.files.treeDir(fingerprint)))) {
      try {
        await this.extractImage(row, target, opts);
      } catch (err) {
        await emptyDir(target);
        throw err;
      }
      if (!this.treeBuilds.has(fingerprint)) this.buildTreeLater(row);
      opts.progress?.(100);
      return;
    }
    const tree = await this.unpackedTree(row, opts);
    try {
      await copyTreeInto(tree, target, { signal: opts.signal });
    } catch (err) {
      await emptyDir(target);
      throw err;
    }
    opts.progress?.(100);
  }

  /**
   * Build the image's tree in the background (once), a few seconds later so that it does not
   * compete with the start of the instance just unpacked; until it exists, further instances
   * unpack from the image too. stop() cancels it; a failure only logs.
   */
  private buildTreeLater(row: ImageRecordRow): void {
    const fp = row.fingerprint;
    const build = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, TREE_BUILD_DELAY_MS);
      timer.unref();
      this.background.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    })
      .then(() => (this.background.signal.aborted ? undefined : this.unpackedTree(row, { signal: this.background.signal })))
      .catch((e) => this.deps.log.debug({ err: (e as Error).message, fingerprint: fp }, "image tree build failed"))
      .finally(() => this.treeBuilds.delete(fp));
    this.treeBuilds.set(fp, build);
  }

  /** Cancel background tree builds and wait for them (daemon stop). */
  async stop(): Promise<void> {
    this.background.abort();
    await Promise.allSettled([...this.treeBuilds.values()]);
  }

  /** The image's validated, unpacked tree: built once (atomically, by rename), then reused. */
  private unpackedTree(row: ImageRecordRow, opts: { signal?: AbortSignal; progress?: (percent: number) => void }): Promise<string> {
    const fingerprint = row.fingerprint;
    const tree = this.files.treeDir(fingerprint);
    return this.files.withLock(fingerprint, async () => {
      if (await exists(tree)) return tree;
      if (!this.deps.anyRecord(fingerprint)) imageNotFound();
      const building = `${tree}.${BUILD_PREFIX}${randomBytes(6).toString("hex")}`;
      await mkdir(this.files.treesDir, { recursive: true, mode: 0o700 });
      await mkdir(building, { mode: 0o755 });
      try {
        await this.extractImage(row, building, opts);
        await rename(building, tree);
      } catch (err) {
        await rm(building, { recursive: true, force: true });
        throw err;
      }
      return tree;
    });
  }

  private async extractImage(row: ImageRecordRow, target: string, opts: { signal?: AbortSignal; progress?: (percent: number) => void }): Promise<void> {
    const fingerprint = row.fingerprint;
    const files = row.split ? [this.files.imageFile(fingerprint), this.files.rootfsFile(fingerprint)] : [this.files.imageFile(fingerprint)];
    const sizes = await Promise.all(files.map(async (f) => (await stat(f)).size));
    const total = sizes.reduce((a, b) => a + b, 0) || 1;
    let last = -1;
    const report = (bytes: number) => {
      const pct = Math.min(99, Math.floor((bytes * 100) / total));
      if (pct !== last) {
        last = pct;
        opts.progress?.(pct);
      }
    };
    if (!row.split) {
      await extractTarball(files[0], target, {}, { signal: opts.signal, onRead: report });
    } else {
      const rootfs = join(target, "rootfs");
      await mkdir(rootfs, { mode: 0o755 });
      // The metadata tarball and the rootfs unpack at the same time (two processes).
      const rootfsDone = (async () => {
        // Every stored squashfs passed scanSquashfs when it was imported (inspect), and the
        // store's files are never rewritten: it is not listed and checked a second time here.
        if (await isSquashfs(files[1])) await extractSquashfs(files[1], rootfs, opts.signal, { checked: true });
        else await extractTarball(files[1], rootfs, { root: "rootfs" }, { signal: opts.signal, onRead: (b) => report(sizes[0] + b) });
      })();
      const [metaDone, rootfsResult] = await Promise.allSettled([extractTarball(files[0], target, {}, { signal: opts.signal, onRead: report }), rootfsDone]);
      if (metaDone.status === "rejected") throw metaDone.reason;
      if (rootfsResult.status === "rejected") throw rootfsResult.reason;
      if (!(await lstat(rootfs)).isDirectory()) throw new Error("Image rootfs is not a directory");
    }
    const rootfs = await lstat(join(target, "rootfs")).catch(() => undefined);
    if (!rootfs?.isDirectory()) throw new Error("Image has no rootfs directory");
  }
}

/** Remove everything inside `dir` (never following symlinks), keeping `dir`. */
async function emptyDir(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, name), { recursive: true, force: true });
}
