// Pulling images from image servers (LXD's ImageDownload): resolve the alias or fingerprint on
// the remote, reuse a local copy when there is one, otherwise download once per fingerprint
// (concurrent requests wait for the first), verify, validate and store it, recording where it
// came from. Downloads go to a build directory under $LXD_DIR/images, removed on failure,
// cancellation, or at the next start after a crash.
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { BadRequest } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";
import type { ImageRecordRow } from "../db/image-repo.js";
import { hostArchitecture } from "./remote/arch.js";
import { httpsGet, streamBody, USER_AGENT } from "./remote/http.js";
import { PROTOCOLS, isProtocol } from "./remote/index.js";
import { progressTracker } from "./remote/progress.js";
import type { ImageServer, RemoteImage } from "./remote/types.js";
import type { ImageService } from "./service.js";
import { BUILD_PREFIX, type Upload } from "./upload.js";
import { parseImageMetadata } from "./metadata.js";
import { scanTarball } from "./archive.js";
import { outsideWriteLock } from "../shared/write-lock.js";

export interface PullSource {
  server: string;
  protocol?: string;
  alias?: string;
  fingerprint?: string;
  certificate?: string;
  secret?: string;
  /** The source server's project (LXD protocol). */
  project?: string;
  /** "container", "virtual-machine" or "" (any). */
  type?: string;
}

export interface PullOptions {
  public?: boolean;
  autoUpdate?: boolean;
  /** An instance's image: marked cached, last use now (LXD's SetCached). */
  setCached?: boolean;
  /** Use a cached image of the same alias even if the server has a newer one (launches). */
  preferCached?: boolean;
  aliases?: { name: string; description: string }[];
  signal?: AbortSignal;
  /** Operation metadata updates ({ download_progress: "rootfs: 45% (1.20MB/s)" }). */
  onMetadata?: (patch: Record<string, unknown>) => void;
  requestor?: Requestor;
}

export interface PullerDeps {
  images: ImageService;
  log: Logger;
  /** Hours between auto-updates (images.auto_update_interval); 0 disables preferring cached images. */
  autoUpdateInterval: () => number;
}

/** LXD accepts these and none else. */
const KNOWN_PROTOCOLS = ["lxd", "simplestreams"];

