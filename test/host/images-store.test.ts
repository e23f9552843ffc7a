// The image store below the API: import validation, unpack into a volume directory with
// ownership/modes/xattrs preserved, and hostile tarballs refused with nothing written
// outside the target and nothing left in the store.
import { execFileSync } from "node:child_process";
import { createReadStream, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Db } from "../../src/db/database.js";
import { ImageRepo } from "../../src/db/image-repo.js";
import { buildImageFromDirectory, codecFor } from "../../src/images/publish.js";
import { ImageService } from "../../src/images/service.js";
import { receiveUpload, type Upload } from "../../src/images/upload.js";
import { EventHub } from "../../src/operations/events.js";
import { busyboxImage } from "../helpers/image.js";
import { entry, imageTar, tarball } from "../helpers/tar-writer.js";

let root: string;
let db: Db;
let repo: ImageRepo;
let images: ImageService;
let outside: string;

beforeAll(() => {
  root = mkdtempSync("/tmp/nodelxd-test-imgstore-");
  mkdirSync(join(root, "images"), { mode: 0o700 });
  outside = join(root, "outside");
  mkdirSync(outside);
  db = openDatabase(join(root, "db.sqlite"));
  repo = new ImageRepo(db);
  images = new ImageService({ dir: join(root, "images"), treesDir: join(root, "image-trees"), repo, events: new EventHub(), log: pino({ level: "silent" }) });
});
afterAll(() => {
  db?.close();
  rmSync(root, { recursive: true, force: true });
});

async function upload(file: string, headers: Record<string, string> = {}): Promise<Upload> {
  const r = await receiveUpload(join(root, "images"), createReadStream(file), { "content-type": "application/octet-stream", ...headers });
  if (r.kind === "json") throw new Error("unexpected JSON");
  return r;
}

function storeFiles(): string[] {
  return readdirSync(join(root, "images")).sort();
}

const xz = (buf: Buffer) => execFileSync("xz", ["-c", "-T1"], { input: buf });
let n = 0;
const writeTmp = (buf: Buffer) => {
  const f = join(root, `in-${n++}.tar.xz`);
  writeFileSync(f, buf);
  return f;
};
const freshTarget = () => {
  const t = join(root, `target-${n++}`);
  mkdirSync(t);
  return t;
};

