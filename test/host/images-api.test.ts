// /1.0/images driven as users drive it: the stock lxc client and raw HTTP on the socket.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

let d: TestDaemon;
let tmp: string;
let fp: string;
const IMAGE_KEYS = ["aliases", "architecture", "auto_update", "cached", "created_at", "expires_at", "filename", "fingerprint", "last_used_at", "profiles", "properties", "public", "size", "type", "uploaded_at"];

beforeAll(async () => {
  d = await startDaemon();
  tmp = mkdtempSync("/tmp/nodelxd-test-imgapi-");
  fp = createHash("sha256").update(readFileSync(busyboxImage())).digest("hex");
});
afterAll(async () => {
  await d?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const lxcIn = (input: string, ...args: string[]) => {
  const r = spawnSync("lxc", args, { input, encoding: "utf8", env: { ...process.env, LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf" } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
};
const wait = async (opUrl: string) => (await d.api("GET", `${opUrl}/wait?timeout=60`)).body.metadata;

describe("import", () => {
  it("lxc image import FILE --alias bb, with an image-created event", async () => {
    const ws = new WebSocket("ws+unix://" + d.socket + ":/1.0/events?type=lifecycle");
    const events: any[] = [];
    ws.on("message", (m) => events.push(JSON.parse(String(m))));
    await new Promise((r) => ws.once("open", r));
    const r = d.lxc("image", "import", busyboxImage(), "--alias", "bb");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Image imported with fingerprint: ${fp}`);
    await new Promise((res) => setTimeout(res, 200));
    ws.close();
    const created = events.find((e) => e.metadata.action === "image-created");
    expect(created.metadata.source).toBe(`/1.0/images/${fp}`);
    expect(created.metadata.context).toEqual({ type: "container" });
    expect(events.find((e) => e.metadata.action === "image-alias-created")?.metadata.source).toBe("/1.0/images/aliases/bb");
  });

  it("runs as a 'Downloading image' operation ending with fingerprint and size", async () => {
    const body = readFileSync(busyboxImage());
    const r = await d.api("POST", "/1.0/images?project=default", body, { "content-type": "application/octet-stream", "x-lxd-fingerprint": fp });
    expect(r.status).toBe(202);
    expect(r.body.metadata.description).toBe("Downloading image");
    const op = await wait(r.body.operation);
    expect(op.status).toBe("Failure");
    expect(op.err).toBe("Image with same fingerprint already exists");
    expect(op.metadata).toEqual({ fingerprint: fp, size: String(body.length) });
  });

  it("a wrong X-LXD-fingerprint fails the import with LXD's message", async () => {
    const r = await d.api("POST", "/1.0/images", readFileSync(busyboxImage()), { "x-lxd-fingerprint": "0".repeat(64) });
    const op = await wait(r.body.operation);
    expect(op.err).toBe(`fingerprints don't match, got ${fp} expected ${"0".repeat(64)}`);
  });

  it("a body that is no tarball is refused and leaves nothing in the store", async () => {
    const r = await d.api("POST", "/1.0/images", Buffer.from("garbage, not a tarball"), { "content-type": "application/octet-stream" });
    const op = await wait(r.body.operation);
    expect(op.status).toBe("Failure");
    expect(op.err).toBe("Unsupported compression");
    expect(op.metadata).toBeNull();
    expect(readdirSync(join(d.dir, "images"))).toEqual([fp]);
  });
});

describe("import options", () => {
  it("lxc image import --public KEY=VALUE sets X-LXD-public and X-LXD-properties", async () => {
    const out = join(tmp, "second.tar.xz");
    spawnSync(join(ROOT, "test/fixtures/busybox-image.sh"), [out], { env: { ...process.env, CREATION_DATE: "1600000001" } });
    const r = d.lxc("image", "import", out, "--public", "--alias", "second", "extra=yes", "os=custom");
    expect(r.code, r.stderr).toBe(0);
    const img = (await d.api("GET", "/1.0/images/aliases/second")).body.metadata;
    const got = (await d.api("GET", `/1.0/images/${img.target}`)).body.metadata;
    expect(got.public).toBe(true);
    expect(got.properties).toMatchObject({ extra: "yes", os: "custom", description: expect.stringContaining("BusyBox") });
    expect(got.created_at).toBe("2020-09-13T12:26:41Z");
    expect(d.lxc("image", "delete", "second").code).toBe(0);
  });

  it("refresh, secret and push (POST export) of an unknown image are 404", async () => {
    for (const p of ["/1.0/images/abc/refresh", "/1.0/images/abc/secret", "/1.0/images/abc/export"]) {
      const r = await d.api("POST", p, {});
      expect([r.status, r.body.error]).toEqual([404, "Image not found"]);
    }
  });

  it("JSON without a known source type is LXD's error", async () => {
    const r = await d.api("POST", "/1.0/images", { source: { type: "nope" } }, { "content-type": "application/json" });
    expect([r.status, r.body.error]).toEqual([500, "Invalid images JSON"]);
    // A remote source is an operation; a server that does not answer fails it.
    const remote = await d.api("POST", "/1.0/images", { source: { type: "image", server: "https://127.0.0.1:9", alias: "x" } }, { "content-type": "application/json" });
    expect(remote.status).toBe(202);
    const op = (await d.api("GET", `${remote.body.operation}/wait?timeout=30`)).body.metadata;
    expect(op.status).toBe("Failure");
    expect(op.err).toMatch(/^Failed to connect to LXD server "https:\/\/127\.0\.0\.1:9": .*ECONNREFUSED/);
  });
});

describe("list, info, edit", () => {
  it("GET /1.0/images and ?recursion=1 give LXD's shapes", async () => {
    expect((await d.api("GET", "/1.0/images")).body.metadata).toEqual([`/1.0/images/${fp}`]);
    const [img] = (await d.api("GET", "/1.0/images?recursion=1")).body.metadata;
    expect(Object.keys(img).sort()).toEqual(IMAGE_KEYS);
    expect(img).toMatchObject({
      fingerprint: fp,
      architecture: "x86_64",
      type: "container",
      public: false,
      cached: false,
      auto_update: false,
      profiles: ["default"],
      aliases: [{ name: "bb", description: "" }],
      expires_at: "1970-01-01T00:00:00Z",
      last_used_at: "0001-01-01T00:00:00Z",
      filename: "busybox.tar.xz",
      size: readFileSync(busyboxImage()).length,
    });
    expect(img.properties.os).toBe("busybox");
  });

  it("filters with ?filter=", async () => {
    expect((await d.api("GET", `/1.0/images?filter=${encodeURIComponent("properties.os eq busybox")}`)).body.metadata).toEqual([`/1.0/images/${fp}`]);
    expect((await d.api("GET", `/1.0/images?filter=${encodeURIComponent("properties.os eq ubuntu")}`)).body.metadata).toEqual([]);
    expect((await d.api("GET", `/1.0/images?filter=${encodeURIComponent("type eq container and not public eq true")}`)).body.metadata).toHaveLength(1);
    // Values match case-insensitively, as regular expressions (lxd/filter Match).
    expect((await d.api("GET", `/1.0/images?filter=${encodeURIComponent("properties.os eq BusyBox")}`)).body.metadata).toEqual([`/1.0/images/${fp}`]);
    expect((await d.api("GET", `/1.0/images?filter=${encodeURIComponent("properties.os eq busy.*")}`)).body.metadata).toEqual([`/1.0/images/${fp}`]);
    const bad = await d.api("GET", `/1.0/images?filter=${encodeURIComponent("properties.os eq")}`);
    expect([bad.status, bad.body.error]).toEqual([500, "Invalid filter: clause has no value"]);
  });

  it("unique prefixes resolve; unknown ones are LXD's 404", async () => {
    expect((await d.api("GET", `/1.0/images/${fp.slice(0, 3)}`)).body.metadata.fingerprint).toBe(fp);
    const r = await d.api("GET", "/1.0/images/ffffffff");
    expect([r.status, r.body.error]).toEqual([404, "Image not found"]);
    expect((await d.api("GET", "/1.0/images/..%2F..%2Fetc")).status).toBe(404);
  });

  it("lxc image list and info", () => {
    const list = JSON.parse(d.lxc("image", "list", "-f", "json").stdout);
    expect(list[0].fingerprint).toBe(fp);
    const info = d.lxc("image", "info", "bb");
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toContain("Architecture: x86_64");
    expect(info.stdout).toContain("    - bb");
  });

  it("lxc image edit, PATCH merges properties, PUT replaces, stale ETag is 412", async () => {
    const yaml = d.lxc("image", "show", "bb").stdout.replace("os: busybox", "os: edited");
    const e = lxcIn(yaml, "image", "edit", "bb");
    expect(e.code, e.stderr).toBe(0);
    expect((await d.api("GET", `/1.0/images/${fp}`)).body.metadata.properties.os).toBe("edited");
    expect((await d.api("PATCH", `/1.0/images/${fp}`, { properties: { extra: "x" }, public: true })).status).toBe(200);
    const got = (await d.api("GET", `/1.0/images/${fp}`)).body.metadata;
    expect(got.properties).toMatchObject({ os: "edited", extra: "x" });
    expect(got.public).toBe(true);
    const stale = await d.api("PUT", `/1.0/images/${fp}`, { properties: {} }, { "if-match": '"abc"' });
    expect(stale.status).toBe(412);
    const etag = (await d.api("GET", `/1.0/images/${fp}`)).headers.etag as string;
    expect((await d.api("PUT", `/1.0/images/${fp}`, { properties: { os: "busybox" }, public: true }, { "if-match": etag })).status).toBe(200);
    expect((await d.api("GET", `/1.0/images/${fp}`)).body.metadata.properties).toEqual({ os: "busybox" });
    expect((await d.api("PUT", `/1.0/images/${fp}`, { properties: { os: 1 } })).status).toBe(400);
  });

  it("takes profiles of the request's project when the project shares default's images", async () => {
    expect(d.lxc("project", "create", "imgprof", "-c", "features.images=false").code).toBe(0);
    try {
      expect(d.lxc("profile", "create", "pp1", "--project", "imgprof").code).toBe(0);
      const put = (project: string) => d.api("PATCH", `/1.0/images/${fp}?project=${project}`, { profiles: ["pp1"] });
      // pp1 exists in imgprof only: refused through default, accepted through imgprof.
      expect((await put("default")).body.error).toBe("Profile 'pp1' doesn't exist");
      expect((await put("imgprof")).status).toBe(200);
      expect((await d.api("GET", `/1.0/images/${fp}?project=imgprof`)).body.metadata.profiles).toEqual(["pp1"]);
    } finally {
      await d.api("PATCH", `/1.0/images/${fp}`, { profiles: ["default"] });
      d.lxc("profile", "delete", "pp1", "--project", "imgprof");
      d.lxc("project", "delete", "imgprof");
    }
  });
});

describe("untrusted clients", () => {
  it("see public images only, over TLS", async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    expect(d.lxc("config", "set", "core.https_address", `127.0.0.1:${port}`).code).toBe(0);
    const get = (path: string) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, path, rejectUnauthorized: false }, (res) => {
          let t = "";
          res.on("data", (c) => (t += c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(t) }));
        });
        req.on("error", reject);
        req.end();
      });
    try {
      expect((await get("/1.0/images")).body.metadata).toEqual([`/1.0/images/${fp}`]);
      await d.api("PATCH", `/1.0/images/${fp}`, { public: false });
      expect((await get("/1.0/images")).body.metadata).toEqual([]);
      expect((await get(`/1.0/images/${fp}`)).status).toBe(404);
      expect((await get(`/1.0/images/${fp}/export`)).status).toBe(404);
      expect((await get("/1.0/images/aliases/bb")).status).toBe(404);
      expect((await get("/1.0/images/aliases")).status).toBe(403);
    } finally {
      d.lxc("config", "unset", "core.https_address");
    }
  });
});

