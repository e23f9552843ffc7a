// Optimized backups on btrfs pools (`lxc export --optimized-storage`, `lxc storage volume
// export --optimized-storage`) in LXD 5.0.2's layout, their import (ours and real LXD's, both
// ways), plain backups imported both ways with real LXD, LXD's error for an optimized backup
// imported onto a non-btrfs pool, and the import
// of a backup whose pool is gone (falls back to the default profile's pool, as LXD). One
// nodelxd and real LXD 5.0.2, each with a btrfs pool on its own loop file and a dir pool.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";
import { Remotes, runLxc } from "../helpers/remotes.js";
import { treeHash } from "../helpers/tree-hash.js";

const supported = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");
let ours: TestDaemon;
let ref: ReferenceLxd;
let remotes: Remotes;
let work: string;
const dirs: Record<string, string> = {};
const O = "ours";
const R = "ref";
const ok = (remote: string, ...args: string[]) => remotes.local(dirs[remote], ...args);
const fails = async (remote: string, ...args: string[]) => {
  const res = await runLxc(args, { ...process.env, LXD_DIR: dirs[remote], HOME: remotes.home });
  expect(res.status, `lxc ${args.join(" ")} should fail`).not.toBe(0);
  return res.stderr.trim();
};

const volDir = (remote: string, pool: string, kind: "containers" | "custom", name: string, snap?: string) =>
  join(dirs[remote], "storage-pools", pool, snap ? `${kind}-snapshots` : kind, kind === "custom" ? `default_${name}` : name, ...(snap ? [snap] : []));
const members = (file: string) => execFileSync("tar", ["-tzf", file], { encoding: "utf8" }).split("\n").filter(Boolean).sort();
const indexOf = (file: string) => execFileSync("tar", ["-xzOf", file, "backup/index.yaml"], { encoding: "utf8" });

function received(path: string): boolean {
  const out = execFileSync("btrfs", ["subvolume", "show", path], { encoding: "utf8" });
  return /^\s*Received UUID:\s*[0-9a-f-]{36}/m.test(out);
}

/** A stopped container on pool bt with snapshots s0, s1; its trees' hashes. */
async function prepare(remote: string, name: string): Promise<Record<string, string>> {
  await ok(remote, "launch", "busybox", name, "-q", "-s", "bt");
  await ok(remote, "exec", name, "--", "sh", "-c", "echo first > /root/f; mkdir -p /srv/o; chown 1234:4321 /srv/o");
  await ok(remote, "snapshot", name, "s0");
  await ok(remote, "exec", name, "--", "sh", "-c", "echo second > /root/f");
  await ok(remote, "snapshot", name, "s1");
  await ok(remote, "exec", name, "--", "sh", "-c", "echo third > /root/f");
  await ok(remote, "stop", "-f", name);
  const h = (s?: string) => treeHash(join(volDir(remote, "bt", "containers", name, s), "rootfs"));
  return { current: h(), s0: h("s0"), s1: h("s1") };
}

async function expectInstance(remote: string, name: string, hashes: Record<string, string>): Promise<void> {
  // (Only our imports keep the Received UUID: LXD's backup restore moves the subvolumes without it.)
  const h = (s?: string) => treeHash(join(volDir(remote, "bt", "containers", name, s), "rootfs"));
  expect(h()).toBe(hashes.current);
  expect(h("s0")).toBe(hashes.s0);
  expect(h("s1")).toBe(hashes.s1);
  for (const s of ["s0", "s1"]) expect(received(volDir(remote, "bt", "containers", name, s)), s).toBe(true);
  await ok(remote, "start", name);
  expect((await ok(remote, "exec", name, "--", "cat", "/root/f")).trim()).toBe("third");
  await ok(remote, "stop", "-f", name);
}

async function prepareVolume(remote: string, name: string): Promise<Record<string, string>> {
  await ok(remote, "storage", "volume", "create", "bt", name);
  const write = (t: string) => writeFileSync(join(volDir(remote, "bt", "custom", name), "data"), t);
  write("zero\n");
  await ok(remote, "storage", "volume", "snapshot", "bt", name, "snap0");
  write("now\n");
  await ok(remote, "storage", "volume", "set", "bt", name, "user.foo=post");
  return { current: treeHash(volDir(remote, "bt", "custom", name)), snap0: treeHash(volDir(remote, "bt", "custom", name, "snap0")) };
}

async function expectVolume(remote: string, name: string, hashes: Record<string, string>, ourImport = true): Promise<void> {
  expect(treeHash(volDir(remote, "bt", "custom", name))).toBe(hashes.current);
  expect(treeHash(volDir(remote, "bt", "custom", name, "snap0"))).toBe(hashes.snap0);
  // LXD's backup restore moves the received subvolumes without their Received UUID; ours keeps it.
  if (ourImport) expect(received(volDir(remote, "bt", "custom", name, "snap0"))).toBe(true);
  expect((await ok(remote, "storage", "volume", "get", "bt", name, "user.foo")).trim()).toBe("post");
}

