// A real simplestreams image server for tests, on 127.0.0.1 over HTTPS with a test CA: the
// busybox test image split into lxd.tar.xz + rootfs.squashfs (made with mksquashfs) +
// root.tar.xz, and as lxd_combined.tar.gz, with streams/v1/index.json and images.json as
// LXD's image servers lay them out. Daemons trust the CA through SSL_CERT_FILE, the variable
// Go's crypto/x509 (so real LXD and the lxc client) reads on Linux, and nodelxd too.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join, normalize } from "node:path";
import { busyboxImage } from "./image.js";

export interface TestCa {
  dir: string;
  /** PEM file of the CA certificate (what SSL_CERT_FILE points at). */
  caFile: string;
  /** Issue a server certificate for 127.0.0.x. */
  issue(ip: string): { cert: string; key: string };
}

export function makeCa(dir: string): TestCa {
  mkdirSync(dir, { recursive: true });
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.crt");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", caKey, "-out", caFile, "-subj", "/CN=nodelxd test CA", "-days", "2"], { stdio: "pipe" });
  let n = 0;
  return {
    dir,
    caFile,
    issue(ip: string) {
      const base = join(dir, `srv${n++}`);
      writeFileSync(`${base}.ext`, `subjectAltName=IP:${ip}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`);
      execFileSync("openssl", ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", `/CN=${ip}`], { stdio: "pipe" });
      execFileSync("openssl", ["x509", "-req", "-in", `${base}.csr`, "-CA", caFile, "-CAkey", caKey, "-CAcreateserial", "-out", `${base}.crt`, "-days", "2", "-extfile", `${base}.ext`], { stdio: "pipe" });
      return { cert: readFileSync(`${base}.crt`, "utf8"), key: readFileSync(`${base}.key`, "utf8") };
    },
  };
}

const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");
const shaOf = (...files: string[]) => {
  const h = createHash("sha256");
  for (const f of files) h.update(readFileSync(f));
  return h.digest("hex");
};

export interface PublishedVersion {
  serial: string;
  /** Fingerprints: lxd.tar.xz + squashfs, lxd.tar.xz + root.tar.xz, the combined tarball. */
  squashfs: string;
  rootxz: string;
  combined: string;
}

export interface ImageServerHandle {
  url: string;
  root: string;
  versions: PublishedVersion[];
  /** Requests seen (path only), for counting downloads. */
  hits: string[];
  /** Serve `path` with a handler of the test's own (a lying server). */
  override(path: string, handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined): void;
  /** Publish a new serial of the busybox product (a new fingerprint) and rewrite images.json. */
  publish(serial: string): PublishedVersion;
  /** Slow every file download down to about `bytesPerSecond` (0: full speed). */
  throttle(bytesPerSecond: number): void;
  close(): Promise<void>;
}

/**
 * Build the tree from the busybox image and serve it on `ip` with a certificate from `ca`, or
 * over plain http with `plain` (LXD's daemon pulls from http:// simplestreams servers too).
 */
