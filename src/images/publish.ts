// Publishing: an instance's volume directory (metadata.yaml, templates/, rootfs/) becomes a
// unified image tarball built with GNU tar and a compressor from our fixed table, hashed
// while written, then stored like an upload.
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { lstat, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseYaml, stringifyYaml } from "../shared/yaml.js";
import { BadRequest } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";
import type { ImagesPostBody } from "../shared/schemas/image.js";
import type { Ports } from "../ports.js";
import type { OperationManager } from "../operations/manager.js";
import type { OperationView } from "../operations/types.js";
import { spawnStreaming, type StreamedProcess } from "../os/exec.js";
import { scanTarball } from "./archive.js";
import { CODECS, compressCommand, CompressionAlgorithmError, parseCompressionAlgorithm, type CompressionAlgorithm } from "./compression.js";
import { canonicalArchitecture, parseImageMetadata } from "./metadata.js";
import type { BuiltImage } from "./import.js";
import type { ImageService } from "./service.js";
import { progressReporter, treeSize } from "./progress.js";
import { BUILD_PREFIX } from "./upload.js";
import { outsideWriteLock } from "../shared/write-lock.js";

export interface BuildOptions {
  compression: CompressionAlgorithm;
  /** Replace metadata.yaml's properties (LXD: when the request gives any). */
  properties?: Record<string, string>;
  /** Unix seconds; 0 keeps metadata.yaml's. */
  expiryDate?: number;
  architecture: string;
  signal?: AbortSignal;
  /** Working directory (removed by the caller); the tarball is written inside it. */
  buildDir: string;
  /** Operation metadata updates ("Image pack: N%"). */
  onProgress?: (meta: Record<string, unknown>) => void;
  /** Bytes the image may take (a project's limits.disk budget); -1 or absent for no limit. */
  quota?: number;
  /**
   * The instance's id map read backwards: host id -> id inside (undefined: not mapped). Given,
   * the tarball gets host-neutral owners while the instance's files keep theirs on disk (LXD's
   * publish packs through the map; a shift on disk would break security.protection.shift).
   */
  unshift?: { uid(host: number): number | undefined; gid(host: number): number | undefined };
}

/** GNU tar --owner-map/--group-map files for every owner in `dir` that the map translates. */
async function ownerMaps(dir: string, unshift: NonNullable<BuildOptions["unshift"]>, into: string): Promise<string[]> {
  const uids = new Map<number, number>();
  const gids = new Map<number, number>();
  const note = (st: { uid: number; gid: number }) => {
    if (!uids.has(st.uid)) {
      const u = unshift.uid(st.uid);
      if (u !== undefined) uids.set(st.uid, u);
    }
    if (!gids.has(st.gid)) {
      const g = unshift.gid(st.gid);
      if (g !== undefined) gids.set(st.gid, g);
    }
  };
  const walk = async (d: string): Promise<void> => {
    note(await lstat(d));
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else note(await lstat(p).catch(() => ({ uid: -1, gid: -1 })));
    }
  };
  await walk(dir);
  const lines = (m: Map<number, number>) => [...m].map(([h, n]) => `+${h} +${n}\n`).join("");
  await writeFile(join(into, "owner-map"), lines(uids), { mode: 0o600 });
  await writeFile(join(into, "group-map"), lines(gids), { mode: 0o600 });
  return [`--owner-map=${join(into, "owner-map")}`, `--group-map=${join(into, "group-map")}`];
}

/** Resolve an algorithm name (request or images.compression_algorithm) to one of our codecs. */
export function codecFor(name: string): CompressionAlgorithm {
  try {
    return parseCompressionAlgorithm(name.trim() === "" ? "gzip" : name);
  } catch (e) {
    if (e instanceof CompressionAlgorithmError) throw new BadRequest(e.message);
    throw e;
  }
}