describe("import and unpack", () => {
  let fp: string;

  it("imports the busybox image with its metadata", async () => {
    const view = await images.importer.importUpload("default", await upload(busyboxImage(), { "x-lxd-filename": "busybox.tar.xz" }), { properties: { extra: "1" } });
    fp = view.fingerprint;
    expect(fp).toBe(execFileSync("sha256sum", [busyboxImage()]).toString().split(" ")[0]);
    expect(view.type).toBe("container");
    expect(view.architecture).toBe("x86_64");
    expect(view.properties.os).toBe("busybox");
    expect(view.properties.extra).toBe("1");
    expect(view.filename).toBe("busybox.tar.xz");
    expect(view.size).toBe(statSync(busyboxImage()).size);
    expect(storeFiles()).toEqual([fp]);
  });

  it("refuses a duplicate and an unexpected fingerprint, leaving the store as it was", async () => {
    await expect(images.importer.importUpload("default", await upload(busyboxImage()))).rejects.toThrow("Image with same fingerprint already exists");
    await expect(images.importer.importUpload("other", await upload(busyboxImage()), { expectedFingerprint: "ab".repeat(32) })).rejects.toThrow(/^fingerprints don't match, got [0-9a-f]{64} expected (ab){32}$/);
    expect(storeFiles()).toEqual([fp]);
  });

  it("records X-LXD-profiles, refusing unknown ones", async () => {
    const checked = new ImageService({ dir: join(root, "images"), treesDir: join(root, "image-trees"), repo, events: new EventHub(), log: pino({ level: "silent" }), profileExists: (_p, n) => n !== "nope" });
    await expect(checked.importer.importUpload("profiles", await upload(busyboxImage()), { profiles: ["default", "nope"] })).rejects.toThrow("Profile 'nope' doesn't exist");
    const v = await checked.importer.importUpload("profiles", await upload(busyboxImage()), { profiles: ["default", "extra"] });
    expect(v.profiles).toEqual(["default", "extra"]);
    await checked.delete("profiles", v.fingerprint);
    expect(storeFiles()).toEqual([fp]);
  });

  it("resolves aliases and unique prefixes", () => {
    images.aliases.create("default", "bb", fp.slice(0, 8), "");
    expect(images.resolve("default", { alias: "bb" }).fingerprint).toBe(fp);
    expect(images.resolve("default", { fingerprint: fp.slice(0, 5) }).fingerprint).toBe(fp);
    expect(() => images.resolve("default", { alias: "nope" })).toThrow("Image not found");
    expect(() => images.resolve("default", { fingerprint: "zz" })).toThrow("Image not found");
    expect(() => images.resolve("other", { fingerprint: fp })).toThrow("Image not found");
  });

  it("unpacks into rootfs/, metadata.yaml and templates/ with modes and links intact", async () => {
    const target = freshTarget();
    const seen: number[] = [];
    await images.trees.unpackInto(fp, target, { progress: (p) => seen.push(p) });
    expect(readdirSync(target).sort()).toEqual(["metadata.yaml", "rootfs", "templates"]);
    expect(statSync(join(target, "rootfs/bin/busybox")).mode & 0o7777).toBe(0o755);
    expect(statSync(join(target, "rootfs/tmp")).mode & 0o7777).toBe(0o1777);
    expect(readlinkSync(join(target, "rootfs/sbin/init"))).toBe("/bin/busybox");
    expect(readFileSync(join(target, "templates/hostname.tpl"), "utf8")).toContain("container.name");
    expect(seen.at(-1)).toBe(100);
    expect(() => images.markUsed(fp)).not.toThrow();
    expect(repo.get("default", fp)!.last_used_at).not.toBe("0001-01-01T00:00:00Z");
  });

  it("keeps the validated tree: the next unpack copies it instead of unpacking the tarball", async () => {
    const tree = join(root, "image-trees", fp);
    expect(existsSync(join(tree, "rootfs/bin/busybox"))).toBe(true);
    writeFileSync(join(tree, "rootfs/marker"), "from the tree");
    try {
      const target = freshTarget();
      await images.trees.unpackInto(fp, target);
      expect(readFileSync(join(target, "rootfs/marker"), "utf8")).toBe("from the tree");
      expect(readlinkSync(join(target, "rootfs/sbin/init"))).toBe("/bin/busybox");
    } finally {
      rmSync(join(tree, "rootfs/marker"));
    }
  });

  it("stops and leaves the target empty when cancelled", async () => {
    const target = freshTarget();
    const ac = new AbortController();
    const run = images.trees.unpackInto(fp, target, { signal: ac.signal });
    ac.abort();
    await expect(run).rejects.toThrow();
    expect(readdirSync(target)).toEqual([]);
  });

  it("refuses a non-empty target", async () => {
    const target = freshTarget();
    writeFileSync(join(target, "x"), "");
    await expect(images.trees.unpackInto(fp, target)).rejects.toThrow(/not empty/);
  });

  it("keeps owners, setuid bits and xattrs (split image, gzip rootfs)", async () => {
    const stage = join(root, "stage");
    mkdirSync(join(stage, "rootfs/usr/bin"), { recursive: true });
    writeFileSync(join(stage, "metadata.yaml"), "architecture: amd64\ncreation_date: 1600000000\n");
    writeFileSync(join(stage, "rootfs/usr/bin/su"), "#!/bin/sh\n");
    execFileSync("chown", ["1234:2345", join(stage, "rootfs/usr/bin/su")]);
    execFileSync("chmod", ["4755", join(stage, "rootfs/usr/bin/su")]);
    execFileSync("setfattr", ["-n", "user.nodelxd", "-v", "kept", join(stage, "rootfs/usr/bin/su")]);
    const meta = join(root, "meta.tar.xz");
    const rootfs = join(root, "rootfs.tar.gz");
    execFileSync("tar", ["-C", stage, "-cJf", meta, "metadata.yaml"]);
    execFileSync("tar", ["-C", join(stage, "rootfs"), "--xattrs", "--xattrs-include=*", "--numeric-owner", "-czf", rootfs, "."]);
    const boundary = "XyZ";
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="metadata"; filename="meta.tar.xz"\r\n\r\n`),
      readFileSync(meta),
      Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="rootfs"; filename="rootfs.tar.gz"\r\n\r\n`),
      readFileSync(rootfs),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const r = await receiveUpload(join(root, "images"), (async function* () {
      for (let i = 0; i < body.length; i += 1000) yield body.subarray(i, i + 1000);
    })() as never, { "content-type": `multipart/form-data; boundary=${boundary}` });
    if (r.kind !== "split") throw new Error("expected a split upload");
    const view = await images.importer.importUpload("default", r);
    expect(view.fingerprint).toBe(execFileSync("sh", ["-c", `cat ${meta} ${rootfs} | sha256sum`]).toString().split(" ")[0]);
    expect(view.architecture).toBe("x86_64");
    expect(view.filename).toBe("rootfs.tar.gz");
    expect(existsSync(join(root, "images", `${view.fingerprint}.rootfs`))).toBe(true);
    const target = freshTarget();
    await images.trees.unpackInto(view.fingerprint, target);
    const su = join(target, "rootfs/usr/bin/su");
    const st = statSync(su);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1234, 2345, 0o4755]);
    expect(execFileSync("getfattr", ["--only-values", "-n", "user.nodelxd", su]).toString()).toBe("kept");
    await images.delete("default", view.fingerprint);
    expect(existsSync(join(root, "images", `${view.fingerprint}.rootfs`))).toBe(false);
  });
});