describe("aliases", () => {
  it("lxc image alias create, list, rename, delete", async () => {
    expect(d.lxc("image", "alias", "create", "second", fp).code).toBe(0);
    const list = JSON.parse(d.lxc("image", "alias", "list", "-f", "json").stdout);
    expect(list.map((a: any) => a.name).sort()).toEqual(["bb", "second"]);
    const r = d.lxc("image", "alias", "rename", "second", "third");
    expect(r.code, r.stderr).toBe(0);
    const got = await d.api("GET", "/1.0/images/aliases/third");
    expect(got.body.metadata).toEqual({ description: "", target: fp, name: "third", type: "container" });
    expect(d.lxc("image", "alias", "delete", "third").code).toBe(0);
    expect((await d.api("GET", "/1.0/images/aliases/third")).body.error).toBe("Image alias not found");
  });

  it("accepts slashes in alias names, as LXD 5.0.2 (image servers' aliases are os/release)", async () => {
    expect((await d.api("POST", "/1.0/images/aliases", { name: "os/rel", target: fp })).status).toBe(201);
    expect((await d.api("GET", "/1.0/images/aliases/os%2Frel")).body.metadata).toMatchObject({ name: "os/rel", target: fp });
    expect((await d.api("DELETE", "/1.0/images/aliases/os%2Frel")).status).toBe(200);
  });

  it("answers LXD's errors", async () => {
    const cases: [string, string, unknown, number, string][] = [
      ["POST", "/1.0/images/aliases", { name: "", target: fp }, 400, "name and target are required"],
      ["POST", "/1.0/images/aliases", { name: "bb", target: fp }, 409, 'Alias "bb" already exists'],
      ["POST", "/1.0/images/aliases", { name: "x", target: "ffff" }, 404, "Image not found"],
      ["PUT", "/1.0/images/aliases/bb", { description: "x" }, 400, "The target field is required"],
      ["PUT", "/1.0/images/aliases/nope", { target: fp }, 404, "Image alias not found"],
      ["POST", "/1.0/images/aliases/nope", { name: "bb" }, 409, 'Alias "bb" already exists'],
    ];
    for (const [m, p, b, status, error] of cases) {
      const r = await d.api(m, p, b);
      expect([m, p, r.status, r.body.error]).toEqual([m, p, status, error]);
    }
    const c = await d.api("POST", "/1.0/images/aliases", { name: "made", target: fp.slice(0, 6), description: "d" });
    expect([c.status, c.headers.location]).toEqual([201, "/1.0/images/aliases/made"]);
    expect((await d.api("PATCH", "/1.0/images/aliases/made", { description: "e" })).status).toBe(200);
    expect((await d.api("GET", "/1.0/images/aliases?recursion=1")).body.metadata).toContainEqual({ description: "e", target: fp, name: "made", type: "container" });
    expect((await d.api("DELETE", "/1.0/images/aliases/made")).status).toBe(200);
  });

  it("takes alias names with slashes, as LXD 5.0.2 does (its suite: lxc image alias create a/b/)", async () => {
    expect(d.lxc("image", "alias", "create", "a/b/", fp).code).toBe(0);
    const got = await d.api("GET", "/1.0/images/aliases/a%2Fb%2F");
    expect(got.body.metadata).toMatchObject({ name: "a/b/", target: fp });
    expect(d.lxc("image", "alias", "list", "-f", "csv").stdout).toContain("a/b/,");
    const del = d.lxc("image", "alias", "delete", "a/b/");
    expect(del.code, del.stderr).toBe(0);
    expect((await d.api("GET", "/1.0/images/aliases/a%2Fb%2F")).status).toBe(404);
  });
});