beforeAll(async () => {
  if (!supported) return;
  remotes = new Remotes("/tmp/bs-bak-home-");
  work = mkdtempSync("/tmp/bs-bak-");
  ours = await startDaemon();
  ref = await startReferenceLxd();
  dirs[O] = ours.dir;
  dirs[R] = dirname(ref.socket);
  for (const r of [O, R]) {
    await ok(r, "storage", "create", "bt", "btrfs", "size=1GiB");
    await ok(r, "storage", "create", "plain", "dir");
    await ok(r, "profile", "device", "add", "default", "root", "disk", "path=/", "pool=bt");
    await ok(r, "image", "import", busyboxImage(), "--alias", "busybox");
  }
}, 300_000);

afterAll(async () => {
  if (!remotes) return;
  await remotes.deleteInstances();
  for (const r of [O, R]) {
    if (!dirs[r]) continue;
    await remotes.deleteVolumes(r, ["bt", "plain"], ["default"]).catch(() => {});
    for (const fp of (await ok(r, "image", "list", "--format", "csv", "-c", "f").catch(() => "")).split("\n").filter(Boolean)) await ok(r, "image", "delete", fp).catch(() => {});
    await ok(r, "profile", "device", "remove", "default", "root").catch(() => {});
    for (const p of ["bt", "plain", "gone"]) await ok(r, "storage", "delete", p).catch(() => {});
  }
  await ours?.stop().catch(() => {});
  await ref?.stop().catch(() => {});
  remotes.removeHome();
  rmSync(work, { recursive: true, force: true });
}, 300_000);

