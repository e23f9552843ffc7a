// The first-launch-from-remote figure: a simplestreams tree built from the busybox test image
// the way image servers ship containers (lxd.tar.xz + rootfs.squashfs, made with mksquashfs),
// served over plain http on loopback (both LXD and nodelxd pull http:// simplestreams servers,
// so neither needs a CA), then launched with source.server: first with nothing cached (index,
// download, verify, unpack), then again from the cached image. The image is deleted after each
// first launch so every sample downloads.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join, normalize } from "node:path";
import type { BenchClient } from "./client.js";

const ALIAS = "bbremote";

export interface RemoteTree {
  url: string;
  fingerprint: string;
  close(): Promise<void>;
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
}

const sha = (...files: string[]) => {
  const h = createHash("sha256");
  for (const f of files) h.update(readFileSync(f));
  return h.digest("hex");
};

/** Build the tree from a unified image tarball and serve it on `ip` (port chosen by the kernel). */
export async function serveRemoteTree(imageTarball: string, ip = "127.0.0.1"): Promise<RemoteTree> {
  const root = mkdtempSync("/tmp/nodelxd-bench-ss-");
  const work = join(root, ".work");
  mkdirSync(join(work, "x"), { recursive: true });
  sh("tar", ["-xJf", imageTarball, "-C", join(work, "x"), "--numeric-owner"]);
  const dir = join(root, "images/bbremote/20240101_0000");
  mkdirSync(dir, { recursive: true });
  sh("tar", ["-cJf", join(dir, "lxd.tar.xz"), "--owner=0", "--group=0", "--numeric-owner", "-C", join(work, "x"), "metadata.yaml", "templates"]);
  sh("mksquashfs", [join(work, "x", "rootfs"), join(dir, "rootfs.squashfs"), "-noappend", "-quiet", "-no-progress", "-comp", "xz"]);
  rmSync(work, { recursive: true, force: true });
  const meta = join(dir, "lxd.tar.xz");
  const squash = join(dir, "rootfs.squashfs");
  const fingerprint = sha(meta, squash);
  const item = (f: string, ftype: string, extra: Record<string, string> = {}) => ({ ftype, path: f.slice(root.length + 1), sha256: sha(f), size: statSync(f).size, ...extra });
  const products = {
    content_id: "images",
    datatype: "image-downloads",
    format: "products:1.0",
    products: {
      "bbremote:1:amd64:default": {
        aliases: ALIAS,
        arch: "amd64",
        os: "BusyBox",
        release: "1",
        variant: "default",
        versions: { "20240101_0000": { items: { "lxd.tar.xz": item(meta, "lxd.tar.xz", { combined_squashfs_sha256: fingerprint }), "root.squashfs": item(squash, "squashfs") } } },
      },
    },
  };
  mkdirSync(join(root, "streams/v1"), { recursive: true });
  writeFileSync(join(root, "streams/v1/images.json"), JSON.stringify(products));
  writeFileSync(join(root, "streams/v1/index.json"), JSON.stringify({ format: "index:1.0", index: { images: { datatype: "image-downloads", path: "streams/v1/images.json", format: "products:1.0", products: Object.keys(products.products) } } }));
  const server: Server = createServer((req, res) => {
    const file = normalize(join(root, decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname)));
    let size = -1;
    try {
      if (file.startsWith(root + "/")) size = statSync(file).isFile() ? statSync(file).size : -1;
    } catch {
      /* 404 */
    }
    if (size < 0) return void res.writeHead(404).end();
    res.writeHead(200, { "content-length": size, "content-type": "application/octet-stream" });
    if (req.method === "HEAD") return void res.end();
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, ip, () => r()));
  return {
    url: `http://${ip}:${(server.address() as AddressInfo).port}`,
    fingerprint,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Export the daemon's image `alias` as a unified tarball under `dir` (for building the tree). */
export async function exportImage(client: BenchClient, alias: string, dir: string): Promise<string> {
  const fp = (await client.sync("GET", `/1.0/images/aliases/${alias}`)).target as string;
  const img = await client.sync("GET", `/1.0/images/${fp}`);
  if (img.filename && !String(img.filename).endsWith(".tar.xz")) throw new Error(`image ${alias} is not a unified .tar.xz`);
  const out = join(dir, "image.tar.xz");
  const r = spawnSync("curl", ["-sf", "--unix-socket", client.socket, `http://lxd/1.0/images/${fp}/export`, "-o", out]);
  if (r.status !== 0) throw new Error(`exporting ${alias} failed`);
  return out;
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/**
 * One remote launch on one daemon: create from the tree's alias and start, timed; the instance
 * is removed after, and with `uncache` the image too, so the next sample downloads again.
 */
export async function remoteLaunchOnce(client: BenchClient, tree: RemoteTree, name: string, devices: Record<string, Record<string, string>>, uncache: boolean): Promise<number> {
  const t0 = process.hrtime.bigint();
  await client.op("POST", "/1.0/instances", { name, source: { type: "image", mode: "pull", server: tree.url, protocol: "simplestreams", alias: ALIAS }, profiles: ["default"], devices });
  await client.op("PUT", `/1.0/instances/${name}/state`, { action: "start", timeout: 30 });
  const took = ms(t0);
  await client.op("PUT", `/1.0/instances/${name}/state`, { action: "stop", timeout: 30, force: true });
  await client.op("DELETE", `/1.0/instances/${name}`);
  if (uncache) await client.op("DELETE", `/1.0/images/${tree.fingerprint}`);
  return took;
}