describe("hostile tarballs", () => {
  const cases: [string, () => Buffer, RegExp][] = [
    ["../ entry", () => imageTar(entry({ name: "rootfs/../../outside/pwned", data: "x" })), /contains '\.\.'/],
    // A leading "/" is dropped (as GNU tar drops it); what follows must still stay inside.
    ["absolute path climbing out", () => imageTar(entry({ name: "/../tmp/nodelxd-pwned", data: "x" })), /contains '\.\.'/],
    ["file through an outward symlink", () => imageTar(entry({ name: "rootfs/link", type: "2", linkname: outside }), entry({ name: "rootfs/link/pwned", data: "x" })), /goes through the symbolic link/],
    // "/etc/passwd" is read as the archive's own etc/passwd, which it does not have.
    ["hard link to /etc/passwd", () => imageTar(entry({ name: "rootfs/passwd", type: "1", linkname: "/etc/passwd" })), /not an earlier member/],
    ["rootfs as a symlink to /", () => Buffer.concat([entry({ name: "metadata.yaml", data: "architecture: x86_64\ncreation_date: 1\n" }), entry({ name: "rootfs", type: "2", linkname: "/" }), Buffer.alloc(1024)]), /must be a directory/],
  ];

  for (const [name, raw, pattern] of cases) {
    it(`import refuses: ${name}`, async () => {
      const before = storeFiles();
      const file = writeTmp(xz(raw()));
      await expect(images.importer.importUpload("default", await upload(file))).rejects.toThrow(pattern);
      expect(storeFiles()).toEqual(before);
      expect(readdirSync(outside)).toEqual([]);
    });

    it(`unpack refuses a stored tarball that bypassed import: ${name}`, async () => {
      const buf = xz(raw());
      const fp = execFileSync("sha256sum", [], { input: buf }).toString().split(" ")[0];
      writeFileSync(join(root, "images", fp), buf);
      repo.insert({
        project: "default", fingerprint: fp, type: "container", filename: "", size: buf.length, split: false, public: false, auto_update: false, cached: false,
        architecture: "x86_64", created_at: "2020-01-01T00:00:00Z", expires_at: "1970-01-01T00:00:00Z", uploaded_at: "2020-01-01T00:00:00Z",
        last_used_at: "0001-01-01T00:00:00Z", properties: {}, profiles: ["default"],
      });
      const target = freshTarget();
      await expect(images.trees.unpackInto(fp, target)).rejects.toThrow(pattern);
      expect(readdirSync(target)).toEqual([]);
      expect(readdirSync(outside)).toEqual([]);
      expect(existsSync("/tmp/nodelxd-pwned")).toBe(false);
      expect(lstatSync("/etc/passwd").nlink).toBe(1);
      expect(readdirSync(join(root, "image-trees")).filter((n) => n.startsWith(fp))).toEqual([]);
      await images.delete("default", fp);
    });
  }
});