describe.skipIf(!supported)("optimized backups on btrfs (kernel has no btrfs otherwise)", () => {
  it("lxc export --optimized-storage writes LXD's layout; we import ours and real LXD's", async () => {
    const hashes = await prepare(O, "c1");
    const file = join(work, "c1-opt.tar.gz");
    await ok(O, "export", "c1", file, "--optimized-storage");
    expect(members(file)).toEqual(["backup/", "backup/container.bin", "backup/index.yaml", "backup/optimized_header.yaml", "backup/snapshots/", "backup/snapshots/s0.bin", "backup/snapshots/s1.bin"]);
    expect(indexOf(file)).toMatch(/^optimized: true$/m);
    expect(indexOf(file)).toMatch(/^optimized_header: true$/m);
    expect(indexOf(file)).toMatch(/^backend: btrfs$/m);
    await ok(O, "import", file, "c1b");
    await expectInstance(O, "c1b", hashes);
    // Real LXD's optimized export imported here.
    const rh = await prepare(R, "r1");
    const rfile = join(work, "r1-opt.tar.gz");
    await ok(R, "export", "r1", rfile, "--optimized-storage");
    await ok(O, "import", rfile);
    await expectInstance(O, "r1", rh);
  }, 600_000);

  it("plain backups cross both ways with real LXD 5.0.2 (each carries its backup.yaml in the volume)", async () => {
    for (const [from, to, name] of [[O, R, "px1"], [R, O, "px2"]]) {
      await ok(from, "init", "busybox", name, "-s", "plain");
      const f = join(work, `${name}-f`);
      writeFileSync(f, `from ${from}, before the snapshot\n`);
      await ok(from, "file", "push", f, `${name}/root/f`);
      await ok(from, "snapshot", name, "s0");
      writeFileSync(f, `from ${from}, now\n`);
      await ok(from, "file", "push", f, `${name}/root/f`);
      const file = join(work, `${name}.tar.gz`);
      await ok(from, "export", name, file);
      expect(members(file)).toContain("backup/container/backup.yaml");
      await ok(to, "import", file, "-s", "plain");
      await ok(to, "start", name);
      expect((await ok(to, "exec", name, "--", "cat", "/root/f")).trim()).toBe(`from ${from}, now`);
      await ok(to, "stop", "-f", name);
      await ok(to, "restore", name, "s0");
      expect((await ok(to, "file", "pull", `${name}/root/f`, "-")).trim()).toBe(`from ${from}, before the snapshot`);
    }
  }, 300_000);

  it("the backup records optimized_storage; on a dir pool the request makes a plain backup (as LXD)", async () => {
    await ok(O, "init", "busybox", "d1", "-s", "plain");
    await ok(O, "query", "--wait", "-X", "POST", "-d", '{"name":"b0","optimized_storage":true}', "/1.0/instances/d1/backups");
    const b = JSON.parse(await ok(O, "query", "/1.0/instances/d1/backups/b0"));
    expect(b.optimized_storage).toBe(false);
    const file = join(work, "d1.tar.gz");
    await ok(O, "export", "d1", file, "--optimized-storage");
    expect(indexOf(file)).toMatch(/^optimized: false$/m);
    await ok(O, "query", "--wait", "-X", "POST", "-d", '{"name":"b1","optimized_storage":true}', "/1.0/instances/c1/backups");
    expect(JSON.parse(await ok(O, "query", "/1.0/instances/c1/backups/b1")).optimized_storage).toBe(true);
  }, 300_000);

  it("an optimized backup onto a dir pool fails with LXD's error, and leaves nothing", async () => {
    const file = join(work, "c1-opt.tar.gz");
    const want = 'Optimized backup storage driver "btrfs" differs from the target storage pool driver "dir"';
    const ourImport = await runLxc(["import", file, "c9", "-s", "plain"], { ...process.env, LXD_DIR: dirs[O], HOME: remotes.home }, 120_000);
    expect(ourImport.stderr).not.toContain("lxc killed by");
    expect(ourImport.status).not.toBe(0);
    expect(ourImport.stderr).toContain(want);
    // Real LXD 5.0.2 is only the reference for the message here: on a loaded host its import of
    // this tarball has been seen never to return, which is its problem, not ours.
    const reference = await runLxc(["import", file, "c9", "-s", "plain"], { ...process.env, LXD_DIR: dirs[R], HOME: remotes.home }, 60_000);
    if (reference.stderr.includes("lxc killed by")) console.warn("real LXD's import did not return within 60 s; its message is not compared this time");
    else expect(reference.stderr).toContain(want);
    expect((await ok(O, "list", "--format", "csv", "-c", "n")).split("\n")).not.toContain("c9");
  }, 300_000);

  it("custom volumes: export --optimized-storage and import, both ways with real LXD", async () => {
    const hashes = await prepareVolume(O, "v1");
    const file = join(work, "v1-opt.tar.gz");
    await ok(O, "storage", "volume", "export", "bt", "v1", file, "--optimized-storage");
    expect(members(file)).toEqual(["backup/", "backup/index.yaml", "backup/optimized_header.yaml", "backup/volume-snapshots/", "backup/volume-snapshots/snap0.bin", "backup/volume.bin"]);
    // --volume-only: no volume-snapshots/ at all, optimized or not (upstream's backup_volume_export).
    const only = join(work, "v1-only.tar.gz");
    await ok(O, "storage", "volume", "export", "bt", "v1", only, "--optimized-storage", "--volume-only");
    expect(members(only)).toEqual(["backup/", "backup/index.yaml", "backup/optimized_header.yaml", "backup/volume.bin"]);
    const plain = join(work, "v1-plain-only.tar.gz");
    await ok(O, "storage", "volume", "export", "bt", "v1", plain, "--volume-only");
    expect(members(plain).filter((m) => m.startsWith("backup/volume-snapshots"))).toEqual([]);
    await ok(O, "storage", "volume", "import", "bt", file, "v1b");
    await expectVolume(O, "v1b", hashes);
    await ok(R, "storage", "volume", "import", "bt", file, "v1");
    await expectVolume(R, "v1", hashes, false);
    const rh = await prepareVolume(R, "rv");
    const rfile = join(work, "rv-opt.tar.gz");
    await ok(R, "storage", "volume", "export", "bt", "rv", rfile, "--optimized-storage");
    await ok(O, "storage", "volume", "import", "bt", rfile, "rv");
    await expectVolume(O, "rv", rh);
    const want = 'Optimized backup storage driver "btrfs" differs from the target storage pool driver "dir"';
    expect(await fails(O, "storage", "volume", "import", "plain", file, "v9")).toContain(want);
    expect((await ok(O, "storage", "volume", "list", "plain", "--format", "csv", "-c", "n")).split("\n")).not.toContain("v9");
  }, 600_000);

  it("a backup whose pool is gone imports onto the default profile's pool; without one, LXD's errors", async () => {
    const out: Record<string, string[]> = {};
    for (const r of [O, R]) {
      await ok(r, "storage", "create", "gone", "dir");
      await ok(r, "init", "busybox", "g1", "-s", "gone");
      const file = join(work, `g1-${r}.tar.gz`);
      await ok(r, "export", "g1", file);
      await ok(r, "delete", "-f", "g1");
      await ok(r, "storage", "delete", "gone");
      await ok(r, "import", file);
      expect((await ok(r, "config", "device", "get", "g1", "root", "pool")).trim(), r).toBe("bt");
      await ok(r, "delete", "-f", "g1");
      await ok(r, "profile", "device", "remove", "default", "root");
      out[r] = [await fails(r, "import", file), await fails(r, "import", file, "-s", "gone")];
      await ok(r, "profile", "device", "add", "default", "root", "disk", "path=/", "pool=bt");
    }
    expect(out[O]).toEqual(out[R]);
  }, 300_000);
});