export async function startImageServer(ca: TestCa | undefined, ip = "127.0.0.1", opts: { plain?: boolean } = {}): Promise<ImageServerHandle> {
  const root = mkdtempSync("/tmp/nodelxd-test-ss-");
  const work = join(root, ".work");
  mkdirSync(join(work, "x"), { recursive: true });
  execFileSync("tar", ["-xJf", busyboxImage(), "-C", join(work, "x"), "--numeric-owner"], { stdio: "pipe" });
  const versions: PublishedVersion[] = [];
  const overrides = new Map<string, (req: IncomingMessage, res: ServerResponse) => void>();
  const hits: string[] = [];
  let rate = 0;

  const build = (serial: string): PublishedVersion => {
    const dir = join(root, "images", "busybox", serial.replace(/[^0-9a-z_]/gi, "_"));
    mkdirSync(dir, { recursive: true });
    // Each serial's metadata differs (its serial is a property), so each has its own fingerprint.
    const meta = readFileSync(join(work, "x", "metadata.yaml"), "utf8").replace(/^properties:\n/m, `properties:\n  serial: "${serial}"\n`);
    const metaDir = join(work, `meta-${serial}`);
    mkdirSync(metaDir, { recursive: true });
    writeFileSync(join(metaDir, "metadata.yaml"), meta);
    execFileSync("cp", ["-a", join(work, "x", "templates"), metaDir]);
    const tarFlags = ["--sort=name", "--mtime=@1577836800", "--owner=0", "--group=0", "--numeric-owner"];
    execFileSync("tar", ["-cJf", join(dir, "lxd.tar.xz"), ...tarFlags, "-C", metaDir, "metadata.yaml", "templates"]);
    if (!existsSync(join(work, "rootfs.squashfs"))) {
      execFileSync("mksquashfs", [join(work, "x", "rootfs"), join(work, "rootfs.squashfs"), "-noappend", "-quiet", "-no-progress", "-all-time", "1577836800", "-mkfs-time", "1577836800"], { stdio: "pipe" });
      execFileSync("tar", ["-cJf", join(work, "root.tar.xz"), ...tarFlags, "-C", join(work, "x", "rootfs"), "."]);
    }
    execFileSync("cp", [join(work, "rootfs.squashfs"), join(dir, "rootfs.squashfs")]);
    execFileSync("cp", [join(work, "root.tar.xz"), join(dir, "root.tar.xz")]);
    execFileSync("bash", ["-c", `tar -cf - ${tarFlags.join(" ")} -C "$1" metadata.yaml templates -C "$2" rootfs | gzip -n > "$3"`, "_", metaDir, join(work, "x"), join(dir, "lxd_combined.tar.gz")]);
    const v = {
      serial,
      squashfs: shaOf(join(dir, "lxd.tar.xz"), join(dir, "rootfs.squashfs")),
      rootxz: shaOf(join(dir, "lxd.tar.xz"), join(dir, "root.tar.xz")),
      combined: sha(join(dir, "lxd_combined.tar.gz")),
    };
    versions.push(v);
    return v;
  };

  const writeIndex = () => {
    const item = (serial: string, name: string, ftype: string, extra: Record<string, string> = {}) => {
      const rel = `images/busybox/${serial.replace(/[^0-9a-z_]/gi, "_")}/${name}`;
      const f = join(root, rel);
      return { ftype, path: rel, sha256: sha(f), size: statSync(f).size, ...extra };
    };
    const busyboxVersions: Record<string, unknown> = {};
    const combinedVersions: Record<string, unknown> = {};
    for (const v of versions) {
      busyboxVersions[v.serial] = {
        items: {
          "lxd.tar.xz": item(v.serial, "lxd.tar.xz", "lxd.tar.xz", { combined_squashfs_sha256: v.squashfs, combined_rootxz_sha256: v.rootxz, combined_sha256: v.rootxz }),
          "root.squashfs": item(v.serial, "rootfs.squashfs", "squashfs"),
          "root.tar.xz": item(v.serial, "root.tar.xz", "root.tar.xz"),
        },
      };
      combinedVersions[v.serial] = { items: { "lxd_combined.tar.gz": item(v.serial, "lxd_combined.tar.gz", "lxd_combined.tar.gz") } };
    }
    const products = {
      content_id: "images",
      datatype: "image-downloads",
      format: "products:1.0",
      products: {
        "busybox:1.36:amd64:default": { aliases: "busybox,busybox/1.36", arch: "amd64", os: "BusyBox", release: "1.36", release_title: "1.36", variant: "default", versions: busyboxVersions },
        "bbcombined:1:amd64:default": { aliases: "bbcombined", arch: "amd64", os: "BBCombined", release: "1", release_title: "1", variant: "default", versions: combinedVersions },
      },
    };
    mkdirSync(join(root, "streams/v1"), { recursive: true });
    writeFileSync(join(root, "streams/v1/images.json"), JSON.stringify(products));
    writeFileSync(
      join(root, "streams/v1/index.json"),
      JSON.stringify({ format: "index:1.0", index: { images: { datatype: "image-downloads", path: "streams/v1/images.json", format: "products:1.0", products: Object.keys(products.products) } } }),
    );
  };

  build("20240101_00:00");
  writeIndex();

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "https://x").pathname;
    hits.push(path);
    const o = overrides.get(path);
    if (o) return o(req, res);
    const file = normalize(join(root, decodeURIComponent(path)));
    if (!file.startsWith(root + "/") || file.includes("/.work")) {
      res.writeHead(404).end();
      return;
    }
    let st;
    try {
      st = statSync(file);
    } catch {
      res.writeHead(404).end();
      return;
    }
    if (!st.isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-length": st.size, "content-type": "application/octet-stream" });
    if (req.method === "HEAD") return res.end();
    if (rate === 0 || path.endsWith(".json")) {
      const stream = createReadStream(file);
      stream.pipe(res);
      res.on("close", () => stream.destroy());
      return;
    }
    // Throttled: 16 KiB slices at `rate` bytes per second.
    const data = readFileSync(file);
    let off = 0;
    const step = () => {
      if (res.destroyed) return;
      if (off >= data.length) return void res.end();
      const slice = data.subarray(off, off + 16 * 1024);
      off += slice.length;
      res.write(slice);
      setTimeout(step, rate > 0 ? Math.ceil((slice.length * 1000) / rate) : 0);
    };
    step();
  };
  let server: Server | HttpServer;
  if (opts.plain || !ca) server = createHttpServer(handler);
  else {
    const { cert, key } = ca.issue(ip);
    server = createServer({ cert, key }, handler);
  }
  await new Promise<void>((r) => server.listen(0, ip, () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${opts.plain || !ca ? "http" : "https"}://${ip}:${port}`,
    root,
    versions,
    hits,
    override: (path, handler) => (handler ? overrides.set(path, handler) : overrides.delete(path)),
    publish: (serial) => {
      const v = build(serial);
      writeIndex();
      return v;
    },
    throttle: (bps) => (rate = bps),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(root, { recursive: true, force: true });
    },
  };
}
