// Custom volume backups: `lxc storage volume export|import` in LXD's tarball layout, across
// dir and btrfs pools, the backups API, real LXD 5.0.2's own volume backups, hostile tarballs.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync, symlinkSync, linkSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { startReferenceLxd } from "../helpers/reference.js";
import { entry, tarball } from "../helpers/tar-writer.js";

const btrfsOk = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");
const lxdOk = spawnSync("which", ["lxd"]).status === 0;

let d: InitialisedDaemon;
let tmp: string;
beforeAll(async () => {
  d = await startInitialisedDaemon();
  tmp = mkdtempSync("/tmp/nodelxd-volbk-");
  if (btrfsOk) {
    const r = d.lxc("storage", "create", "bk", "btrfs", "size=300MiB");
    if (r.code !== 0) throw new Error(r.stderr);
  }
});
afterAll(async () => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (!d) return;
  for (const pool of ["default", "bk"]) {
    const list = await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom`);
    for (const url of (list.body?.metadata ?? []) as string[]) if (!url.includes("/snapshots/")) await d.api("DELETE", url);
  }
  d.lxc("storage", "delete", "bk");
  await d.teardown();
});

const ok = (...args: string[]) => {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r.stdout;
};
const wait = async (op: string) => (await d.api("GET", `${op}/wait?timeout=60`)).body.metadata;
const volDir = (pool: string, name: string) => join(d.dir, "storage-pools", pool, "custom", `default_${name}`);
const snapDir = (pool: string, name: string, snap: string) => join(d.dir, "storage-pools", pool, "custom-snapshots", `default_${name}`, snap);
const otherPool = btrfsOk ? "bk" : "default";

describe("custom volume backups", () => {
  it("exports in LXD's layout and imports on another pool with snapshots", async () => {
    ok("storage", "volume", "create", "default", "src", "user.k=v");
    const p = volDir("default", "src");
    writeFileSync(join(p, "f"), "old");
    ok("storage", "volume", "snapshot", "default", "src", "s1");
    writeFileSync(join(p, "f"), "new");
    symlinkSync("f", join(p, "link"));
    linkSync(join(p, "f"), join(p, "hard"));
    const file = join(tmp, "src.tar.gz");
    ok("storage", "volume", "export", "default", "src", file);
    const members = execFileSync("tar", ["-tzf", file], { encoding: "utf8" }).split("\n").filter(Boolean).sort();
    expect(members).toEqual(["backup/", "backup/index.yaml", "backup/volume-snapshots/", "backup/volume-snapshots/s1/", "backup/volume-snapshots/s1/f", "backup/volume/", "backup/volume/f", "backup/volume/hard", "backup/volume/link"]);
    const index = YAML.parse(execFileSync("tar", ["-xzOf", file, "backup/index.yaml"], { encoding: "utf8" }));
    expect(index).toMatchObject({ name: "src", backend: "dir", pool: "default", snapshots: ["s1"], optimized: false, optimized_header: false, type: "custom" });
    expect(index.config.volume).toEqual({ config: { "user.k": "v" }, description: "", name: "src", type: "custom", used_by: [], location: "none", content_type: "filesystem", project: "default", created_at: "0001-01-01T00:00:00Z" });
    expect(index.config.volume_snapshots).toEqual([{ description: "", expires_at: "0001-01-01T00:00:00Z", name: "s1", config: { "user.k": "v" }, content_type: "filesystem", created_at: "0001-01-01T00:00:00Z" }]);
    // The client deleted the backup it made for the export.
    expect((await d.api("GET", "/1.0/storage-pools/default/volumes/custom/src/backups")).body.metadata).toEqual([]);

    ok("storage", "volume", "import", otherPool, file, "copy");
    expect(readFileSync(join(volDir(otherPool, "copy"), "f"), "utf8")).toBe("new");
    expect(readlinkSync(join(volDir(otherPool, "copy"), "link"))).toBe("f");
    expect(lstatSync(join(volDir(otherPool, "copy"), "hard")).ino).toBe(lstatSync(join(volDir(otherPool, "copy"), "f")).ino);
    expect(readFileSync(join(snapDir(otherPool, "copy", "s1"), "f"), "utf8")).toBe("old");
    const v = (await d.api("GET", `/1.0/storage-pools/${otherPool}/volumes/custom/copy`)).body.metadata;
    expect(v.config).toEqual({ "user.k": "v" });
    expect((await d.api("GET", `/1.0/storage-pools/${otherPool}/volumes/custom/copy/snapshots`)).body.metadata).toEqual([`/1.0/storage-pools/${otherPool}/volumes/custom/copy/snapshots/s1`]);
    // The imported volume restores from its imported snapshot.
    ok("storage", "volume", "restore", otherPool, "copy", "s1");
    expect(readFileSync(join(volDir(otherPool, "copy"), "f"), "utf8")).toBe("old");
    // Importing over an existing volume fails the operation and leaves it alone.
    const again = d.lxc("storage", "volume", "import", otherPool, file, "copy");
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain("Volume by that name already exists");
    expect(readFileSync(join(volDir(otherPool, "copy"), "f"), "utf8")).toBe("old");
  });

  it("answers the backups API as LXD", async () => {
    const base = "/1.0/storage-pools/default/volumes/custom/src/backups";
    const c = await d.api("POST", base, {});
    expect(c.status).toBe(202);
    expect(c.body.metadata.description).toBe("Creating custom volume backup");
    expect(c.body.metadata.resources).toEqual({ backups: ["/1.0/backups/backup0"], storage_volumes: ["/1.0/storage_volumes/src"] });
    expect((await wait(c.body.operation)).status).toBe("Success");
    const o = await d.api("POST", base, { name: "opt", optimized_storage: true, volume_only: true });
    expect((await wait(o.body.operation)).status).toBe("Success");
    expect((await d.api("GET", base)).body.metadata).toEqual([`${base}/backup0`, `${base}/opt`]);
    const one = (await d.api("GET", `${base}/backup0`)).body.metadata;
    expect(Object.keys(one)).toEqual(["name", "created_at", "expires_at", "volume_only", "optimized_storage"]);
    expect(one.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // optimized_storage is recorded as not honoured on dir, as LXD does.
    expect((await d.api("GET", `${base}/opt`)).body.metadata).toMatchObject({ volume_only: true, optimized_storage: false });
    const dup = await d.api("POST", base, { name: "backup0" });
    expect((await wait(dup.body.operation)).err).toBe('Create volume backup: Backup "src/backup0" already exists');
    expect((await d.api("POST", base, { name: "a/b" })).body.error).toBe("Backup names may not contain slashes");
    expect((await d.api("GET", `${base}/nope`)).body).toMatchObject({ error_code: 404, error: "Storage volume backup not found" });
    expect((await d.api("POST", "/1.0/storage-pools/default/volumes/container/x/backups", {})).body).toMatchObject({ error_code: 400, error: 'Invalid storage volume type "container"' });
    const r = await d.api("POST", `${base}/backup0`, { name: "renamed" });
    expect((await wait(r.body.operation)).status).toBe("Success");
    const exp = await d.api("GET", `${base}/renamed/export`);
    expect(exp.status).toBe(200);
    expect(exp.headers["content-type"]).toBe("application/octet-stream");
    const del = await d.api("DELETE", `${base}/opt`);
    expect((await wait(del.body.operation)).status).toBe("Success");
    expect((await d.api("GET", base)).body.metadata).toEqual([`${base}/renamed`]);
    // Backups follow a rename of their volume and go with it.
    ok("storage", "volume", "rename", "default", "src", "src2");
    expect((await d.api("GET", "/1.0/storage-pools/default/volumes/custom/src2/backups")).body.metadata).toHaveLength(1);
    expect((await d.api("GET", "/1.0/storage-pools/default/volumes/custom/src2/backups/renamed/export")).status).toBe(200);
    ok("storage", "volume", "delete", "default", "src2");
    expect(existsSync(join(d.dir, "backups", "custom", "default", "default_src2"))).toBe(false);
  });

  it.skipIf(!lxdOk)("imports real LXD 5.0.2's volume backups", { timeout: 180_000 }, async () => {
    const ref = await startReferenceLxd();
    const env = { ...process.env, LXD_DIR: ref.socket.replace(/\/unix\.socket$/, ""), LXD_CONF: join(tmp, "refconf") };
    const rlxc = (...args: string[]) => {
      const r = spawnSync("lxc", args, { env, encoding: "utf8" });
      if (r.status !== 0) throw new Error(`reference lxc ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    try {
      rlxc("storage", "create", "p", "dir");
      rlxc("storage", "volume", "create", "p", "fromlxd", "user.origin=lxd");
      const rp = join(env.LXD_DIR, "storage-pools", "p", "custom", "default_fromlxd");
      writeFileSync(join(rp, "data"), "snapshotted");
      rlxc("storage", "volume", "snapshot", "p", "fromlxd", "first");
      writeFileSync(join(rp, "data"), "current");
      symlinkSync("data", join(rp, "ln"));
      for (const [opt, file] of [["", "lxd.tar.gz"], ["--volume-only", "lxd-only.tar.gz"]]) rlxc("storage", "volume", "export", "p", "fromlxd", join(tmp, file), ...(opt ? [opt] : []));
    } finally {
      await ref.stop();
    }
    ok("storage", "volume", "import", otherPool, join(tmp, "lxd.tar.gz"));
    expect(readFileSync(join(volDir(otherPool, "fromlxd"), "data"), "utf8")).toBe("current");
    expect(readlinkSync(join(volDir(otherPool, "fromlxd"), "ln"))).toBe("data");
    expect(readFileSync(join(snapDir(otherPool, "fromlxd", "first"), "data"), "utf8")).toBe("snapshotted");
    expect((await d.api("GET", `/1.0/storage-pools/${otherPool}/volumes/custom/fromlxd`)).body.metadata.config).toEqual({ "user.origin": "lxd" });
    ok("storage", "volume", "import", "default", join(tmp, "lxd-only.tar.gz"), "only");
    expect(readFileSync(join(volDir("default", "only"), "data"), "utf8")).toBe("current");
    expect((await d.api("GET", "/1.0/storage-pools/default/volumes/custom/only/snapshots")).body.metadata).toEqual([]);
  });

  describe("hostile backup tarballs are refused and create nothing", () => {
    const index = (name = "evil", snapshots: string[] = []) =>
      YAML.stringify({ name, backend: "dir", pool: "default", snapshots, optimized: false, type: "custom", config: { volume: { config: {}, name }, volume_snapshots: snapshots.map((s) => ({ name: s, config: {} })) } });
    const dir = (name: string) => entry({ name, type: "5" });
    const base = [dir("backup/"), entry({ name: "backup/index.yaml", data: index() }), dir("backup/volume/")];
    const cases: [string, Buffer, string][] = [
      ["a .. escape", tarball(...base, entry({ name: "backup/volume/../../../../tmp/x", data: "x" })), "Refusing unsafe backup tarball"],
      ["an absolute path", tarball(...base, entry({ name: "/etc/evil", data: "x" })), "Refusing unsafe backup tarball"],
      ["a symlinked index.yaml", tarball(dir("backup/"), entry({ name: "backup/index.yaml", type: "2", linkname: "/etc/shadow" }), dir("backup/volume/")), "backup/index.yaml must be a regular file"],
      ["a write through a symlink", tarball(...base, entry({ name: "backup/volume/l", type: "2", linkname: "/etc" }), entry({ name: "backup/volume/l/passwd", data: "x" })), "goes through the symbolic link"],
      ["a device node", tarball(...base, entry({ name: "backup/volume/sda", type: "4" })), "Device node backup/volume/sda in a volume backup"],
      ["a hard link across volumes", tarball(...base, entry({ name: "backup/volume/f", data: "x" }), dir("backup/volume-snapshots/"), dir("backup/volume-snapshots/s/"), entry({ name: "backup/volume-snapshots/s/h", type: "1", linkname: "backup/volume/f" })), "points outside its volume"],
      ["a member outside backup/", tarball(...base, entry({ name: "etc/x", data: "x" })), "is not under backup/"],
      ["no index", tarball(dir("backup/"), dir("backup/volume/")), "Backup is missing index.yaml"],
      ["a bad volume name", tarball(dir("backup/"), entry({ name: "backup/index.yaml", data: index("../x") }), dir("backup/volume/")), "Storage volume names may not contain slashes"],
      ["a bad snapshot name", tarball(dir("backup/"), entry({ name: "backup/index.yaml", data: index("ok", [".."]) }), dir("backup/volume/")), 'Invalid storage volume snapshot name: ".." is reserved'],
    ];
    it.each(cases)("%s", async (_what, tar, error) => {
      const before = readdirSync(join(d.dir, "storage-pools", "default", "custom")).sort();
      const r = await d.api("POST", "/1.0/storage-pools/default/volumes/custom", gzipSync(tar), { "content-type": "application/octet-stream", "x-lxd-name": "" });
      expect(r.status, r.text).toBe(400);
      expect(r.body.error).toContain(error);
      expect(readdirSync(join(d.dir, "storage-pools", "default", "custom")).sort()).toEqual(before);
      expect((await d.api("GET", "/1.0/storage-pools/default/volumes/custom/evil")).status).toBe(404);
      expect(readdirSync(join(d.dir, "backups")).filter((f) => f.startsWith(".volume-import-"))).toEqual([]);
      expect(existsSync("/tmp/x")).toBe(false);
    });
  });
});
