// Remote images, driven with the stock client against a real simplestreams server on
// 127.0.0.1 (HTTPS, a test CA trusted through SSL_CERT_FILE): lxc launch s:..., lxc image copy,
// progress, cancellation, one download for concurrent launches, and lying servers.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { makeCa, startImageServer, type ImageServerHandle, type TestCa } from "../helpers/image-server.js";

let d: TestDaemon;
let ca: TestCa;
let ss: ImageServerHandle;
let tmp: string;
const created: string[] = [];
const tag = `r${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;
const name = (what: string) => {
  const n = `${tag}-${what}`;
  created.push(n);
  return n;
};

/**
 * The stock client, run without blocking this process: the image server runs in it, and the
 * client and the daemon both talk to it while the client runs.
 */
const run = (cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const p = spawn(cmd, args, { env: { ...process.env, LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf", SSL_CERT_FILE: ca.caFile }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (c) => (stdout += c));
    p.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => p.kill("SIGKILL"), 150_000);
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
const lxc = (...args: string[]) => run("lxc", args);

const ok = (...args: string[]) => {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
};
const wait = async (opUrl: string) => (await d.api("GET", `${opUrl}/wait?timeout=120`)).body.metadata;
const images = async () => (await d.api("GET", "/1.0/images?recursion=1")).body.metadata as any[];
const buildDirs = () => readdirSync(join(d.dir, "images")).filter((n) => n.startsWith(".build-"));

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-remote-");
  ca = makeCa(join(tmp, "ca"));
  ss = await startImageServer(ca);
  d = await startDaemon({ env: { SSL_CERT_FILE: ca.caFile } });
  ok("storage", "create", "default", "dir");
  ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
  const added = await lxc("remote", "add", "s", ss.url, "--protocol", "simplestreams", "--public");
  if (added.code !== 0) throw new Error(added.stderr);
}, 120_000);

afterAll(async () => {
  for (const n of created) if (d?.lxc("delete", "-f", n).code !== 0 && d) spawnSync("lxc-stop", ["-k", "-n", n, "-P", join(d.dir, "containers")]);
  await d?.stop();
  await ss?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe("simplestreams with the stock client", () => {
  it("lxc launch s:busybox pulls the squashfs image (cached: true, last_used_at set) and the container runs", async () => {
    const c1 = name("c1");
    const r = await lxc("launch", "s:busybox", c1);
    expect(r.code, r.stderr).toBe(0);
    expect(ok("exec", c1, "--", "cat", "/etc/hostname").trim()).toBe(c1);
    const v = ss.versions[0];
    const img = JSON.parse(ok("query", `/1.0/images/${v.squashfs}`));
    expect(img).toMatchObject({ fingerprint: v.squashfs, cached: true, public: false, auto_update: true, type: "container", architecture: "x86_64" });
    expect(img.properties).toMatchObject({ os: "BusyBox", release: "1.36", serial: v.serial, type: "squashfs", variant: "default" });
    expect(img.last_used_at).not.toBe("0001-01-01T00:00:00Z");
    expect(ok("config", "get", c1, "volatile.base_image").trim()).toBe(v.squashfs);
    expect(buildDirs()).toEqual([]);
  });

  it("a second launch of the same alias uses the cached image (no download)", async () => {
    const before = ss.hits.filter((h) => h.endsWith("rootfs.squashfs")).length;
    const c = name("c1b");
    const r = await lxc("launch", "s:busybox/1.36", c);
    expect(r.code, r.stderr).toBe(0);
    expect(ss.hits.filter((h) => h.endsWith("rootfs.squashfs")).length).toBe(before);
  });

  it("lxc launch s:busybox/1.36/amd64 (a synthesised alias) and the combined tarball (s:bbcombined)", async () => {
    const c2 = name("c2");
    const r = await lxc("launch", "s:bbcombined", c2);
    expect(r.code, r.stderr).toBe(0);
    const imgs = await images();
    const combined = imgs.find((i) => i.fingerprint === ss.versions[0].combined);
    expect(combined).toMatchObject({ cached: true, properties: expect.objectContaining({ type: "tar.gz" }) });
    expect(ok("exec", c2, "--", "cat", "/etc/hostname").trim()).toBe(c2);
  });

  it("lxc image copy s:busybox local: --alias b --auto-update --public", async () => {
    // The squashfs copy is already here (cached); copy the other flavour by its fingerprint prefix.
    const r = await lxc("image", "copy", `s:${ss.versions[0].rootxz.slice(0, 12)}`, "local:", "--alias", "b", "--auto-update", "--public");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("Image copied successfully!");
    const img = JSON.parse(ok("query", "/1.0/images/aliases/b"));
    expect(img.target).toBe(ss.versions[0].rootxz);
    const full = JSON.parse(ok("query", `/1.0/images/${img.target}`));
    expect(full).toMatchObject({ public: true, cached: false, properties: expect.objectContaining({ type: "root.tar.xz" }) });
    const c = name("cb");
    expect((await lxc("launch", "b", c)).code).toBe(0);
    expect(ok("exec", c, "--", "cat", "/etc/hostname").trim()).toBe(c);
  });

  it("lxc image copy s:busybox local: --copy-aliases records the source and auto_update", async () => {
    const before = (await images()).length;
    const r = await lxc("image", "copy", "s:busybox", "local:", "--copy-aliases", "--auto-update");
    expect(r.code, r.stderr).toBe(0);
    // Already cached from the launch: no new image, the aliases now point at it.
    expect((await images()).length).toBe(before);
    const alias = JSON.parse(ok("query", "/1.0/images/aliases/busybox"));
    expect(alias.target).toBe(ss.versions[0].squashfs);
  });

  it("the operation reports download_progress as LXD formats it, and lxc shows the progress line", async () => {
    const v = ss.publish("20240301_00:00");
    ss.throttle(400_000);
    try {
      const r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: ss.url, protocol: "simplestreams", fingerprint: v.rootxz } });
      expect(r.status).toBe(202);
      const seen = new Set<string>();
      for (let i = 0; i < 200; i++) {
        const op = (await d.api("GET", r.body.operation)).body.metadata;
        const p = op.metadata?.download_progress;
        if (p) seen.add(p);
        if (op.status !== "Running") break;
        await new Promise((res) => setTimeout(res, 100));
      }
      const op = await wait(r.body.operation);
      expect(op.status, op.err).toBe("Success");
      expect(op.metadata.fingerprint).toBe(v.rootxz);
      expect([...seen].some((p) => /^rootfs: \d+% \([0-9.]+[kMG]?B\/s\)$/.test(p)), [...seen].join(" | ")).toBe(true);

      // A fresh image through lxc launch: the client prints LXD's "Retrieving image: rootfs: N% (...)".
      const c = name("cprog");
      // An alias not launched before (a launch by "busybox" would keep using its cached image, as LXD's prefer-cached rule).
      const out = await run("script", ["-qec", `stty cols 160 rows 40; lxc launch s:busybox/1.36/amd64 ${c}`, "/dev/null"]);
      expect(out.code, out.stdout + out.stderr).toBe(0);
      expect(out.stdout, JSON.stringify(out.stdout)).toMatch(/Retrieving image: (metadata|rootfs): \d+% \([0-9.]+[kMG]?B\/s\)/);
      expect(JSON.parse(ok("query", `/1.0/instances/${c}`)).config["volatile.base_image"]).toBe(v.squashfs);
    } finally {
      ss.throttle(0);
    }
  }, 180_000);
});

describe("concurrency, cancellation, crashes", () => {
  it("ten concurrent launches of a new image download it once", async () => {
    const v = ss.publish("20240401_00:00");
    const hitsBefore = ss.hits.filter((h) => h.includes("20240401") && h.endsWith("rootfs.squashfs")).length;
    ss.throttle(2_000_000);
    try {
      const names = Array.from({ length: 10 }, (_, i) => name(`par${i}`));
      const ops = await Promise.all(
        names.map((n) => d.api("POST", "/1.0/instances", { name: n, source: { type: "image", mode: "pull", server: ss.url, protocol: "simplestreams", fingerprint: v.squashfs } })),
      );
      for (const r of ops) expect(r.status, r.text).toBe(202);
      const results = await Promise.all(ops.map((r) => wait(r.body.operation)));
      for (const op of results) expect(op.status, op.err).toBe("Success");
      expect(ss.hits.filter((h) => h.includes("20240401") && h.endsWith("rootfs.squashfs")).length - hitsBefore).toBe(1);
      expect((await images()).filter((i) => i.fingerprint === v.squashfs)).toHaveLength(1);
    } finally {
      ss.throttle(0);
    }
  }, 180_000);

  it("cancelling the operation stops the download and leaves nothing", async () => {
    const v = ss.publish("20240501_00:00");
    ss.throttle(100_000);
    try {
      const n = name("cancel");
      const r = await d.api("POST", "/1.0/instances", { name: n, source: { type: "image", mode: "pull", server: ss.url, protocol: "simplestreams", fingerprint: v.squashfs } });
      expect(r.status).toBe(202);
      for (let i = 0; i < 100; i++) {
        const op = (await d.api("GET", r.body.operation)).body.metadata;
        if (op.metadata?.download_progress?.startsWith("rootfs")) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect((await d.api("GET", r.body.operation)).body.metadata.may_cancel).toBe(true);
      const del = await d.api("DELETE", r.body.operation);
      expect(del.status).toBe(200);
      const op = await wait(r.body.operation);
      expect(op.status).toBe("Cancelled");
      expect((await images()).some((i) => i.fingerprint === v.squashfs)).toBe(false);
      expect((await d.api("GET", `/1.0/instances/${n}`)).status).toBe(404);
      expect(buildDirs()).toEqual([]);
    } finally {
      ss.throttle(0);
    }
  }, 120_000);

  it("a half-downloaded image after kill -9 is cleaned at start", async () => {
    ss.throttle(100_000);
    try {
      const r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: ss.url, protocol: "simplestreams", alias: ss.versions.at(-1)!.rootxz } });
      expect(r.status).toBe(202);
      for (let i = 0; i < 100 && buildDirs().length === 0; i++) await new Promise((res) => setTimeout(res, 100));
      await new Promise((res) => setTimeout(res, 500));
      expect(buildDirs().length).toBe(1);
      // No auto-update at the restart (it would download in the background while later tests count files).
      expect((await d.api("PATCH", "/1.0", { config: { "images.auto_update_interval": "0" } })).status).toBe(200);
      await d.kill9();
      await d.restart();
      expect(buildDirs()).toEqual([]);
      expect((await images()).some((i) => i.fingerprint === ss.versions.at(-1)!.rootxz)).toBe(false);
    } finally {
      ss.throttle(0);
    }
  }, 120_000);
});

describe("lying servers", () => {
  const pull = async (fingerprint: string) => {
    const r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: ss.url, protocol: "simplestreams", alias: fingerprint } });
    expect(r.status).toBe(202);
    return wait(r.body.operation);
  };
  const nothingLeft = async (fp: string) => {
    expect((await images()).some((i) => i.fingerprint === fp)).toBe(false);
    expect(readdirSync(join(d.dir, "images")).filter((n) => n.startsWith(fp) || n.startsWith(".build-"))).toEqual([]);
  };

  it("a wrong hash is refused (Hash mismatch) and leaves no file or row", async () => {
    const v = ss.publish("20240601_00:00");
    const dir = `/images/busybox/20240601_00_00`;
    ss.override(`${dir}/rootfs.squashfs`, (_q, res) => {
      const body = readFileSync(join(ss.root, dir, "root.tar.xz")).subarray(0, 100);
      res.writeHead(200, { "content-length": body.length }).end(body);
    });
    try {
      const op = await pull(v.squashfs);
      expect(op.status).toBe("Failure");
      expect(op.err).toMatch(/Hash mismatch for https:\/\/127\.0\.0\.1:\d+\/images\/busybox\/20240601_00_00\/rootfs\.squashfs: [0-9a-f]{64} != [0-9a-f]{64}/);
      await nothingLeft(v.squashfs);
    } finally {
      ss.override(`${dir}/rootfs.squashfs`, undefined);
    }
  });

  it("a truncated body is refused", async () => {
    const v = ss.versions.at(-1)!;
    const dir = `/images/busybox/20240601_00_00`;
    ss.override(`${dir}/root.tar.xz`, (_q, res) => {
      const full = readFileSync(join(ss.root, dir, "root.tar.xz"));
      res.writeHead(200, { "content-length": full.length });
      res.write(full.subarray(0, full.length >> 1));
      setTimeout(() => res.destroy(), 50);
    });
    try {
      const op = await pull(v.rootxz);
      expect(op.status).toBe("Failure");
      expect(op.err).toMatch(/truncated|aborted|socket hang up/i);
      await nothingLeft(v.rootxz);
    } finally {
      ss.override(`${dir}/root.tar.xz`, undefined);
    }
  });

  it("an oversized index and a redirect loop get errors", async () => {
    ss.override("/streams/v1/index.json", (_q, res) => {
      res.writeHead(200, { "content-length": 40 * 1024 * 1024 });
      res.end();
    });
    let op = await (async () => {
      const r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: ss.url, protocol: "simplestreams", alias: "busybox" } });
      return wait(r.body.operation);
    })();
    expect(op.status).toBe("Failure");
    expect(op.err).toMatch(/Failed parsing stream: Response too large/);
    ss.override("/streams/v1/index.json", (_q, res) => res.writeHead(302, { location: "/streams/v1/index.json" }).end());
    const r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: ss.url, protocol: "simplestreams", alias: "busybox" } });
    op = await wait(r.body.operation);
    expect(op.status).toBe("Failure");
    expect(op.err).toMatch(/stopped after 10 redirects/);
    ss.override("/streams/v1/index.json", undefined);
  });

  it("non-image content with matching hashes is refused by the gate; a squashfs escaping rootfs/dev is refused", async () => {
    // A server whose files hash as announced but are no image: an index pointing at garbage.
    const dir = join(ss.root, "images/evil");
    const { mkdirSync, writeFileSync } = await import("node:fs");
    const { createHash } = await import("node:crypto");
    const { execFileSync } = await import("node:child_process");
    mkdirSync(join(dir, "r/dev"), { recursive: true });
    mkdirSync(join(dir, "r/etc"), { recursive: true });
    execFileSync("mknod", [join(dir, "r/etc/evil"), "b", "8", "0"]);
    execFileSync("mksquashfs", [join(dir, "r"), join(dir, "evil.squashfs"), "-noappend", "-quiet", "-no-progress"], { stdio: "pipe" });
    writeFileSync(join(dir, "junk.tar.xz"), "this is not an image at all\n");
    const metaSrc = join(ss.root, "images/busybox/20240101_00_00/lxd.tar.xz");
    execFileSync("cp", [metaSrc, join(dir, "lxd.tar.xz")]);
    const h = (...fs: string[]) => {
      const x = createHash("sha256");
      for (const f of fs) x.update(readFileSync(f));
      return x.digest("hex");
    };
    const sz = (f: string) => readFileSync(f).length;
    const evilFp = h(join(dir, "lxd.tar.xz"), join(dir, "evil.squashfs"));
    const junkFp = h(join(dir, "junk.tar.xz"));
    const products = {
      products: {
        "evil:1:amd64": {
          aliases: "evil",
          arch: "amd64",
          os: "Evil",
          release: "1",
          versions: {
            "20240101": {
              items: {
                m: { ftype: "lxd.tar.xz", path: "images/evil/lxd.tar.xz", sha256: h(join(dir, "lxd.tar.xz")), size: sz(join(dir, "lxd.tar.xz")), combined_squashfs_sha256: evilFp },
                r: { ftype: "squashfs", path: "images/evil/evil.squashfs", sha256: h(join(dir, "evil.squashfs")), size: sz(join(dir, "evil.squashfs")) },
              },
            },
          },
        },
        "junk:1:amd64": { aliases: "junk", arch: "amd64", os: "Junk", release: "1", versions: { "20240101": { items: { c: { ftype: "lxd_combined.tar.gz", path: "images/evil/junk.tar.xz", sha256: junkFp, size: sz(join(dir, "junk.tar.xz")) } } } } },
      },
    };
    ss.override("/streams/v1/index.json", (_q, res) => res.writeHead(200).end(JSON.stringify({ index: { x: { datatype: "image-downloads", path: "evil/images.json", products: ["evil:1:amd64"] } } })));
    ss.override("/evil/images.json", (_q, res) => res.writeHead(200).end(JSON.stringify(products)));
    try {
      let r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: ss.url, protocol: "simplestreams", alias: "evil" } });
      let op = await wait(r.body.operation);
      expect(op.status).toBe("Failure");
      expect(op.err).toMatch(/Refusing unsafe squashfs image: Device node etc\/evil outside rootfs\/dev\//);
      await nothingLeft(evilFp);
      r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: ss.url, protocol: "simplestreams", alias: "junk" } });
      op = await wait(r.body.operation);
      expect(op.status).toBe("Failure");
      expect(op.err).toMatch(/Unsupported compression|Invalid|not/i);
      await nothingLeft(junkFp);
    } finally {
      ss.override("/streams/v1/index.json", undefined);
      ss.override("/evil/images.json", undefined);
    }
  });

  it("a server the daemon does not trust is refused; a bad protocol or server is a 400/failure", async () => {
    const { startImageServer: start, makeCa: mk } = await import("../helpers/image-server.js");
    const other = await start(mk(join(tmp, "ca2")), "127.0.0.1");
    try {
      const r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: other.url, protocol: "simplestreams", alias: "busybox" } });
      const op = await wait(r.body.operation);
      expect(op.status).toBe("Failure");
      expect(op.err).toMatch(/certificate/i);
    } finally {
      await other.close();
    }
    const bad = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: ss.url, protocol: "nope", alias: "busybox" } });
    const op = await wait(bad.body.operation);
    expect(op.err).toBe("Unsupported protocol: nope");
  }, 120_000);
});

describe("freshness", () => {
  const aliasTarget = async (n: string) => JSON.parse(ok("query", `/1.0/images/aliases/${n}`)).target;

  it("lxc image copy s:busybox/1.36 local: --alias fresh --auto-update, then lxc image refresh fresh after a new version", async () => {
    const v1 = ss.publish("20240701_00:00");
    let r = await lxc("image", "copy", "s:busybox/1.36", "local:", "--alias", "fresh", "--auto-update");
    expect(r.code, r.stderr).toBe(0);
    expect(await aliasTarget("fresh")).toBe(v1.squashfs);
    expect(JSON.parse(ok("query", `/1.0/images/${v1.squashfs}`))).toMatchObject({ auto_update: true, cached: false });
    r = await lxc("image", "refresh", "fresh");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("Image already up to date.");
    const v2 = ss.publish("20240801_00:00");
    r = await lxc("image", "refresh", "fresh");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("Image refreshed successfully!");
    expect(await aliasTarget("fresh")).toBe(v2.squashfs);
    expect((await d.api("GET", `/1.0/images/${v1.squashfs}`)).status).toBe(404);
    expect(JSON.parse(ok("query", `/1.0/images/${v2.squashfs}`))).toMatchObject({ auto_update: true });
  }, 180_000);

  it("images.auto_update_interval: a change runs the auto-update, which replaces the image (image-refreshed)", async () => {
    const before = await aliasTarget("fresh");
    const v3 = ss.publish("20240901_00:00");
    const r = await d.api("PATCH", "/1.0", { config: { "images.auto_update_interval": "1" } });
    expect(r.status).toBe(200);
    let now = before;
    for (let i = 0; i < 120 && now !== v3.squashfs; i++) {
      await new Promise((res) => setTimeout(res, 500));
      now = await aliasTarget("fresh");
    }
    expect(now).toBe(v3.squashfs);
    expect((await d.api("GET", `/1.0/images/${before}`)).status).toBe(404);
  }, 120_000);

  it("images.remote_cache_expiry: cached images unused for longer are deleted, others kept", async () => {
    const all = await images();
    const stale = all.find((i) => i.cached)!.fingerprint;
    const kept = all.find((i) => !i.cached)!.fingerprint;
    const q = d.cli("sql", "global", `UPDATE images SET last_use_date = '2000-01-01 00:00:00+00:00' WHERE fingerprint = '${stale}'`);
    expect(q.code, q.stderr).toBe(0);
    expect((await d.api("PATCH", "/1.0", { config: { "images.remote_cache_expiry": "3" } })).status).toBe(200);
    let status = 200;
    for (let i = 0; i < 60 && status === 200; i++) {
      await new Promise((res) => setTimeout(res, 500));
      status = (await d.api("GET", `/1.0/images/${stale}`)).status;
    }
    expect(status).toBe(404);
    expect((await d.api("GET", `/1.0/images/${kept}`)).status).toBe(200);
  }, 60_000);
});

describe("source.type url (LXD-Image-Hash / LXD-Image-URL)", () => {
  const pullUrl = async (path: string) => {
    const r = await d.api("POST", "/1.0/images", { source: { type: "url", url: ss.url + path } });
    expect(r.status).toBe(202);
    return wait(r.body.operation);
  };

  it("HEADs the URL, downloads the file it names, checks the hash and stores the image", async () => {
    const v = ss.publish("20241001_00:00");
    const file = "/images/busybox/20241001_00_00/lxd_combined.tar.gz";
    let sawHeaders: Record<string, unknown> = {};
    ss.override("/direct", (req, res) => {
      sawHeaders = req.headers;
      res.writeHead(200, { "LXD-Image-Hash": v.combined, "LXD-Image-URL": file }).end();
    });
    try {
      const op = await pullUrl("/direct");
      expect(op.status, op.err).toBe("Success");
      expect(op.metadata.fingerprint).toBe(v.combined);
      expect(sawHeaders["lxd-server-architectures"]).toBe("x86_64");
      expect(JSON.parse(ok("query", `/1.0/images/${v.combined}`))).toMatchObject({ cached: false, type: "container" });
    } finally {
      ss.override("/direct", undefined);
    }
  });

  it("a hash that does not match, or missing headers, fail and leave nothing", async () => {
    const file = "/images/busybox/20241001_00_00/root.tar.xz";
    const wrong = "ab".repeat(32);
    ss.override("/lying", (_q, res) => res.writeHead(200, { "LXD-Image-Hash": wrong, "LXD-Image-URL": file }).end());
    ss.override("/bare", (_q, res) => res.writeHead(200).end());
    try {
      let op = await pullUrl("/lying");
      expect(op.status).toBe("Failure");
      expect(op.err).toMatch(new RegExp(`^Hash mismatch for "https://127\\.0\\.0\\.1:\\d+${file.replace(/\./g, "\\.")}": [0-9a-f]{64} != ${wrong}$`));
      expect(buildDirs()).toEqual([]);
      op = await pullUrl("/bare");
      expect(op.err).toBe("Missing LXD-Image-Hash header");
    } finally {
      ss.override("/lying", undefined);
      ss.override("/bare", undefined);
    }
  });
});