describe("export and delete", () => {
  it("lxc image export writes a file that re-imports to the same fingerprint", () => {
    const r = d.lxc("image", "export", "bb", join(tmp, "out"));
    expect(r.code, r.stderr).toBe(0);
    const file = join(tmp, "out.tar.xz");
    expect(createHash("sha256").update(readFileSync(file)).digest("hex")).toBe(fp);
    const again = d.lxc("image", "import", file);
    expect(again.stderr).toContain("Image with same fingerprint already exists");
  });

  it("GET export sends the tarball with LXD's headers", async () => {
    const r = await d.api("GET", `/1.0/images/${fp}/export`);
    expect(r.status).toBe(200);
    expect(r.headers["content-disposition"]).toBe(`inline;filename=${fp}.tar.xz`);
    expect(r.headers["content-type"]).toBe("application/octet-stream");
  });

  it("lxc image delete removes record, aliases and file", async () => {
    const r = d.lxc("image", "delete", "bb");
    expect(r.code, r.stderr).toBe(0);
    expect((await d.api("GET", `/1.0/images/${fp}`)).status).toBe(404);
    expect((await d.api("GET", "/1.0/images/aliases")).body.metadata).toEqual([]);
    expect(existsSync(join(d.dir, "images", fp))).toBe(false);
    expect(d.lxc("image", "delete", fp).code).not.toBe(0);
  });
});

