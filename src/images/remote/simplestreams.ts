// The simplestreams protocol, as LXD 5.0.2's client reads it (shared/simplestreams): the index
// streams/v1/index.json names products files (datatype image-downloads); each product version
// (serial YYYYMMDD...) with an lxd.tar.xz item gives one image per rootfs item (squashfs,
// root.tar.xz, disk images) and lxd_combined.tar.gz gives a unified image. The fingerprint is
// the combined sha256 the metadata item carries; aliases are the product's own plus each with
// "/<arch>" appended, the newest serial and the native architecture first.
import { createHash } from "node:crypto";
import { getJson, httpsGet, streamBody } from "./http.js";
import { architectureName, hostArchitecture } from "./arch.js";
import type { DownloadResult, ImageServer, RemoteAlias, RemoteImage, ServerAddress, TransferOptions } from "./types.js";
import { progressTracker } from "./progress.js";
import type { Writable } from "node:stream";

interface Item {
  ftype?: string;
  path?: string;
  sha256?: string;
  size?: number;
  combined_sha256?: string;
  combined_rootxz_sha256?: string;
  combined_squashfs_sha256?: string;
  "combined_disk-kvm-img_sha256"?: string;
  "combined_disk1-img_sha256"?: string;
  "combined_uefi1-img_sha256"?: string;
}
interface Version {
  items?: Record<string, Item>;
  label?: string;
}
interface Product {
  aliases?: string;
  arch?: string;
  os?: string;
  release?: string;
  release_title?: string;
  version?: string;
  variant?: string;
  support_eol?: string;
  lxd_requirements?: Record<string, string>;
  versions?: Record<string, Version>;
}
export interface ProductsFile {
  products?: Record<string, Product>;
}

export interface StreamFile {
  path: string;
  sha256: string;
  size: number;
}

export interface StreamImage extends RemoteImage {
  files: { meta: StreamFile; root?: StreamFile };
}

interface ExtendedAlias extends RemoteAlias {
  architecture: string;
}

const ROOT_TYPES = ["disk1.img", "disk-kvm.img", "uefi1.img", "root.tar.xz", "squashfs"];
const TYPE_PREFERENCE = ["squashfs", "root.tar.xz", "disk-kvm.img", "uefi1.img", "disk1.img"];
const ZERO_UNIX = "1970-01-01T00:00:00Z";

function isoDate(serial: string): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})/.exec(serial);
  if (!m) return undefined;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  if (Number.isNaN(d.getTime()) || d.getUTCDate() !== Number(m[3])) return undefined;
  return d.toISOString().replace(/\.000Z$/, "Z");
}