describe("leading slashes in member names", () => {
  it("land inside the unpack target as GNU tar puts them, never at the host path", async () => {
    const file = writeTmp(xz(imageTar(entry({ name: "/rootfs/marker", data: "in" }), entry({ name: "/tmp/nodelxd-pwned", data: "x" }))));
    const view = await images.importer.importUpload("default", await upload(file));
    const target = freshTarget();
    await images.trees.unpackInto(view.fingerprint, target);
    expect(readFileSync(join(target, "rootfs/marker"), "utf8")).toBe("in");
    expect(readFileSync(join(target, "tmp/nodelxd-pwned"), "utf8")).toBe("x");
    expect(existsSync("/tmp/nodelxd-pwned")).toBe(false);
    await images.delete("default", view.fingerprint);
  });
});

describe("start-up cleanup", () => {
  it("removes build directories and files no record refers to", async () => {
    mkdirSync(join(root, "images", ".build-stale"));
    writeFileSync(join(root, "images", "f".repeat(64)), "orphan");
    const trees = join(root, "image-trees");
    mkdirSync(join(trees, "e".repeat(64) + "..build-stale"), { recursive: true });
    mkdirSync(join(trees, "f".repeat(64)));
    const keep = storeFiles().filter((f) => !f.startsWith(".build") && f !== "f".repeat(64));
    const keepTrees = readdirSync(trees).filter((n) => repo.allFingerprints().has(n));
    await images.cleanup();
    expect(storeFiles()).toEqual(keep);
    expect(readdirSync(trees).sort()).toEqual(keepTrees.sort());
  });
});