describe("crash safety", () => {
  it("after kill -9, leftovers of an interrupted import are removed and stored images kept", async () => {
    expect(d.lxc("image", "import", busyboxImage(), "--alias", "keep").code).toBe(0);
    const images = join(d.dir, "images");
    mkdirSync(join(images, ".build-interrupted"));
    writeFileSync(join(images, ".build-interrupted", "image"), "partial");
    writeFileSync(join(images, "e".repeat(64)), "linked but never recorded");
    await d.kill9();
    await d.restart();
    expect(readdirSync(images)).toEqual([fp]);
    expect((await d.api("GET", "/1.0/images/aliases/keep")).body.metadata.target).toBe(fp);
    expect(d.lxc("image", "delete", "keep").code).toBe(0);
  });
});

describe("split images", () => {
  it("lxc image import META ROOTFS, export as multipart, re-import to the same fingerprint", () => {
    const stage = join(tmp, "split");
    spawnSync("mkdir", ["-p", stage]);
    spawnSync("sh", ["-c", `cd ${stage} && xz -dc ${busyboxImage()} | tar -x && tar -cJf ../meta.tar.xz metadata.yaml templates && tar -C rootfs -czf ../rootfs.tar.gz .`]);
    const imp = d.lxc("image", "import", join(tmp, "meta.tar.xz"), join(tmp, "rootfs.tar.gz"), "--alias", "sp");
    expect(imp.code, imp.stderr).toBe(0);
    const splitFp = createHash("sha256").update(readFileSync(join(tmp, "meta.tar.xz"))).update(readFileSync(join(tmp, "rootfs.tar.gz"))).digest("hex");
    expect(imp.stdout).toContain(splitFp);
    expect(d.lxc("image", "export", "sp", join(tmp, "sp-out")).code).toBe(0);
    const files = readdirSync(tmp).filter((f) => f.startsWith("sp-out")).sort();
    expect(files).toHaveLength(2);
    expect(d.lxc("image", "delete", "sp").code).toBe(0);
    const re = d.lxc("image", "import", ...files.map((f) => join(tmp, f)));
    expect(re.code, re.stderr).toBe(0);
    expect(re.stdout).toContain(splitFp);
  });
});

