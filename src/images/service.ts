// The image store: records in SQLite, files in $LXD_DIR/images (files.ts). Owns lookup, edits
// and removal; its parts add images (import.ts), unpack them into instance volumes (trees.ts)
// and name them (aliases.ts).
import type { Logger } from "pino";
import { BadRequest, InternalError, NotFound } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";
import type { ImageRecord } from "../ports.js";
import type { ImageRecordRow, ImageRepo, ImageSourceRow } from "../db/image-repo.js";
import type { EventHub } from "../operations/events.js";
import { ImageAliases } from "./aliases.js";
import { ImageFiles } from "./files.js";
import { ImageImporter } from "./import.js";
import { eventRequestor, goTime, imageNotFound, imageView, type ImageView } from "./record.js";
import { ImageTrees } from "./trees.js";

const PREFIX_RE = /^[0-9a-f]{1,64}$/;

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
  fetchFromMember?: (project: string, fingerprint: string, files: ImageFiles) => Promise<void>;
  /** Drop the image's cached volumes from this member's pools (its files are gone: no project holds it). */
  dropImageVolumes?: (fingerprint: string) => Promise<void>;
}

/** PUT/PATCH /1.0/images/{fingerprint} body. */
export interface ImageEdit {
  auto_update?: boolean;
  properties?: Record<string, string> | null;
  public?: boolean;
  expires_at?: string;
  profiles?: string[] | null;
}

export class ImageService {
  /** Adds images: uploads, publish, records of images another project holds. */
  readonly importer: ImageImporter;
  /** Unpacks images into instance volumes (ImagesPort.unpackInto), keeping validated trees. */
  readonly trees: ImageTrees;
  readonly aliases: ImageAliases;
  private readonly files: ImageFiles;

  constructor(private readonly deps: ServiceDeps) {
    this.files = new ImageFiles(deps.dir, deps.treesDir);
    this.importer = new ImageImporter({ files: this.files, repo: deps.repo, events: deps.events, writeLock: deps.writeLock, profileExists: deps.profileExists });
    this.trees = new ImageTrees({ files: this.files, anyRecord: (fp) => deps.repo.anyWithFingerprint(fp), fetchFromMember: deps.fetchFromMember && ((project, fp) => deps.fetchFromMember!(project, fp, this.files)), log: deps.log });
    this.aliases = new ImageAliases({ repo: deps.repo, events: deps.events, byPrefix: (project, prefix) => this.byPrefix(project, prefix) });
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
    return this.files.imageFile(fingerprint);
  }

  rootfsFile(fingerprint: string): string {
    return this.files.rootfsFile(fingerprint);
  }

  /** Start-up: remove build directories a crash left behind, and files no record refers to. */
  cleanup(): Promise<void> {
    return this.files.cleanup(this.repo.allFingerprints(), this.deps.log);
  }

  /**
   * Remove the files of images no project holds any more (in a cluster, another member deleted or
   * expired the record: this member's copies go once its replica has the deletion). Each is
   * checked again under its lock, so an import placing the same image wins.
   */
  async dropUnreferencedFiles(): Promise<void> {
    for (const fp of await this.files.held()) {
      if (this.repo.countFingerprint(fp) > 0) continue;
      await this.files.withLock(fp, async () => {
        if (this.repo.countFingerprint(fp) > 0) return;
        this.deps.log.info({ fingerprint: fp }, "removing the files of an image deleted on another member");
        await this.files.remove(fp);
        await this.dropVolumes(fp);
      });
    }
  }

  // Lookup

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
      row = this.repo.get(project, alias.fingerprint) ?? imageNotFound();
    } else if (ref.fingerprint !== undefined && ref.fingerprint !== "") {
      row = this.byPrefix(project, ref.fingerprint);
    } else throw new BadRequest("Image alias or fingerprint required");
    return { fingerprint: row.fingerprint, type: row.type, architecture: row.architecture, properties: { ...row.properties }, profiles: [...row.profiles], project: row.project };
  }

  markUsed(fingerprint: string): void {
    this.repo.markUsed(fingerprint, goTime(new Date()));
  }

  view(row: ImageRecordRow): ImageView {
    return imageView(this.repo, row);
  }

  list(project: string, publicOnly: boolean): ImageView[] {
    return this.repo.list(project, publicOnly).map((r) => this.view(r));
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
    return this.view(this.repo.get(project, fingerprint) ?? imageNotFound());
  }

  /** As LXD on image delete: the pools' unpacked copies go too (a driver that cannot drop one keeps it, logged). */
  private async dropVolumes(fingerprint: string): Promise<void> {
    await this.deps.dropImageVolumes?.(fingerprint).catch((e) => this.deps.log.warn({ err: e, fingerprint }, "cannot remove the image's cached volumes"));
  }

  /** Remove the record; the files and cached volumes go when no project holds the image any more. */
  async delete(project: string, fingerprint: string, requestor?: Requestor): Promise<void> {
    await this.files.withLock(fingerprint, async () => {
      if (!this.repo.delete(project, fingerprint)) imageNotFound();
      if (this.repo.countFingerprint(fingerprint) === 0) {
        await this.files.remove(fingerprint);
        await this.dropVolumes(fingerprint);
      }
    });
    this.deps.events.lifecycle("image-deleted", `/1.0/images/${fingerprint}`, { project, requestor: eventRequestor(requestor) });
  }
}
