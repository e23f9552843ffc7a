// Adding images to the store: uploads (unified or split, checked by the tar gate before
// anything is recorded), images built by publish, and records of an image another project holds.
// Files are placed first and taken back if the record cannot be written.
import type { ImageRecordRow, ImageRepo, ImageSourceRow } from "../db/image-repo.js";
import type { EventHub } from "../operations/events.js";
import { BadRequest, Conflict } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";
import { validateAliasName } from "./aliases.js";
import { scanTarball } from "./archive.js";
import { inBackgroundTask } from "./background.js";
import type { ImageFiles } from "./files.js";
import { parseImageMetadata, type ImageMetadata } from "./metadata.js";
import { eventRequestor, goTime, imageNotFound, imageView, unixTime, validTime, ZERO_TIME, type ImageView } from "./record.js";
import type { RemoteImage } from "./remote/types.js";
import { isSquashfs, scanSquashfs } from "./squashfs.js";
import { discardUpload, type Upload } from "./upload.js";

/** An image file built from a directory (publish), ready to be added to the store. */
export interface BuiltImage {
  file: string;
  fingerprint: string;
  size: number;
  properties: Record<string, string>;
  expiryDate: number;
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

export interface ImageImporterDeps {
  files: ImageFiles;
  repo: ImageRepo;
  events: Pick<EventHub, "lifecycle">;
  /** Run global writes under the cluster write lock (absent standalone; at once when the caller holds it). */
  writeLock?: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Whether a profile exists (image profiles are checked); absent: not checked. */
  profileExists?: (project: string, name: string) => boolean;
}

export class ImageImporter {
  private readonly files: ImageFiles;

  constructor(private readonly deps: ImageImporterDeps) {
    this.files = deps.files;
  }

  private get repo(): ImageRepo {
    return this.deps.repo;
  }

  /** A write of global records: under the cluster write lock when a background task (auto-update) makes it. */
  private async globalWrite<T>(fn: () => T): Promise<T> {
    return this.deps.writeLock && inBackgroundTask() ? this.deps.writeLock(async () => fn()) : fn();
  }

  /** After a failed record write: the files go again unless a project holds the image. */
  private async unplace(fingerprint: string, created: string[]): Promise<void> {
    if (this.repo.countFingerprint(fingerprint) > 0) return;
    await this.files.unplace(created);
  }

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
      await this.files.withLock(fingerprint, async () => {
        const placed = await this.files.place(this.files.uploadMoves(upload));
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
      return imageView(this.repo, row);
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
    await this.files.withLock(fingerprint, async () => {
      const placed = await this.files.place([[built.file, this.files.imageFile(fingerprint)]]);
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
    return imageView(this.repo, row);
  }

  /**
   * Give `project` a record of an image another project holds already (the file is shared),
   * as LXD does when an image exists in another project.
   */
  async adopt(project: string, from: ImageRecordRow, opts: { public: boolean; autoUpdate: boolean; cached: boolean; source?: Omit<ImageSourceRow, "project" | "fingerprint">; requestor?: Requestor }): Promise<ImageView> {
    const now = goTime(new Date());
    const row: ImageRecordRow = { ...from, project, public: opts.public, auto_update: opts.autoUpdate, cached: opts.cached, uploaded_at: now, last_used_at: opts.cached ? now : ZERO_TIME, profiles: ["default"] };
    await this.files.withLock(from.fingerprint, async () => {
      if (!this.repo.anyWithFingerprint(from.fingerprint)) imageNotFound();
      this.repo.transaction(() => {
        this.repo.insert(row);
        if (opts.source) this.repo.setSource({ project, fingerprint: from.fingerprint, ...opts.source });
      });
    });
    this.deps.events.lifecycle("image-created", `/1.0/images/${from.fingerprint}`, { project, context: { type: row.type }, requestor: eventRequestor(opts.requestor) });
    return imageView(this.repo, row);
  }
}