/** Tar and compress `dir` into a unified image in `opts.buildDir`. */
export async function buildImageFromDirectory(dir: string, opts: BuildOptions): Promise<BuiltImage> {
  const stage = join(opts.buildDir, "stage");
  await mkdir(stage, { recursive: true, mode: 0o700 });
  const metaPath = join(dir, "metadata.yaml");
  const existing = await lstat(metaPath).catch(() => undefined);
  let doc: Record<string, unknown>;
  let metaText: string | undefined;
  if (existing?.isFile()) {
    metaText = await readFile(metaPath, "utf8");
    doc = (parseYaml(metaText) ?? {}) as Record<string, unknown>;
    if (typeof doc !== "object" || Array.isArray(doc)) throw new Error("Instance metadata.yaml is not a map");
  } else {
    doc = { architecture: opts.architecture, creation_date: Math.floor(Date.now() / 1000) };
  }
  // As LXD: the instance's metadata.yaml goes in as it is unless properties or expiry change.
  const props = opts.properties && Object.keys(opts.properties).length > 0 ? opts.properties : undefined;
  if (props) doc.properties = props;
  if (opts.expiryDate) doc.expiry_date = opts.expiryDate;
  if (metaText === undefined || props || opts.expiryDate) metaText = stringifyYaml(doc);
  const meta = parseImageMetadata(metaText);
  await writeFile(join(stage, "metadata.yaml"), metaText, { mode: 0o644 });

  const rootfs = await lstat(join(dir, "rootfs")).catch(() => undefined);
  if (!rootfs?.isDirectory()) throw new Error("Instance has no rootfs directory");
  const members = ["rootfs"];
  if ((await lstat(join(dir, "templates")).catch(() => undefined))?.isDirectory()) members.push("templates");

  const out = join(opts.buildDir, "image");
  const hash = createHash("sha256");
  let size = 0;
  let quotaErr: Error | undefined;
  const hasher = new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      size += chunk.length;
      const quota = opts.quota ?? -1;
      if (quota >= 0 && size > quota) {
        quotaErr = new Error(`reached ${size} bytes, exceeding quota of ${quota}`);
        return cb(quotaErr);
      }
      cb(null, chunk);
    },
  });
  const total = opts.onProgress ? await treeSize(join(dir, "rootfs")) : 0;
  const report = opts.onProgress ? progressReporter("create_image_from_container_pack", "Image pack", total, opts.onProgress) : undefined;
  let packed = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _e, cb) {
      packed += chunk.length;
      report?.(packed);
      cb(null, chunk);
    },
  });
  const maps = opts.unshift ? await ownerMaps(join(dir, "rootfs"), opts.unshift, opts.buildDir) : [];
  const tar = spawnStreaming(
    "tar",
    ["-c", "-f", "-", "--numeric-owner", ...maps, "--xattrs", "--xattrs-include=*", "--sort=name", "-C", stage, "metadata.yaml", "-C", dir, ...members],
    { signal: opts.signal, stdin: "ignore", stdout: "pipe" },
  );
  const codec = CODECS[opts.compression.codec];
  const command = compressCommand(opts.compression);
  let compressor: StreamedProcess | undefined;
  let feed: Promise<unknown> = Promise.resolve();
  let source: NodeJS.ReadableStream;
  if (command) {
    compressor = spawnStreaming(command[0], command[1], { signal: opts.signal, stdin: "pipe", stdout: "pipe" });
    feed = pipeline(tar.stdout!, counter, compressor.stdin!).catch((e) => e);
    source = compressor.stdout!;
  } else source = tar.stdout!.pipe(counter);
  let streamErr: unknown;
  try {
    await pipeline(source, hasher, createWriteStream(out, { mode: 0o600 }));
  } catch (e) {
    streamErr = e;
    tar.kill();
    compressor?.kill();
  }
  await feed;
  const [t, c] = await Promise.all([tar.exited, compressor?.exited]);
  if (opts.signal?.aborted) throw new Error("Operation cancelled");
  // Over the quota: tar and the compressor were stopped for it, their exits say nothing more.
  if (quotaErr) throw quotaErr;
  if (t.exitCode !== 0 && t.exitCode !== 128) throw new Error(`Failed to pack image: tar exited with ${t.exitCode}: ${t.stderr.trim()}`);
  if (c && c.exitCode !== 0) throw new Error(`Failed to compress image (${codec.name}): ${c.stderr.trim() || `exit ${c.exitCode}`}`);
  if (streamErr) throw streamErr;
  if (t.exitCode !== 0) throw new Error("Failed to pack image");
  // Our own output, but the instance may hold members the unpack policy refuses: say so now.
  await scanTarball(out, {}, { signal: opts.signal });
  return { file: out, fingerprint: hash.digest("hex"), size, properties: meta.properties, expiryDate: meta.expiry_date };
}

export interface PublisherDeps {
  images: ImageService;
  operations: OperationManager;
  ports: Pick<Ports, "instances" | "projects">;
  /** images.compression_algorithm (server config). */
  defaultCompression: () => string;
}

/** POST /1.0/images with an instance or snapshot source. */
export class ImagePublisher {
  constructor(private readonly deps: PublisherDeps) {}

  publish(project: string, body: ImagesPostBody, requestor: Requestor): OperationView {
    const instances = this.deps.ports.instances;
    const { name, type } = body.source;
    if (name === "") throw new BadRequest("No source provided");
    if (type === "snapshot" && !name.includes("/")) throw new BadRequest("Not a snapshot");
    if (type !== "snapshot" && name.includes("/")) throw new BadRequest("This is a snapshot");
    const compression = codecFor(body.compression_algorithm || this.deps.defaultCompression());
    for (const a of body.aliases ?? []) if (this.deps.images.aliases.exists(this.deps.images.projectFor(project), a.name)) throw new BadRequest(`Alias already exists: ${a.name}`);
    const expiry = body.expires_at ? Math.floor(new Date(body.expires_at).getTime() / 1000) : 0;
    if (Number.isNaN(expiry)) throw new BadRequest(`Invalid expires_at "${body.expires_at}"`);

    return this.deps.operations.create({
      class: "task",
      description: "Downloading image",
      project,
      run: async (ctx) => {
        const buildDir = join(this.deps.images.dir, `${BUILD_PREFIX}${randomUUID()}`);
        await mkdir(buildDir, { mode: 0o700 });
        try {
          const src = await instances.exportForPublish(project, name);
          let built: BuiltImage;
          try {
            // Building the tarball is the long part and writes no rows: other cluster members need not wait for it.
            built = await outsideWriteLock(() => buildImageFromDirectory(src.dir, {
              compression,
              properties: body.properties ?? undefined,
              expiryDate: expiry > 0 ? expiry : 0,
              architecture: canonicalArchitecture(src.architecture) ?? src.architecture,
              signal: ctx.signal,
              buildDir,
              onProgress: (m) => ctx.updateMetadata(m),
              quota: this.deps.ports.projects.imageSpaceBudget(project),
              unshift: src.unshift,
            }));
          } finally {
            await src.release();
          }
          ctx.updateMetadata({ fingerprint: built.fingerprint, size: String(built.size) });
          const image = await this.deps.images.importer.storeBuilt(this.deps.images.projectFor(project), built, {
            public: body.public,
            filename: body.filename,
            architecture: canonicalArchitecture(src.architecture) ?? src.architecture,
            aliases: body.aliases ?? [],
            requestor,
          });
          return { fingerprint: image.fingerprint, size: String(image.size) };
        } finally {
          await rm(buildDir, { recursive: true, force: true });
        }
      },
    });
  }
}