describe("publish: tar a volume directory into the store", () => {
  let vol: string;
  let busyboxFp: string;

  beforeAll(async () => {
    busyboxFp = execFileSync("sha256sum", [busyboxImage()]).toString().split(" ")[0];
    if (!repo.anyWithFingerprint(busyboxFp)) await images.importer.importUpload("default", await upload(busyboxImage()));
    vol = freshTarget();
    await images.trees.unpackInto(busyboxFp, vol);
    writeFileSync(join(vol, "rootfs/root/marker"), "published-content\n");
    execFileSync("chown", ["0:0", join(vol, "rootfs/root/marker")]);
  });

  for (const compression of ["gzip", "xz", "zstd", "bzip2", "lzma", "none"] as const) {
    it(`builds, stores and unpacks again (${compression})`, async () => {
      const buildDir = join(root, "images", `.build-test-${compression}`);
      mkdirSync(buildDir);
      try {
        const built = await buildImageFromDirectory(vol, { compression: { codec: compression, flags: [] }, architecture: "x86_64", buildDir, properties: compression === "gzip" ? { description: "hx-published" } : undefined });
        expect(built.fingerprint).toBe(execFileSync("sha256sum", [built.file]).toString().split(" ")[0]);
        const view = await images.importer.storeBuilt("pub", built, { public: false, filename: "", architecture: "x86_64", aliases: [{ name: `pub-${compression}`, description: "" }] });
        expect(view.expires_at).toBe("0001-01-01T00:00:00Z");
        if (compression === "gzip") expect(view.properties).toEqual({ description: "hx-published" });
        else expect(view.properties.os).toBe("busybox");
        expect(images.resolve("pub", { alias: `pub-${compression}` }).fingerprint).toBe(view.fingerprint);
        const target = freshTarget();
        await images.trees.unpackInto(view.fingerprint, target);
        expect(readFileSync(join(target, "rootfs/root/marker"), "utf8")).toBe("published-content\n");
        expect(readlinkSync(join(target, "rootfs/sbin/init"))).toBe("/bin/busybox");
        expect(readFileSync(join(target, "templates/hostname.tpl"), "utf8")).toContain("container.name");
        expect(existsSync(join(root, "image-trees", view.fingerprint))).toBe(true);
        if (compression === "none") {
          await images.delete("pub", view.fingerprint);
          expect(existsSync(join(root, "image-trees", view.fingerprint))).toBe(false);
          return;
        }
        // Publishing the same content again is LXD's conflict.
        const again = await buildImageFromDirectory(vol, { compression: { codec: compression, flags: [] }, architecture: "x86_64", buildDir: join(buildDir, "again"), properties: compression === "gzip" ? { description: "hx-published" } : undefined });
        if (again.fingerprint === view.fingerprint) await expect(images.importer.storeBuilt("pub", again, { public: false, filename: "", architecture: "x86_64", aliases: [] })).rejects.toThrow(`The image already exists: ${view.fingerprint}`);
      } finally {
        rmSync(buildDir, { recursive: true, force: true });
      }
    });
  }

  it("refuses an unknown compression algorithm", () => {
    expect(() => codecFor("lz4")).toThrow('Invalid compression algorithm "lz4"');
    expect(() => codecFor("xz --files=/etc/passwd")).toThrow('flag "--files=/etc/passwd" is not allowed for xz');
    expect(codecFor("xz -9")).toEqual({ codec: "xz", flags: ["-9"] });
    expect(codecFor("")).toEqual({ codec: "gzip", flags: [] });
  });
});

describe("projects sharing images", () => {
  it("resolve() looks in the project the projects feature names", async () => {
    const shared = new ImageService({ dir: join(root, "images"), treesDir: join(root, "image-trees"), repo, events: new EventHub(), log: pino({ level: "silent" }), projectFor: (p) => (p === "noimages" ? "default" : p) });
    const fp = execFileSync("sha256sum", [busyboxImage()]).toString().split(" ")[0];
    expect(shared.resolve("noimages", { fingerprint: fp }).project).toBe("default");
    expect(() => shared.resolve("isolated", { fingerprint: fp })).toThrow("Image not found");
  });
});

describe("invalid images get LXD's messages", () => {
  const cases: [string, Buffer, string][] = [
    ["no metadata.yaml", tarball(entry({ name: "rootfs/", type: "5" })), "Metadata tarball is missing metadata.yaml"],
    ["no creation date", tarball(entry({ name: "metadata.yaml", data: "architecture: x86_64\n" }), entry({ name: "rootfs/", type: "5" })), "Missing creation date"],
    ["unknown architecture", tarball(entry({ name: "metadata.yaml", data: "architecture: foo\ncreation_date: 5\n" }), entry({ name: "rootfs/", type: "5" })), "Architecture isn't supported: foo"],
    ["no rootfs", tarball(entry({ name: "metadata.yaml", data: "architecture: x86_64\ncreation_date: 5\n" })), "Invalid instance type"],
  ];
  for (const [name, tar, message] of cases) {
    it(name, async () => {
      const before = storeFiles();
      await expect(images.importer.importUpload("default", await upload(writeTmp(xz(tar))))).rejects.toThrow(message);
      expect(storeFiles()).toEqual(before);
    });
  }
});