/** Products → images, as Products.ToLXD (entries LXD skips are skipped). */
export function productsToImages(file: ProductsFile): StreamImage[] {
  const images: StreamImage[] = [];
  for (const product of Object.values(file.products ?? {})) {
    const architecture = architectureName(product.arch ?? "");
    if (!architecture) continue;
    for (const [serial, version] of Object.entries(product.versions ?? {})) {
      if (serial.length < 8) continue;
      const created = isoDate(serial.slice(0, 8));
      if (!created) continue;
      const items = Object.values(version.items ?? {});
      const add = (meta: Item, root?: Item) => {
        let fingerprint = "";
        if (root) {
          if (root.ftype === "root.tar.xz") fingerprint = meta.combined_rootxz_sha256 || meta.combined_sha256 || "";
          else if (root.ftype === "squashfs") fingerprint = meta.combined_squashfs_sha256 ?? "";
          else if (root.ftype === "disk-kvm.img") fingerprint = meta["combined_disk-kvm-img_sha256"] ?? "";
          else if (root.ftype === "disk1.img") fingerprint = meta["combined_disk1-img_sha256"] ?? "";
          else if (root.ftype === "uefi1.img") fingerprint = meta["combined_uefi1-img_sha256"] ?? "";
        } else fingerprint = meta.sha256 ?? "";
        // Only well-formed entries: a fingerprint is 64 hex digits, paths are relative and plain.
        if (!/^[0-9a-f]{64}$/.test(fingerprint)) return;
        if (!validPath(meta.path) || (root && !validPath(root.path))) return;
        if (!/^[0-9a-f]{64}$/.test(meta.sha256 ?? "") || (root && !/^[0-9a-f]{64}$/.test(root.sha256 ?? ""))) return;
        const filename = meta.path!.split("/").pop()!;
        let description = `${product.os ?? ""} ${product.release_title ?? ""} ${product.arch ?? ""}`;
        if (version.label) description = `${description} (${version.label})`;
        description = `${description} (${serial})`;
        const properties: Record<string, string> = {
          os: product.os ?? "",
          release: product.release ?? "",
          version: product.version ?? "",
          architecture: product.arch ?? "",
          label: version.label ?? "",
          serial,
          description,
        };
        for (const [k, v] of Object.entries(product.lxd_requirements ?? {})) properties[`requirements.${k}`] = String(v);
        if (product.variant) properties.variant = product.variant;
        let type: RemoteImage["type"] = "container";
        if (root) {
          properties.type = root.ftype!;
          if (["disk1.img", "disk-kvm.img", "uefi1.img"].includes(root.ftype!)) type = "virtual-machine";
        } else properties.type = "tar.gz";
        for (const k of Object.keys(properties)) if (properties[k] === "") delete properties[k];
        let expires = ZERO_UNIX;
        if (product.support_eol && /^\d{4}-\d{2}-\d{2}$/.test(product.support_eol)) expires = `${product.support_eol}T00:00:00Z`;
        images.push({
          fingerprint,
          type,
          architecture,
          public: true,
          filename,
          size: (meta.size ?? 0) + (root?.size ?? 0),
          properties,
          aliases: (product.aliases ?? "")
            .split(",")
            .filter((a) => a !== "")
            .map((name) => ({ name, description: "" })),
          created_at: created,
          expires_at: expires,
          uploaded_at: created,
          files: {
            meta: { path: meta.path!, sha256: meta.sha256!, size: meta.size ?? 0 },
            root: root ? { path: root.path!, sha256: root.sha256!, size: root.size ?? 0 } : undefined,
          },
        });
      };
      for (const item of items) {
        if (item.ftype === "lxd_combined.tar.gz") add(item);
        if (item.ftype === "lxd.tar.xz") for (const sub of items) if (ROOT_TYPES.includes(sub.ftype ?? "")) add(item, sub);
      }
    }
  }
  return images;
}