describe("publish", () => {
  let instancesLoaded = false;
  beforeAll(async () => {
    const probe = await d.api("POST", "/1.0/instances", {});
    instancesLoaded = probe.status !== 404 && probe.status !== 501;
  });

  it("lxc publish an instance, then launch the published image", async (t) => {
    if (!instancesLoaded) t.skip();
    const imp = d.lxc("image", "import", busyboxImage(), "--alias", "pubsrc");
    expect(imp.code, imp.stderr).toBe(0);
    d.lxc("storage", "create", "default", "dir");
    d.lxc("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
    const name = `pub${process.pid}`;
    try {
      expect(d.lxc("init", "pubsrc", name).code).toBe(0);
      const p = d.lxc("publish", name, "--alias", "published", "description=hx-published");
      expect(p.code, p.stderr).toBe(0);
      const target = (await d.api("GET", "/1.0/images/aliases/published")).body.metadata.target;
      expect((await d.api("GET", `/1.0/images/${target}`)).body.metadata.properties).toEqual({ description: "hx-published" });
      expect(d.lxc("init", "published", `${name}b`).code).toBe(0);
    } finally {
      d.lxc("delete", "-f", `${name}b`);
      d.lxc("delete", "-f", name);
      d.lxc("image", "delete", "published");
      d.lxc("image", "delete", "pubsrc");
    }
  });

  it("without the instances feature, publishing is refused as not implemented", async (t) => {
    if (instancesLoaded) t.skip();
    const r = await d.api("POST", "/1.0/images", { source: { type: "instance", name: "c1" } }, { "content-type": "application/json" });
    expect(r.status).toBe(501);
  });
});