export class ImagePuller {
  /** One download (or adoption) per fingerprint at a time; later requests find the stored image. */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: PullerDeps) {}

  private lock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => {});
    this.locks.set(key, settled);
    void settled.then(() => {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    });
    return next;
  }

  server(src: PullSource): ImageServer {
    const protocol = src.protocol || "lxd";
    if (!KNOWN_PROTOCOLS.includes(protocol) || !isProtocol(protocol)) throw new BadRequest(`Unsupported protocol: ${protocol}`);
    let url: URL;
    try {
      url = new URL(src.server);
    } catch {
      throw new BadRequest(`Invalid server URL "${src.server}"`);
    }
    // As LXD's daemon, a simplestreams server may be plain http:// (its index and files are
    // then only as trustworthy as the network; the items' sha256 still bind them to the index).
    const schemes = protocol === "simplestreams" ? ["https:", "http:"] : ["https:"];
    if (!schemes.includes(url.protocol) || url.username || url.password) throw new BadRequest(`Invalid server URL "${src.server}": only ${protocol === "simplestreams" ? "http:// and https://" : "https://"} servers are supported`);
    return PROTOCOLS[protocol]({ server: src.server, certificate: src.certificate }, src.project);
  }

  /** Make the image available in `project` and return its record (LXD's ImageDownload). */
  async pull(project: string, src: PullSource, opts: PullOptions = {}): Promise<ImageRecordRow> {
    const { images } = this.deps;
    const protocol = src.protocol || "lxd";
    const requested = src.fingerprint || src.alias || "";
    if (requested === "") throw new BadRequest("Must specify one of alias or fingerprint for init from image");
    const remote = this.server(src);
    const type = src.type ?? "";
    let info: RemoteImage | undefined;
    let fp = requested;
    if (!src.secret) {
      try {
        const entry = await remote.alias(requested, type, { signal: opts.signal });
        if (entry) fp = entry.target;
        info = await remote.image(fp, { signal: opts.signal });
      } catch (e) {
        if (opts.signal?.aborted) throw new Error("Operation cancelled");
        const msg = (e as Error).message;
        throw new Error(msg.startsWith("Failed to connect") ? msg : `Failed getting remote image info: ${msg}`);
      }
      fp = info.fingerprint;
    }
    // A launch by alias keeps using the cached image while auto-update looks after it.
    if (opts.preferCached && this.deps.autoUpdateInterval() > 0 && requested !== fp) {
      const cached = images.cachedFromSource(project, { server: src.server, protocol, alias: requested, type, architecture: hostArchitecture() });
      if (cached) fp = cached.fingerprint;
    }
    const source = { server: src.server, protocol, certificate: src.certificate ?? "", alias: requested };
    return this.lock(fp, async () => {
      const here = images.find(project, fp);
      if (here) {
        if (opts.setCached) images.touchCached(project, fp);
        return images.find(project, fp)!;
      }
      const elsewhere = /^[0-9a-f]{64}$/.test(fp) ? images.anyRecord(fp) : undefined;
      if (elsewhere) {
        await images.importer.adopt(project, elsewhere, { public: opts.public ?? false, autoUpdate: requested !== fp ? (opts.autoUpdate ?? false) : elsewhere.auto_update, cached: !!opts.setCached, source: requested !== fp ? source : undefined, requestor: opts.requestor });
        return images.find(project, fp)!;
      }
      if (!info) {
        try {
          info = await remote.image(fp, { signal: opts.signal, secret: src.secret });
        } catch (e) {
          if (opts.signal?.aborted) throw new Error("Operation cancelled");
          throw e;
        }
        if (!info.fingerprint.startsWith(fp)) throw new Error("The remote server returned another image than the one requested");
        fp = info.fingerprint;
        // With a secret the fingerprint was all we had: another request may have stored it meanwhile.
        const again = images.find(project, fp);
        if (again) {
          if (opts.setCached) images.touchCached(project, fp);
          return again;
        }
      }
      const view = await this.download(project, remote, info, {
        ...opts,
        source: requested !== info.fingerprint ? source : undefined,
        autoUpdate: requested !== info.fingerprint ? (opts.autoUpdate ?? false) : false,
        secret: src.secret,
      });
      return images.find(project, view.fingerprint)!;
    });
  }

  private async download(
    project: string,
    remote: ImageServer,
    info: RemoteImage,
    opts: PullOptions & { source?: { server: string; protocol: string; certificate: string; alias: string }; secret?: string },
  ): Promise<{ fingerprint: string }> {
    const { images, log } = this.deps;
    const dir = join(images.dir, `${BUILD_PREFIX}${randomUUID()}`);
    await mkdir(dir, { mode: 0o700 });
    let handedOver = false;
    try {
      const metaFile = join(dir, "metadata");
      const rootfsFile = join(dir, "rootfs");
      const meta = createWriteStream(metaFile, { flags: "wx", mode: 0o600 });
      const rootfs = createWriteStream(rootfsFile, { flags: "wx", mode: 0o600 });
      log.info({ fingerprint: info.fingerprint, project }, "Downloading image");
      let result;
      try {
        // The download is the long part and writes no rows: other cluster members need not wait for it.
        result = await outsideWriteLock(() =>
          remote.download(
            info,
            { meta, rootfs },
            {
              signal: opts.signal,
              secret: opts.secret,
              limit: info.size > 0 ? info.size : undefined,
              progress: (text) => opts.onMetadata?.({ download_progress: text }),
            },
          ),
        );
      } catch (e) {
        if (opts.signal?.aborted) throw new Error("Operation cancelled");
        throw e;
      } finally {
        await Promise.all([closeSynced(meta), closeSynced(rootfs)]);
      }
      if (result.fingerprint !== info.fingerprint) throw new Error(`Image fingerprint doesn't match. Got ${result.fingerprint} expected ${info.fingerprint}`);
      // Another member may have stored the image while this one downloaded it outside the write lock.
      const stored = images.find(project, result.fingerprint);
      if (stored) return stored;
      const upload: Upload = result.split
        ? { kind: "split", dir, metaFile, rootfsFile, rootfsPart: result.rootfsPart ?? "rootfs", fingerprint: result.fingerprint, size: result.size, filename: info.filename }
        : { kind: "unified", dir, file: metaFile, fingerprint: result.fingerprint, size: result.size, filename: info.filename };
      handedOver = true;
      const view = await images.importer.importUpload(project, upload, {
        public: opts.public ?? false,
        requestor: opts.requestor,
        signal: opts.signal,
        remote: { info, cached: !!opts.setCached, autoUpdate: opts.autoUpdate ?? false, source: opts.source, aliases: opts.aliases },
      });
      log.info({ fingerprint: info.fingerprint, project }, "Image downloaded");
      return view;
    } finally {
      if (!handedOver) await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * POST /1.0/images with source.type "url": HEAD the URL, which names the image's hash and
   * file (LXD-Image-Hash, LXD-Image-URL), then download that one file (LXD's "direct" protocol).
   */
  async pullUrl(project: string, url: string, opts: PullOptions = {}): Promise<ImageRecordRow> {
    const { images, log } = this.deps;
    if (!url) throw new BadRequest("Missing URL");
    try {
      if (!["https:", "http:"].includes(new URL(url).protocol)) throw new Error();
    } catch {
      throw new BadRequest(`Invalid URL "${url}": only http:// and https:// are supported`);
    }
    const head = await httpsGet(url, { signal: opts.signal, allowHttp: true }, { "LXD-Server-Architectures": hostArchitecture(), "LXD-Server-Version": "5.0.2" }, "HEAD");
    head.resume();
    const hash = String(head.headers["lxd-image-hash"] ?? "");
    if (!hash) throw new Error("Missing LXD-Image-Hash header");
    const fileUrl = String(head.headers["lxd-image-url"] ?? "");
    if (!fileUrl) throw new Error("Missing LXD-Image-URL header");
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error(`Invalid LXD-Image-Hash header "${hash}"`);
    const target = new URL(fileUrl, url).toString();
    return this.lock(hash, async () => {
      const here = images.find(project, hash);
      if (here) return here;
      const dir = join(images.dir, `${BUILD_PREFIX}${randomUUID()}`);
      await mkdir(dir, { mode: 0o700 });
      let handedOver = false;
      try {
        const file = join(dir, "image");
        const out = createWriteStream(file, { flags: "wx", mode: 0o600 });
        const sha = createHash("sha256");
        let size: number;
        try {
          size = await outsideWriteLock(async () => {
            const res = await httpsGet(target, { signal: opts.signal, allowHttp: true }, { "User-Agent": USER_AGENT });
            if (res.statusCode !== 200) {
              res.resume();
              throw new Error(`Unable to fetch "${target}": ${res.statusCode} ${res.statusMessage ?? ""}`.trimEnd());
            }
            const track = progressTracker("", (text) => opts.onMetadata?.({ download_progress: text }));
            return streamBody(target, res, out, { combined: sha, onBytes: track });
          });
        } catch (e) {
          if (opts.signal?.aborted) throw new Error("Operation cancelled");
          throw e;
        } finally {
          await closeSynced(out);
        }
        const got = sha.digest("hex");
        if (got !== hash) throw new Error(`Hash mismatch for "${target}": ${got} != ${hash}`);
        // The record's fields come from the image's own metadata.yaml, as LXD's getImageMetadata.
        const gate = await scanTarball(file, { capture: "metadata.yaml" }, { signal: opts.signal });
        if (!gate.captured) throw new BadRequest("Metadata tarball is missing metadata.yaml");
        parseImageMetadata(gate.captured.toString("utf8"));
        const stored = images.find(project, hash);
        if (stored) return stored;
        handedOver = true;
        const view = await images.importer.importUpload(project, { kind: "unified", dir, file, fingerprint: got, size, filename: "" }, { public: opts.public ?? false, requestor: opts.requestor, signal: opts.signal });
        log.info({ fingerprint: got, project }, "Image downloaded");
        return images.find(project, view.fingerprint)!;
      } finally {
        if (!handedOver) await rm(dir, { recursive: true, force: true });
      }
    });
  }
}

/** End a write stream and make its data durable. */
async function closeSynced(ws: WriteStream): Promise<void> {
  if (!ws.closed) {
    await new Promise<void>((resolve) => {
      ws.once("close", () => resolve());
      ws.once("error", () => resolve());
      ws.end();
    });
  }
  const fh = await open(String(ws.path), "r").catch(() => undefined);
  if (fh) {
    await fh.sync().catch(() => {});
    await fh.close();
  }
}