/** A products-relative path: no scheme, no "..", no leading slash tricks beyond what JoinUrls allows. */
function validPath(p: string | undefined): boolean {
  return !!p && !/^[a-z][a-z0-9+.-]*:/i.test(p) && !p.split("/").includes("..") && !p.startsWith("//") && !/[\x00-\x1f\x7f?#\\]/.test(p);
}

function compareImages(a: RemoteImage, b: RemoteImage): number {
  for (const prop of ["os", "release", "variant", "serial", "architecture"]) {
    const x = a.properties[prop] ?? "";
    const y = b.properties[prop] ?? "";
    if (x === y) continue;
    if (x === "") return 1;
    if (y === "") return -1;
    if (prop === "serial") return x > y ? -1 : 1;
    return x < y ? -1 : 1;
  }
  const score = (t: string | undefined) => Math.max(0, TYPE_PREFERENCE.indexOf(t ?? ""));
  return score(a.properties.type) - score(b.properties.type);
}

/** applyAliases: sort the images, then give each alias to the first image claiming it (per type and architecture). */
export function aliasesOf(images: StreamImage[], native = hostArchitecture()): ExtendedAlias[] {
  const list: ExtendedAlias[] = [];
  const sorted = [...images].sort(compareImages);
  const add = (type: string, architecture: string, name: string, target: string) => {
    if (list.some((e) => e.name === name && e.type === type && e.architecture === architecture)) return;
    list.push({ name, target, type, architecture });
  };
  for (const image of sorted) {
    for (const a of image.aliases) {
      add(image.type, image.architecture, a.name, image.fingerprint);
      add(image.type, image.architecture, `${a.name}/${image.properties.architecture}`, image.fingerprint);
    }
  }
  // Native architecture first (stable: serial order kept within one architecture).
  return [...list.filter((a) => a.architecture === native), ...list.filter((a) => a.architecture !== native)];
}

export function findAlias(aliases: ExtendedAlias[], name: string, type: string): RemoteAlias | undefined {
  let match: ExtendedAlias | undefined;
  for (const e of aliases) {
    if (e.name !== name || (type !== "" && e.type !== type)) continue;
    if (match) {
      if (match.type !== e.type) throw new Error(`More than one match for alias '${name}'`);
      continue;
    }
    match = e;
  }
  return match && { name: match.name, target: match.target, type: match.type };
}

export function simplestreamsServer(address: ServerAddress): ImageServer {
  const base = address.server.replace(/\/+$/, "");
  let cache: { images: StreamImage[]; aliases: ExtendedAlias[] } | undefined;
  const url = (path: string) => `${base}/${path.replace(/^\/+/, "")}`;

  const load = async (opts: TransferOptions) => {
    if (cache) return cache;
    const t = { signal: opts.signal, allowHttp: true };
    let index: { index?: Record<string, { datatype?: string; path?: string; products?: string[] }> };
    try {
      index = (await getJson(url("streams/v1/index.json"), t)) as typeof index;
    } catch (e) {
      throw new Error(`Failed parsing stream: ${(e as Error).message}`);
    }
    const images: StreamImage[] = [];
    for (const entry of Object.values(index?.index ?? {})) {
      if (entry?.datatype !== "image-downloads" || !Array.isArray(entry.products) || entry.products.length === 0) continue;
      if (!validPath(entry.path)) continue;
      let products: ProductsFile;
      try {
        products = (await getJson(url(entry.path!), t)) as ProductsFile;
      } catch (e) {
        throw new Error(`Failed parsing products: ${(e as Error).message}`);
      }
      images.push(...productsToImages(products));
    }
    cache = { images, aliases: aliasesOf(images) };
    return cache;
  };

  const find = async (fingerprint: string, opts: TransferOptions): Promise<StreamImage> => {
    const { images } = await load(opts);
    const matches = images.filter((i) => fingerprint !== "" && i.fingerprint.startsWith(fingerprint));
    if (matches.length === 0) throw new Error("The requested image couldn't be found");
    if (new Set(matches.map((m) => m.fingerprint)).size > 1) throw new Error("More than one match for the provided partial fingerprint");
    return matches[0];
  };

  return {
    async alias(name, type, opts) {
      const { aliases } = await load(opts);
      if (type === "") return findAlias(aliases, name, "container") ?? findAlias(aliases, name, "virtual-machine");
      return findAlias(aliases, name, type);
    },
    async image(fingerprint, opts) {
      if (opts.secret) throw new Error("Private images aren't supported by the simplestreams protocol");
      try {
        const { files: _files, ...image } = await find(fingerprint, opts);
        return image;
      } catch (e) {
        throw new Error(`Failed getting image: ${(e as Error).message}`);
      }
    },
    async download(image, into, opts): Promise<DownloadResult> {
      const found = await find(image.fingerprint, opts);
      const combined = createHash("sha256");
      const total = found.files.meta.size + (found.files.root?.size ?? 0);
      if (opts.limit !== undefined && total > opts.limit) throw new Error(`Remote image with size ${total} exceeds allowed bugdget of ${opts.limit}`);
      const fetchOne = async (file: StreamFile, label: string, sink: Writable) => {
        const where = url(file.path);
        const res = await httpsGet(where, { signal: opts.signal, allowHttp: true });
        if (res.statusCode !== 200) {
          res.resume();
          throw new Error(`Unable to fetch ${where}: ${res.statusCode} ${res.statusMessage ?? ""}`.trimEnd());
        }
        const track = progressTracker(label, opts.progress);
        // The index states each file's size: anything beyond it is a lie.
        return streamBody(where, res, sink, { sha256: file.sha256, combined, limit: file.size > 0 ? file.size : opts.limit, onBytes: track });
      };
      let size = await fetchOne(found.files.meta, "metadata", into.meta);
      if (found.files.root) size += await fetchOne(found.files.root, "rootfs", into.rootfs);
      const fingerprint = combined.digest("hex");
      if (fingerprint !== found.fingerprint) throw new Error(`Image fingerprint mismatch: got ${fingerprint} expected ${found.fingerprint}`);
      return { split: !!found.files.root, fingerprint, size, rootfsPart: found.files.root ? (found.type === "container" ? "rootfs" : "rootfs.img") : undefined };
    },
  };
}
