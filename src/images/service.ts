// The image store: records in SQLite, tarballs in $LXD_DIR/images/<fingerprint>
// (+ <fingerprint>.rootfs for split images). Owns import, lookup, unpack and removal.
// The first unpack of an image also keeps the validated tree in $LXD_DIR/cache/image-trees:
// later instances copy it instead of decompressing and checking the tarball again.
import { inBackgroundTask } from "./background.js";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { link, lstat, mkdir, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { BadRequest, Conflict, InternalError, NotFound } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";
import type { ImageRecord, ImagesPort } from "../ports.js";
import { sortedMap, type AliasRow, type ImageRecordRow, type ImageRepo, type ImageSourceRow } from "../db/image-repo.js";
import type { EventHub } from "../operations/events.js";
import { extractTarball, scanTarball } from "./archive.js";
import { parseImageMetadata, type ImageMetadata } from "./metadata.js";
import type { RemoteImage } from "./remote/types.js";
import { extractSquashfs, isSquashfs, scanSquashfs } from "./squashfs.js";
import { BUILD_PREFIX, discardUpload, type Upload } from "./upload.js";
import { copyTreeInto } from "../storage/tree-copy.js";

/** An image file built from a directory (publish), ready to be added to the store. */
export interface BuiltImage {
  file: string;
  fingerprint: string;
  size: number;
  properties: Record<string, string>;
  expiryDate: number;
}

export const ZERO_TIME = "0001-01-01T00:00:00Z";
/** How long after a first unpack the image's tree is built (see buildTreeLater). */
const TREE_BUILD_DELAY_MS = 3000;
const FINGERPRINT_RE = /^[0-9a-f]{64}$/;
const PREFIX_RE = /^[0-9a-f]{1,64}$/;

/** A time as Go's encoding/json writes it (RFC 3339, no zero fraction). */
export function goTime(d: Date): string {
  return d.toISOString().replace(/\.000Z$/, "Z");
}
const unixTime = (seconds: number) => goTime(new Date(seconds * 1000));
/** A client-given RFC 3339 time as stored, or undefined when absent or unparsable. */
const validTime = (t: string | undefined) => (t && !Number.isNaN(new Date(t).getTime()) ? (t.startsWith("0001-01-01") ? ZERO_TIME : goTime(new Date(t))) : undefined);

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

export interface ImportOptions {
  public?: boolean;
  /** Expected fingerprint (X-LXD-fingerprint). */
  expectedFingerprint?: string;
  /** Properties overriding metadata.yaml's (X-LXD-properties). */
  properties?: Record<string, string>;
  /** Profiles to record (X-LXD-profiles); default ["default"]. */
  profiles?: string[];
  /** Properties replacing metadata.yaml's before `properties` apply (a push token's). */
  baseProperties?: Record<string, string>;
  /** Expiry replacing metadata.yaml's (a push token's expires_at). */
  expiresAt?: string;
  /** The request's project, where `profiles` are looked up (default: the image's project). */
  requestProject?: string;
  requestor?: Requestor;
  signal?: AbortSignal;
  /**
   * A remote image (pull): its description gives the record's fields (as LXD stores the
   * remote's api.Image), and where it came from is recorded for refreshes.
   */
  remote?: {
    info: RemoteImage;
    cached: boolean;
    autoUpdate: boolean;
    source?: Omit<ImageSourceRow, "project" | "fingerprint">;
    aliases?: { name: string; description: string }[];
  };
  /** Called once the upload is known to be a valid image (operation metadata), even if it then proves a duplicate. */
  onIdentified?: (info: { fingerprint: string; size: string }) => void;
}

export interface ServiceDeps {
  /** Run global writes under the cluster write lock (absent standalone; at once when the caller holds it). */
  writeLock?: <T>(fn: () => Promise<T>) => Promise<T>;
  dir: string;
  /** Where unpacked, validated image trees are kept (one directory per fingerprint). */
  treesDir: string;
  repo: ImageRepo;
  events: EventHub;
  log: Logger;
  /** The project holding the images of `project` (projects with features.images=false use default's). */
  projectFor?: (project: string) => string;
  /** Whether a profile exists (image profiles are checked on edit); absent: not checked. */
  profileExists?: (project: string, name: string) => boolean;
  /** A cluster member without an image's files copies them from another member on demand. */
  fetchFromMember?: (project: string, fingerprint: string, file: string) => Promise<void>;
}

/** PUT/PATCH /1.0/images/{fingerprint} body. */
export interface ImageEdit {
  auto_update?: boolean;
  properties?: Record<string, string> | null;
  public?: boolean;
  expires_at?: string;
  profiles?: string[] | null;
}

export class ImageService implements Omit<ImagesPort, "pull" | "exportForGuest"> {
  /** Serialises placing and removing the shared file of one fingerprint. */
  private readonly fileLocks = new Map<string, Promise<unknown>>();
  /** Trees being built after a first unpack, by fingerprint. */
  private readonly treeBuilds = new Map<string, Promise<unknown>>();
  private readonly background = new AbortController();

  constructor(private readonly deps: ServiceDeps) {}

  /** A write of global records: under the cluster write lock when a background task (auto-update) makes it. */
  private async globalWrite<T>(fn: () => T): Promise<T> {
    return this.deps.writeLock && inBackgroundTask() ? this.deps.writeLock(async () => fn()) : fn();
  }

  private withFileLock<T>(fingerprint: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.fileLocks.get(fingerprint) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => {});
    this.fileLocks.set(fingerprint, settled);
    void settled.then(() => {
      if (this.fileLocks.get(fingerprint) === settled) this.fileLocks.delete(fingerprint);
    });
    return next;
  }

  /** Record that an image was read out (export), as LXD's image-retrieved event. */
  retrieved(project: string, fingerprint: string, requestor?: Requestor): void {
    this.deps.events.lifecycle("image-retrieved", `/1.0/images/${fingerprint}`, { project, requestor: eventRequestor(requestor) });
  }

  projectFor(project: string): string {
    return this.deps.projectFor?.(project) ?? project;
  }

  get dir(): string {
    return this.deps.dir;
  }

  private get repo(): ImageRepo {
    return this.deps.repo;
  }

  imageFile(fingerprint: string): string {
    return join(this.deps.dir, fingerprint);
  }

  rootfsFile(fingerprint: string): string {
    return join(this.deps.dir, `${fingerprint}.rootfs`);
  }

  private treeDir(fingerprint: string): string {
    return join(this.deps.treesDir, fingerprint);
  }

  /** Start-up: remove build directories a crash left behind, and files no record refers to. */
  async cleanup(): Promise<void> {
    const known = this.repo.allFingerprints();
    for (const name of await readdir(this.deps.treesDir).catch(() => [] as string[])) {
      if (!known.has(name)) await rm(join(this.deps.treesDir, name), { recursive: true, force: true });
    }
    for (const name of await readdir(this.deps.dir)) {
      const fp = name.replace(/\.rootfs$/, "");
      if (name.startsWith(BUILD_PREFIX) || (FINGERPRINT_RE.test(fp) && !known.has(fp))) {
        this.deps.log.info({ file: name }, "removing leftover image file");
        await rm(join(this.deps.dir, name), { recursive: true, force: true });
      }
    }
  }

  // Import

  /** Store an uploaded image (unified or split) in `project`. Consumes the upload. */
  async importUpload(project: string, upload: Upload, opts: ImportOptions = {}): Promise<ImageView> {
    try {
      const { fingerprint, size } = upload;
      if (opts.expectedFingerprint && opts.expectedFingerprint !== fingerprint) {
        throw new BadRequest(`fingerprints don't match, got ${fingerprint} expected ${opts.expectedFingerprint}`);
      }
      const { meta, type } = await this.inspect(upload, opts.signal);
      for (const p of opts.profiles ?? []) {
        if (this.deps.profileExists && !this.deps.profileExists(opts.requestProject ?? project, p)) throw new BadRequest(`Profile '${p}' doesn't exist`);
      }
      // As LXD: the operation shows fingerprint and size once the image is known to be valid.
      opts.onIdentified?.({ fingerprint, size: String(size) });
      if (this.repo.get(project, fingerprint)) throw new Conflict("Image with same fingerprint already exists");

      const remote = opts.remote;
      if (remote && remote.info.type !== type) throw new BadRequest(`Image type mismatch: the server said ${remote.info.type}, the image is ${type}`);
      const now = goTime(new Date());
      const row: ImageRecordRow = {
        project,
        fingerprint,
        type,
        filename: remote ? remote.info.filename : upload.filename,
        size,
        split: upload.kind === "split",
        public: opts.public ?? false,
        auto_update: remote?.autoUpdate ?? false,
        cached: remote?.cached ?? false,
        architecture: remote?.info.architecture || meta.architecture,
        created_at: remote?.info.created_at || unixTime(meta.creation_date),
        expires_at: remote?.info.expires_at || validTime(opts.expiresAt) || unixTime(meta.expiry_date),
        uploaded_at: now,
        last_used_at: remote?.cached ? now : ZERO_TIME,
        properties: { ...(remote ? remote.info.properties : (opts.baseProperties ?? meta.properties)), ...(opts.properties ?? {}) },
        profiles: opts.profiles && opts.profiles.length > 0 ? opts.profiles : ["default"],
      };
      for (const a of remote?.aliases ?? []) validateAliasName(a.name);
      await this.withFileLock(fingerprint, async () => {
        const placed = await this.place(this.uploadMoves(upload));
        try {
          await this.globalWrite(() => this.repo.transaction(() => {
            this.repo.insert(row);
            if (remote?.source) this.repo.setSource({ project, fingerprint, ...remote.source });
            for (const a of remote?.aliases ?? []) {
              if (this.repo.alias(project, a.name)) throw new Conflict(`Alias already exists: ${a.name}`);
              this.repo.insertAlias({ project, name: a.name, fingerprint, description: a.description });
            }
          }));
        } catch (err) {
          await this.unplace(fingerprint, placed);
          if (String((err as Error).message).includes("UNIQUE")) throw new Conflict("Image with same fingerprint already exists");
          throw err;
        }
      });
      this.deps.events.lifecycle("image-created", `/1.0/images/${fingerprint}`, { project, context: { type }, requestor: eventRequestor(opts.requestor) });
      for (const a of remote?.aliases ?? []) {
        this.deps.events.lifecycle("image-alias-created", `/1.0/images/aliases/${a.name}`, { project, context: { target: fingerprint }, requestor: eventRequestor(opts.requestor) });
      }
      return this.view(row);
    } finally {
      await discardUpload(upload);
    }
  }

  /** Validate the tarball(s) of an upload and read metadata.yaml. */
  private async inspect(upload: Upload, signal?: AbortSignal): Promise<{ meta: ImageMetadata; type: ImageRecordRow["type"] }> {
    const metaSource = upload.kind === "unified" ? upload.file : upload.metaFile;
    // A split container image's rootfs is checked while the metadata tarball is (two processes at once).
    const rootfsCheck =
      upload.kind === "split" && upload.rootfsPart === "rootfs"
        ? (async () => {
            if (await isSquashfs(upload.rootfsFile)) await scanSquashfs(upload.rootfsFile, signal);
            else await scanTarball(upload.rootfsFile, { root: "rootfs" }, { signal });
          })()
        : Promise.resolve();
    const [metaCheck, rootfsResult] = await Promise.allSettled([scanTarball(metaSource, { capture: "metadata.yaml" }, { signal }), rootfsCheck]);
    if (metaCheck.status === "rejected") throw metaCheck.reason;
    if (rootfsResult.status === "rejected") throw rootfsResult.reason;
    const gate = metaCheck.value;
    if (!gate.captured) throw new BadRequest("Metadata tarball is missing metadata.yaml");
    let meta: ImageMetadata;
    try {
      meta = parseImageMetadata(gate.captured.toString("utf8"));
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    let type: ImageRecordRow["type"];
    if (upload.kind === "split") {
      type = upload.rootfsPart === "rootfs" ? "container" : "virtual-machine";
    } else if (gate.sawRootfs) type = "container";
    else if (gate.sawRootfsImg) type = "virtual-machine";
    else throw new BadRequest("Invalid instance type");
    return { meta, type };
  }

  /** Store a tarball built from an instance (publish) in `project`. */
  async storeBuilt(
    project: string,
    built: BuiltImage,
    opts: { public: boolean; filename: string; architecture: string; aliases: { name: string; description: string }[]; requestor?: Requestor },
  ): Promise<ImageView> {
    const fingerprint = built.fingerprint;
    if (this.repo.get(project, fingerprint)) throw new Conflict(`The image already exists: ${fingerprint}`);
    const now = goTime(new Date());
    const row: ImageRecordRow = {
      project,
      fingerprint,
      type: "container",
      filename: opts.filename,
      size: built.size,
      split: false,
      public: opts.public,
      auto_update: false,
      cached: false,
      architecture: opts.architecture,
      created_at: now,
      expires_at: built.expiryDate ? unixTime(built.expiryDate) : ZERO_TIME,
      uploaded_at: now,
      last_used_at: ZERO_TIME,
      properties: built.properties,
      profiles: ["default"],
    };
    await this.withFileLock(fingerprint, async () => {
      const placed = await this.place([[built.file, this.imageFile(fingerprint)]]);
      try {
        this.repo.transaction(() => {
          this.repo.insert(row);
          for (const a of opts.aliases) {
            validateAliasName(a.name);
            if (this.repo.alias(project, a.name)) throw new BadRequest(`Alias already exists: ${a.name}`);
            this.repo.insertAlias({ project, name: a.name, fingerprint, description: a.description });
          }
        });
      } catch (err) {
        await this.unplace(fingerprint, placed);
        if (String((err as Error).message).includes("UNIQUE")) throw new Conflict(`The image already exists: ${fingerprint}`);
        throw err;
      }
    });
    this.deps.events.lifecycle("image-created", `/1.0/images/${fingerprint}`, { project, context: { type: row.type }, requestor: eventRequestor(opts.requestor) });
    for (const a of opts.aliases) {
      this.deps.events.lifecycle("image-alias-created", `/1.0/images/aliases/${a.name}`, { project, context: { target: fingerprint }, requestor: eventRequestor(opts.requestor) });
    }
    return this.view(row);
  }

  /** The record of `fingerprint` in `project`, if any. */
  find(project: string, fingerprint: string): ImageRecordRow | undefined {
    return this.repo.get(project, fingerprint);
  }

  /** Any project's record of `fingerprint`. */
  anyRecord(fingerprint: string): ImageRecordRow | undefined {
    return this.repo.anyWithFingerprint(fingerprint);
  }

  source(project: string, fingerprint: string): ImageSourceRow | undefined {
    return this.repo.source(project, fingerprint);
  }

  cachedFromSource(project: string, src: { server: string; protocol: string; alias: string; type: string; architecture: string }): ImageRecordRow | undefined {
    return this.repo.cachedFromSource(project, src.server, src.protocol, src.alias, src.type, src.architecture);
  }

  /** Images with a recorded source, for refreshes. */
  withSources(): (ImageRecordRow & { source: ImageSourceRow })[] {
    return this.repo.withSources();
  }

  /** After a refresh: `to` takes over `from`'s cached flag, last use, profiles and aliases. */
  replaceWith(project: string, from: ImageRecordRow, to: string): void {
    this.repo.transaction(() => this.repo.takeOver(project, from, to));
  }

  cachedRows(): ImageRecordRow[] {
    return this.repo.cachedRows();
  }

  /** A cached image was used again (LXD's SetImageCachedAndLastUseDate). */
  touchCached(project: string, fingerprint: string): void {
    this.repo.setCachedUsed(project, fingerprint, goTime(new Date()));
  }

  /**
   * Give `project` a record of an image another project holds already (the file is shared),
   * as LXD does when an image exists in another project.
   */
  async adopt(project: string, from: ImageRecordRow, opts: { public: boolean; autoUpdate: boolean; cached: boolean; source?: Omit<ImageSourceRow, "project" | "fingerprint">; requestor?: Requestor }): Promise<ImageView> {
    const now = goTime(new Date());
    const row: ImageRecordRow = { ...from, project, public: opts.public, auto_update: opts.autoUpdate, cached: opts.cached, uploaded_at: now, last_used_at: opts.cached ? now : ZERO_TIME, profiles: ["default"] };
    await this.withFileLock(from.fingerprint, async () => {
      if (!this.repo.anyWithFingerprint(from.fingerprint)) notFound();
      this.repo.transaction(() => {
        this.repo.insert(row);
        if (opts.source) this.repo.setSource({ project, fingerprint: from.fingerprint, ...opts.source });
      });
    });
    this.deps.events.lifecycle("image-created", `/1.0/images/${from.fingerprint}`, { project, context: { type: row.type }, requestor: eventRequestor(opts.requestor) });
    return this.view(row);
  }

  aliasExists(project: string, name: string): boolean {
    return this.repo.alias(project, name) !== undefined;
  }

  private uploadMoves(upload: Upload): [string, string][] {
    return upload.kind === "unified"
      ? [[upload.file, this.imageFile(upload.fingerprint)]]
      : [
          [upload.metaFile, this.imageFile(upload.fingerprint)],
          [upload.rootfsFile, this.rootfsFile(upload.fingerprint)],
        ];
  }

  /** Hard-link files into the store; returns the paths this call created. */
  private async place(moves: [string, string][]): Promise<string[]> {
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
      for (const p of created) await unlink(p).catch(() => {});
      throw err;
    }
  }

  private async unplace(fingerprint: string, created: string[]): Promise<void> {
    if (this.repo.countFingerprint(fingerprint) > 0) return;
    for (const p of created) await unlink(p).catch(() => {});
  }

  // Lookup

  /** An image of `project` by unique fingerprint prefix; LXD's errors otherwise. */
  byPrefix(project: string, prefix: string): ImageRecordRow {
    if (!PREFIX_RE.test(prefix)) throw new NotFound("Image not found");
    const rows = this.repo.byPrefix(project, prefix);
    if (rows.length === 0) throw new NotFound("Image not found");
    if (rows.length > 1) throw new InternalError("More than one image matches");
    return rows[0];
  }

  resolve(requestProject: string, ref: { alias?: string; fingerprint?: string }): ImageRecord {
    const project = this.projectFor(requestProject);
    let row: ImageRecordRow;
    if (ref.alias !== undefined && ref.alias !== "") {
      const alias = this.repo.alias(project, ref.alias);
      if (!alias) throw new NotFound("Image not found");
      row = this.repo.get(project, alias.fingerprint) ?? notFound();
    } else if (ref.fingerprint !== undefined && ref.fingerprint !== "") {
      row = this.byPrefix(project, ref.fingerprint);
    } else throw new BadRequest("Image alias or fingerprint required");
    return { fingerprint: row.fingerprint, type: row.type, architecture: row.architecture, properties: { ...row.properties }, profiles: [...row.profiles], project: row.project };
  }

  markUsed(fingerprint: string): void {
    this.repo.markUsed(fingerprint, goTime(new Date()));
  }

  view(row: ImageRecordRow): ImageView {
    return {
      auto_update: row.auto_update,
      properties: sortedMap(row.properties),
      public: row.public,
      expires_at: row.expires_at,
      profiles: row.profiles,
      aliases: this.repo.aliasesOf(row.project, row.fingerprint).map((a) => ({ name: a.name, description: a.description })),
      architecture: row.architecture,
      cached: row.cached,
      filename: row.filename,
      fingerprint: row.fingerprint,
      size: row.size,
      ...updateSource(this.repo.source(row.project, row.fingerprint)),
      type: row.type,
      created_at: row.created_at,
      last_used_at: row.last_used_at,
      uploaded_at: row.uploaded_at,
    };
  }

  list(project: string, publicOnly: boolean): ImageView[] {
    return this.repo.list(project, publicOnly).map((r) => this.view(r));
  }

  // Unpack

  async unpackInto(fingerprint: string, target: string, opts: { signal?: AbortSignal; progress?: (percent: number) => void } = {}): Promise<void> {
    if (!FINGERPRINT_RE.test(fingerprint)) throw new NotFound("Image not found");
    const row = this.repo.anyWithFingerprint(fingerprint) ?? notFound();
    if (row.type !== "container") throw new BadRequest("Only container images can be unpacked");
    const st = await lstat(target);
    if (!st.isDirectory()) throw new Error(`Unpack target ${target} is not a directory`);
    if ((await readdir(target)).length > 0) throw new Error(`Unpack target ${target} is not empty`);
    if (this.deps.fetchFromMember && !existsSync(this.imageFile(fingerprint))) {
      if (row.split) throw new Error("Copying split images between cluster members is not supported yet");
      await this.deps.fetchFromMember(row.project, fingerprint, this.imageFile(fingerprint));
    }
    // First use of a split image (what image servers ship): unpack straight into the target, as
    // LXD does, and keep the image's tree for later instances by building it afterwards, off this
    // launch's path (an unpack and a full copy less for the first launch from a remote image).
    if (row.split && !(await exists(this.treeDir(fingerprint)))) {
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
    const tree = this.treeDir(fingerprint);
    return this.withFileLock(fingerprint, async () => {
      if (await exists(tree)) return tree;
      if (!this.repo.anyWithFingerprint(fingerprint)) notFound();
      const building = `${tree}.${BUILD_PREFIX}${randomBytes(6).toString("hex")}`;
      await mkdir(this.deps.treesDir, { recursive: true, mode: 0o700 });
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
    const files = row.split ? [this.imageFile(fingerprint), this.rootfsFile(fingerprint)] : [this.imageFile(fingerprint)];
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

  // Changes

  /** PUT (replace) or PATCH (merge) the editable fields, as LXD does. */
  edit(row: ImageRecordRow, body: ImageEdit, opts: { patch: boolean; requestor?: Requestor; requestProject?: string }): ImageView {
    const { patch } = opts;
    let expires = row.expires_at;
    if (body.expires_at !== undefined && body.expires_at !== "") {
      if (Number.isNaN(new Date(body.expires_at).getTime())) throw new BadRequest(`parsing time "${body.expires_at}" as "2006-01-02T15:04:05Z07:00": cannot parse`);
      expires = body.expires_at;
    }
    const next = {
      public: body.public ?? (patch ? row.public : false),
      auto_update: body.auto_update ?? (patch ? row.auto_update : false),
      properties: patch ? { ...row.properties, ...(body.properties ?? {}) } : (body.properties ?? {}),
      profiles: body.profiles ?? (patch ? row.profiles : ["default"]),
      expires_at: expires,
    };
    // Profiles are looked up in the request's project (its own or the default one's, by
    // features.profiles), which is not the image's when the project shares default's images.
    for (const p of next.profiles) {
      if (this.deps.profileExists && !this.deps.profileExists(opts.requestProject ?? row.project, p)) throw new BadRequest(`Profile '${p}' doesn't exist`);
    }
    return this.update(row.project, row.fingerprint, next, opts.requestor);
  }

  update(project: string, fingerprint: string, patch: Parameters<ImageRepo["update"]>[2], requestor?: Requestor): ImageView {
    this.repo.update(project, fingerprint, patch);
    this.deps.events.lifecycle("image-updated", `/1.0/images/${fingerprint}`, { project, requestor: eventRequestor(requestor) });
    return this.view(this.repo.get(project, fingerprint) ?? notFound());
  }

  /** Remove the record; the files go when no project holds the image any more. */
  async delete(project: string, fingerprint: string, requestor?: Requestor): Promise<void> {
    await this.withFileLock(fingerprint, async () => {
      if (!this.repo.delete(project, fingerprint)) notFound();
      if (this.repo.countFingerprint(fingerprint) === 0) {
        await rm(this.imageFile(fingerprint), { force: true });
        await rm(this.rootfsFile(fingerprint), { force: true });
        await rm(this.treeDir(fingerprint), { recursive: true, force: true });
      }
    });
    this.deps.events.lifecycle("image-deleted", `/1.0/images/${fingerprint}`, { project, requestor: eventRequestor(requestor) });
  }

  // Aliases

  aliases(project: string): AliasRow[] {
    return this.repo.aliases(project);
  }

  alias(project: string, name: string): AliasRow {
    return this.repo.alias(project, name) ?? aliasNotFound();
  }

  createAlias(project: string, name: string, target: string, description: string, requestor?: Requestor): AliasRow {
    validateAliasName(name);
    if (this.repo.alias(project, name)) throw new Conflict(`Alias "${name}" already exists`);
    const image = this.byPrefix(project, target);
    const row = { project, name, fingerprint: image.fingerprint, description };
    this.repo.insertAlias(row);
    this.deps.events.lifecycle("image-alias-created", `/1.0/images/aliases/${name}`, { project, context: { target: image.fingerprint }, requestor: eventRequestor(requestor) });
    return row;
  }

  updateAlias(project: string, name: string, target: string, description: string, requestor?: Requestor): AliasRow {
    this.alias(project, name);
    const image = this.byPrefix(project, target);
    this.repo.updateAlias(project, name, image.fingerprint, description);
    this.deps.events.lifecycle("image-alias-updated", `/1.0/images/aliases/${name}`, { project, context: { target: image.fingerprint }, requestor: eventRequestor(requestor) });
    return this.alias(project, name);
  }

  renameAlias(project: string, name: string, to: string, requestor?: Requestor): void {
    validateAliasName(to);
    if (this.repo.alias(project, to)) throw new Conflict(`Alias "${to}" already exists`);
    this.alias(project, name);
    this.repo.renameAlias(project, name, to);
    this.deps.events.lifecycle("image-alias-renamed", `/1.0/images/aliases/${to}`, { project, context: { old_name: name }, requestor: eventRequestor(requestor) });
  }

  deleteAlias(project: string, name: string, requestor?: Requestor): void {
    if (!this.repo.deleteAlias(project, name)) aliasNotFound();
    this.deps.events.lifecycle("image-alias-deleted", `/1.0/images/aliases/${name}`, { project, requestor: eventRequestor(requestor) });
  }
}

/** Alias names may not be empty; slashes are fine (LXD 5.0.2 accepts "debian/12"), control characters are not. */
export function validateAliasName(name: string): void {
  if (name === "") throw new BadRequest("Alias name can't be empty");
  if (/[\x00-\x1f\x7f]/.test(name)) throw new BadRequest("Alias names can't contain control characters");
}

function updateSource(src: ImageSourceRow | undefined): Pick<ImageView, "update_source"> {
  return src ? { update_source: { alias: src.alias, certificate: src.certificate, protocol: src.protocol, server: src.server, image_type: "" } } : {};
}

function eventRequestor(r?: Requestor) {
  return r ? { username: r.username, protocol: r.protocol, address: r.address } : undefined;
}

function notFound(): never {
  throw new NotFound("Image not found");
}

function aliasNotFound(): never {
  throw new NotFound("Image alias not found");
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}

/** Remove everything inside `dir` (never following symlinks), keeping `dir`. */
async function emptyDir(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, name), { recursive: true, force: true });
}

