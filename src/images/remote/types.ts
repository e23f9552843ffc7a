// What the daemon needs from a remote image server, whatever its protocol: resolve an alias,
// describe an image, download its files. One file per protocol (lxd.ts, simplestreams.ts),
// one registry line each (index.ts).
import type { Writable } from "node:stream";

/** An image as the remote describes it (LXD's api.Image fields we keep). */
export interface RemoteImage {
  fingerprint: string;
  type: "container" | "virtual-machine";
  architecture: string;
  public: boolean;
  filename: string;
  size: number;
  properties: Record<string, string>;
  aliases: { name: string; description: string }[];
  created_at: string;
  expires_at: string;
  uploaded_at: string;
}

export interface RemoteAlias {
  name: string;
  target: string;
  type: string;
}

/** Where the downloaded files go: the metadata (or unified) tarball, and a split image's rootfs. */
export interface DownloadTargets {
  meta: Writable;
  rootfs: Writable;
}

export interface DownloadResult {
  /** Split image: metadata tarball + rootfs (tarball or squashfs). */
  split: boolean;
  /** sha256 over the metadata file followed by the rootfs file: the image's fingerprint. */
  fingerprint: string;
  size: number;
  /** Name of the rootfs part when split ("rootfs" or "rootfs.img"). */
  rootfsPart?: "rootfs" | "rootfs.img";
}

export interface TransferOptions {
  signal?: AbortSignal;
  /** LXD's progress text without the stage prefix, e.g. "rootfs: 45% (12.30MB/s)". */
  progress?: (text: string, percent: number, bytes: number, speed: number) => void;
  /** The largest image accepted (bytes, both files together). */
  limit?: number;
}

export interface ImageServer {
  /** Resolve an alias of the given type ("" any); undefined when the server has no such alias. */
  alias(name: string, type: string, opts: TransferOptions): Promise<RemoteAlias | undefined>;
  /** An image by (prefix of) fingerprint; a secret opens a private image on LXD servers. */
  image(fingerprint: string, opts: TransferOptions & { secret?: string }): Promise<RemoteImage>;
  /** Download the image's files into `into`; hashes are verified before this resolves. */
  download(image: RemoteImage, into: DownloadTargets, opts: TransferOptions & { secret?: string }): Promise<DownloadResult>;
}

export interface ServerAddress {
  /** https://host[:port][/path] */
  server: string;
  /** PEM certificate to pin (LXD protocol). */
  certificate?: string;
  /** The client certificate to present (a cluster member asking another for an image's files). */
  client?: { cert: string; key: string };
}

export type ImageServerFactory = (address: ServerAddress) => ImageServer;
