// Plain http:// image sources, where LXD 5.0.2's daemon accepts them: a simplestreams server
// (its index and files fetched over http, every file still checked against the index's sha256)
// and a source.type url; never an LXD-protocol peer, and never a redirect from https down to
// http. The server is the test's simplestreams tree on 127.0.0.74 over http.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { makeCa, startImageServer, type ImageServerHandle, type TestCa } from "../helpers/image-server.js";

let d: TestDaemon;
let plain: ImageServerHandle;
let secure: ImageServerHandle;
let ca: TestCa;
let tmp: string;
const tag = `i2h${process.pid.toString(36)}`;
const created: string[] = [];

const wait = async (opUrl: string) => (await d.api("GET", `${opUrl}/wait?timeout=120`)).body.metadata;
const buildDirs = () => readdirSync(join(d.dir, "images")).filter((n) => n.startsWith(".build-"));

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-images2-http-");
  ca = makeCa(join(tmp, "ca"));
  plain = await startImageServer(undefined, "127.0.0.74", { plain: true });
  secure = await startImageServer(ca, "127.0.0.75");
  d = await startDaemon({ env: { SSL_CERT_FILE: ca.caFile } });
  for (const args of [["storage", "create", "default", "dir"], ["profile", "device", "add", "default", "root", "disk", "path=/", "pool=default"]]) {
    const r = d.lxc(...args);
    if (r.code !== 0) throw new Error(r.stderr);
  }
}, 120_000);

afterAll(async () => {
  for (const n of created) if (d?.lxc("delete", "-f", n).code !== 0 && d) spawnSync("lxc-stop", ["-k", "-n", n, "-P", join(d.dir, "containers")]);
  await d?.stop();
  await plain?.close();
  await secure?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe("http:// simplestreams servers", () => {
  it("POST /1.0/instances from an http simplestreams server pulls, verifies and starts the container", async () => {
    expect(plain.url).toMatch(/^http:\/\/127\.0\.0\.74:\d+$/);
    const c = `${tag}-c1`;
    created.push(c);
    const r = await d.api("POST", "/1.0/instances", { name: c, source: { type: "image", mode: "pull", server: plain.url, protocol: "simplestreams", alias: "busybox" } });
    expect(r.status).toBe(202);
    const op = await wait(r.body.operation);
    expect(op.status, op.err).toBe("Success");
    const v = plain.versions[0];
    expect(JSON.parse(d.lxc("query", `/1.0/images/${v.squashfs}`).stdout)).toMatchObject({ cached: true, update_source: { server: plain.url, protocol: "simplestreams" } });
    expect(plain.hits).toContain("/streams/v1/index.json");
    expect(plain.hits).toContain("/images/busybox/20240101_00_00/rootfs.squashfs");
    expect(d.lxc("start", c).code).toBe(0);
    expect(d.lxc("exec", c, "--", "cat", "/etc/hostname").stdout.trim()).toBe(c);
    // The first instance was unpacked straight from the image; its tree for later instances is
    // built afterwards, and the next launch copies it (no download, no unpack).
    const tree = join(d.dir, "cache", "image-trees", v.squashfs);
    for (let i = 0; i < 120 && !existsSync(join(tree, "rootfs", "bin", "busybox")); i++) await new Promise((r) => setTimeout(r, 250));
    expect(existsSync(join(tree, "rootfs", "bin", "busybox"))).toBe(true);
    expect(readdirSync(join(d.dir, "cache", "image-trees")).filter((n) => n.includes(".build-"))).toEqual([]);
    const hits = plain.hits.length;
    const c2 = `${tag}-c2`;
    created.push(c2);
    const again = await d.api("POST", "/1.0/instances", { name: c2, source: { type: "image", mode: "pull", server: plain.url, protocol: "simplestreams", alias: "busybox" } });
    expect((await wait(again.body.operation)).status).toBe("Success");
    expect(plain.hits.slice(hits).filter((h) => h.startsWith("/images/"))).toEqual([]);
    expect(d.lxc("start", c2).code).toBe(0);
    expect(d.lxc("exec", c2, "--", "cat", "/etc/hostname").stdout.trim()).toBe(c2);
  }, 120_000);

  it("the index's sha256 still binds the files: a tampered file over http is refused and leaves nothing", async () => {
    plain.override("/images/busybox/20240101_00_00/lxd_combined.tar.gz", (_q, res) => res.writeHead(200, { "content-length": 4 }).end("evil"));
    try {
      const r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: plain.url, protocol: "simplestreams", alias: "bbcombined" } });
      const op = await wait(r.body.operation);
      expect(op.status).toBe("Failure");
      expect(op.err).toMatch(/Hash mismatch|too large|truncated/);
      expect(buildDirs()).toEqual([]);
    } finally {
      plain.override("/images/busybox/20240101_00_00/lxd_combined.tar.gz", undefined);
    }
  });

  it("source.type url over http", async () => {
    const v = plain.versions[0];
    plain.override("/direct", (_q, res) => res.writeHead(200, { "LXD-Image-Hash": v.combined, "LXD-Image-URL": "/images/busybox/20240101_00_00/lxd_combined.tar.gz" }).end());
    try {
      const r = await d.api("POST", "/1.0/images", { source: { type: "url", url: `${plain.url}/direct` } });
      const op = await wait(r.body.operation);
      expect(op.status, op.err).toBe("Success");
      expect(op.metadata.fingerprint).toBe(v.combined);
    } finally {
      plain.override("/direct", undefined);
    }
  });

  it("an LXD-protocol server must be https; an https server redirecting to http is refused", async () => {
    const lxd = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: plain.url, protocol: "lxd", alias: "busybox" } });
    expect((await wait(lxd.body.operation)).err).toBe(`Invalid server URL "${plain.url}": only https:// servers are supported`);
    const ftp = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: "ftp://127.0.0.74/", protocol: "simplestreams", alias: "busybox" } });
    expect((await wait(ftp.body.operation)).err).toBe(`Invalid server URL "ftp://127.0.0.74/": only http:// and https:// servers are supported`);
    expect(plain.hits.filter((h) => h.includes("/1.0"))).toEqual([]);
    secure.override("/streams/v1/index.json", (_q, res) => res.writeHead(302, { location: `${plain.url}/streams/v1/index.json` }).end());
    try {
      const r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: secure.url, protocol: "simplestreams", alias: "busybox" } });
      const op = await wait(r.body.operation);
      expect(op.status).toBe("Failure");
      expect(op.err).toMatch(/redirect from https to http refused/);
    } finally {
      secure.override("/streams/v1/index.json", undefined);
    }
  });
});
