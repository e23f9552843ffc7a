// Optimized migration between btrfs pools (btrfs send/receive over the fs websocket) with the
// stock client over HTTPS: two nodelxd daemons and real LXD 5.0.2, each with a btrfs pool on
// its own loop file (listeners on 127.0.0.60-62). Instances and custom volumes travel with
// their snapshots; the trees hash equal (contents and numeric ownership); the received
// snapshots are real read-only subvolumes whose Received UUID is set, which only a btrfs
// receive gives (the rsync path snapshots the volume instead); a dir target falls back to rsync.
import { execFileSync } from "node:child_process";
import { createReadStream, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";
import { Remotes } from "../helpers/remotes.js";
import { treeHash } from "../helpers/tree-hash.js";
import { Readable } from "node:stream";
import pino from "pino";
import { btrfsDriver } from "../../src/storage/drivers/btrfs.js";

const supported = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");
const port = 9500 + Math.floor(Math.random() * 400);
const A = "bsa";
const B = "bsb";
const R = "bsr";
let a: TestDaemon;
let b: TestDaemon;
let ref: ReferenceLxd;
let remotes: Remotes;
const dirs: Record<string, string> = {};
const ok = (...args: string[]) => remotes.ok(...args);
const local = (dir: string, ...args: string[]) => remotes.local(dir, ...args);

const volDir = (remote: string, pool: string, kind: "containers" | "custom", name: string, snap?: string) =>
  join(dirs[remote], "storage-pools", pool, snap ? `${kind}-snapshots` : kind, kind === "custom" ? `default_${name}` : name, ...(snap ? [snap] : []));
const rootfs = (remote: string, name: string, snap?: string, pool = "bt") => join(volDir(remote, pool, "containers", name, snap), "rootfs");

function subvolume(path: string): { uuid: string; received: string; readonly: boolean } {
  const out = execFileSync("btrfs", ["subvolume", "show", path], { encoding: "utf8" });
  const field = (n: string) => new RegExp(`^\\s*${n}:\\s*(\\S*)`, "m").exec(out)?.[1] ?? "";
  return { uuid: field("UUID"), received: field("Received UUID"), readonly: /^\s*Flags:.*readonly/m.test(out) };
}

/** Each snapshot of the copy is a read-only subvolume that a btrfs receive made. */
function expectReceived(remote: string, pool: string, kind: "containers" | "custom", name: string, snaps: string[]): void {
  for (const s of snaps) {
    const sv = subvolume(volDir(remote, pool, kind, name, s));
    expect(sv.readonly, s).toBe(true);
    expect(sv.received, s).toMatch(/^[0-9a-f-]{36}$/);
  }
  expect(subvolume(volDir(remote, pool, kind, name)).readonly).toBe(false);
}

/** No staging directory (migration.*) is left in the pool. */
function expectNoStaging(remote: string, pool: string): void {
  for (const kind of ["containers", "custom"]) {
    const d = join(dirs[remote], "storage-pools", pool, kind);
    expect(readdirSync(d).filter((n) => n.startsWith("migration."))).toEqual([]);
  }
}

const snapshots = async (remote: string, name: string) => (JSON.parse(await ok("query", `${remote}:/1.0/instances/${name}/snapshots`)) as string[]).map((u) => u.split("/").pop()).sort();

/** A stopped container on `remote` (pool bt) with two snapshots; its trees' hashes. */
async function prepare(remote: string, name: string): Promise<Record<string, string>> {
  await ok("launch", `${remote}:busybox`, `${remote}:${name}`, "-q", "-s", "bt");
  await ok("exec", `${remote}:${name}`, "--", "sh", "-c", "echo first > /root/f; mkdir -p /srv/o; chown 1234:4321 /srv/o; ln -s /etc/hostname /root/l");
  await ok("snapshot", `${remote}:${name}`, "s0");
  await ok("exec", `${remote}:${name}`, "--", "sh", "-c", "echo second > /root/f; dd if=/dev/urandom of=/root/big bs=64k count=16 2>/dev/null");
  await ok("snapshot", `${remote}:${name}`, "s1");
  await ok("exec", `${remote}:${name}`, "--", "sh", "-c", "echo third > /root/f; rm /root/big");
  await ok("stop", "-f", `${remote}:${name}`);
  return { current: treeHash(rootfs(remote, name)), s0: treeHash(rootfs(remote, name, "s0")), s1: treeHash(rootfs(remote, name, "s1")) };
}

async function expectCopy(remote: string, name: string, hashes: Record<string, string>, pool = "bt"): Promise<void> {
  expect(await snapshots(remote, name)).toEqual(["s0", "s1"]);
  expect(treeHash(rootfs(remote, name, undefined, pool))).toBe(hashes.current);
  for (const s of ["s0", "s1"]) expect(treeHash(rootfs(remote, name, s, pool)), s).toBe(hashes[s]);
  await ok("start", `${remote}:${name}`);
  expect((await ok("exec", `${remote}:${name}`, "--", "cat", "/root/f")).trim()).toBe("third");
  expect((await ok("exec", `${remote}:${name}`, "--", "stat", "-c", "%u:%g", "/srv/o")).trim()).toBe("1234:4321");
  await ok("stop", "-f", `${remote}:${name}`);
  await ok("restore", `${remote}:${name}`, "s0");
  await ok("start", `${remote}:${name}`);
  expect((await ok("exec", `${remote}:${name}`, "--", "cat", "/root/f")).trim()).toBe("first");
  await ok("stop", "-f", `${remote}:${name}`);
}

/** Custom volume `name` on pool bt of `remote` with snapshots snap0, snap1. */
async function prepareVolume(remote: string, name: string): Promise<Record<string, string>> {
  await ok("storage", "volume", "create", `${remote}:bt`, name);
  const write = (text: string) => writeFileSync(join(volDir(remote, "bt", "custom", name), "data"), text);
  write("zero\n");
  await ok("storage", "volume", "snapshot", `${remote}:bt`, name, "snap0");
  write("one\n");
  await ok("storage", "volume", "set", `${remote}:bt`, name, "user.foo=snap1");
  await ok("storage", "volume", "snapshot", `${remote}:bt`, name, "snap1");
  write("now\n");
  await ok("storage", "volume", "set", `${remote}:bt`, name, "user.foo=post");
  const h = (s?: string) => treeHash(volDir(remote, "bt", "custom", name, s));
  return { current: h(), snap0: h("snap0"), snap1: h("snap1") };
}

async function expectVolume(remote: string, name: string, hashes: Record<string, string>): Promise<void> {
  const list = (JSON.parse(await ok("query", `${remote}:/1.0/storage-pools/bt/volumes/custom/${name}/snapshots`)) as string[]).map((u) => u.split("/").pop()).sort();
  expect(list).toEqual(["snap0", "snap1"]);
  expect((await ok("storage", "volume", "get", `${remote}:bt`, name, "user.foo")).trim()).toBe("post");
  expect((await ok("storage", "volume", "get", `${remote}:bt`, `${name}/snap1`, "user.foo")).trim()).toBe("snap1");
  expect(treeHash(volDir(remote, "bt", "custom", name))).toBe(hashes.current);
  for (const s of ["snap0", "snap1"]) expect(treeHash(volDir(remote, "bt", "custom", name, s)), s).toBe(hashes[s]);
}

beforeAll(async () => {
  if (!supported) return;
  remotes = new Remotes("/tmp/bs-mig-home-");
  a = await startDaemon();
  b = await startDaemon();
  ref = await startReferenceLxd();
  const all: [string, string, number][] = [[A, a.dir, 0], [B, b.dir, 1], [R, dirname(ref.socket), 2]];
  for (const [remote, dir, n] of all) {
    dirs[remote] = dir;
    await local(dir, "storage", "create", "bt", "btrfs", "size=1GiB");
    await local(dir, "storage", "create", "plain", "dir");
    await local(dir, "profile", "device", "add", "default", "root", "disk", "path=/", "pool=bt");
    await local(dir, "image", "import", busyboxImage(), "--alias", "busybox");
    await remotes.listen(remote, dir, `127.0.0.${60 + n}:${port}`);
  }
}, 300_000);

afterAll(async () => {
  if (!remotes) return;
  await remotes.deleteInstances();
  for (const remote of [A, B, R]) {
    if (!dirs[remote]) continue;
    await remotes.deleteVolumes(remote, ["bt", "plain"], ["default"]);
    const env = ["image", "list", "--format", "csv", "-c", "f"];
    for (const fp of (await remotes.local(dirs[remote], ...env).catch(() => "")).split("\n").filter(Boolean)) await remotes.local(dirs[remote], "image", "delete", fp).catch(() => {});
    await remotes.local(dirs[remote], "profile", "device", "remove", "default", "root").catch(() => {});
    await remotes.local(dirs[remote], "storage", "delete", "bt").catch(() => {});
    await remotes.local(dirs[remote], "storage", "delete", "plain").catch(() => {});
  }
  await a?.stop().catch(() => {});
  await b?.stop().catch(() => {});
  await ref?.stop().catch(() => {});
  remotes.removeHome();
}, 300_000);

describe.skipIf(!supported)("btrfs send/receive migration (kernel has no btrfs otherwise)", () => {
  for (const mode of ["pull", "push", "relay"]) {
    it(`nodelxd to nodelxd, --mode ${mode}: snapshots arrive as received subvolumes`, async () => {
      const name = `bc-${mode}`;
      const hashes = await prepare(A, name);
      await ok("copy", `${A}:${name}`, `${B}:${name}`, "--mode", mode);
      expectReceived(B, "bt", "containers", name, ["s0", "s1"]);
      expectNoStaging(B, "bt");
      expectNoStaging(A, "bt");
      await expectCopy(B, name, hashes);
      expect(treeHash(rootfs(A, name))).toBe(hashes.current);
    }, 300_000);
  }

  it("a dir target pool falls back to rsync (no received subvolumes)", async () => {
    const hashes = await prepare(A, "bc-dir");
    await ok("copy", `${A}:bc-dir`, `${B}:bc-dir`, "-s", "plain");
    expect(await snapshots(B, "bc-dir")).toEqual(["s0", "s1"]);
    expect(treeHash(rootfs(B, "bc-dir", undefined, "plain"))).toBe(hashes.current);
    expect(treeHash(rootfs(B, "bc-dir", "s1", "plain"))).toBe(hashes.s1);
  }, 300_000);

  it("--refresh between btrfs pools goes by rsync and brings the changes", async () => {
    const hashes = await prepare(A, "bc-ref");
    await ok("copy", `${A}:bc-ref`, `${B}:bc-ref`);
    await ok("start", `${A}:bc-ref`);
    await ok("exec", `${A}:bc-ref`, "--", "sh", "-c", "echo fourth > /root/f");
    await ok("stop", "-f", `${A}:bc-ref`);
    await ok("snapshot", `${A}:bc-ref`, "s2");
    await ok("copy", `${A}:bc-ref`, `${B}:bc-ref`, "--refresh");
    expect(await snapshots(B, "bc-ref")).toEqual(["s0", "s1", "s2"]);
    expect(treeHash(rootfs(B, "bc-ref"))).toBe(treeHash(rootfs(A, "bc-ref")));
    expect(treeHash(rootfs(B, "bc-ref", "s0"))).toBe(hashes.s0);
  }, 300_000);

  it("nodelxd to real LXD 5.0.2: LXD receives the btrfs streams", async () => {
    const hashes = await prepare(A, "bc-tolxd");
    await ok("copy", `${A}:bc-tolxd`, `${R}:bc-tolxd`);
    expectReceived(R, "bt", "containers", "bc-tolxd", ["s0", "s1"]);
    await expectCopy(R, "bc-tolxd", hashes);
  }, 300_000);

  it("real LXD 5.0.2 to nodelxd: we receive LXD's btrfs streams", async () => {
    const hashes = await prepare(R, "bc-fromlxd");
    await ok("copy", `${R}:bc-fromlxd`, `${A}:bc-fromlxd`, "--mode", "push");
    expectReceived(A, "bt", "containers", "bc-fromlxd", ["s0", "s1"]);
    expectNoStaging(A, "bt");
    await expectCopy(A, "bc-fromlxd", hashes);
  }, 300_000);

  it("custom volumes: nodelxd to nodelxd and both ways with real LXD", async () => {
    const hashes = await prepareVolume(A, "bv");
    await ok("storage", "volume", "copy", `${A}:bt/bv`, `${B}:bt/bv`);
    expectReceived(B, "bt", "custom", "bv", ["snap0", "snap1"]);
    await expectVolume(B, "bv", hashes);
    await ok("storage", "volume", "copy", `${A}:bt/bv`, `${R}:bt/bv`);
    expectReceived(R, "bt", "custom", "bv", ["snap0", "snap1"]);
    await expectVolume(R, "bv", hashes);
    const rh = await prepareVolume(R, "rv");
    await ok("storage", "volume", "copy", `${R}:bt/rv`, `${A}:bt/rv`);
    expectReceived(A, "bt", "custom", "rv", ["snap0", "snap1"]);
    await expectVolume(A, "rv", rh);
    expectNoStaging(A, "bt");
  }, 300_000);

  it("the receive side refuses a stream that makes more than the one subvolume, or garbage, and leaves nothing", async () => {
    const pool = join(dirs[A], "storage-pools", "bt", "custom");
    const made: string[] = [];
    const btrfsCmd = (...args: string[]) => execFileSync("btrfs", args, { encoding: "utf8" });
    try {
      for (const n of ["bs-x1", "bs-x2"]) {
        btrfsCmd("subvolume", "create", join(pool, n));
        writeFileSync(join(pool, n, "f"), n);
        btrfsCmd("subvolume", "snapshot", "-r", join(pool, n), join(pool, `${n}-ro`));
        made.push(join(pool, `${n}-ro`), join(pool, n));
      }
      const twoInOne = join(dirs[A], "bs-two.stream");
      btrfsCmd("send", "-f", twoInOne, join(pool, "bs-x1-ro"), join(pool, "bs-x2-ro"));
      const driver = btrfsDriver.load({ name: "bt", config: { source: join(dirs[A], "disks", "bt.img") } }, { lxdDir: dirs[A], log: pino({ level: "silent" }) });
      const vol = { type: "custom" as const, name: "default_bs-hostile", config: {} };
      await expect(driver.receiveStreams!(vol, [], () => createReadStream(twoInOne))).rejects.toThrow("the stream made 2 entries");
      await expect(driver.receiveStreams!(vol, [], () => Readable.from([Buffer.from("btrfs-stream\0garbage")]))).rejects.toThrow(/Btrfs receive failed/);
      expectNoStaging(A, "bt");
      expect(existsSync(volDir(A, "bt", "custom", "bs-hostile"))).toBe(false);
    } finally {
      for (const p of made) execFileSync("btrfs", ["subvolume", "delete", p]);
    }
  }, 120_000);
});
