// Custom volume copy and move with the stock client: across pools and projects on one server,
// and across servers (pull, push, relay) between nodelxd daemons and real LXD 5.0.2 in both
// directions (listeners on 127.0.0.53-55). Contents, snapshots and their config arrive;
// --volume-only leaves snapshots behind; --refresh keeps same-name snapshots untouched.
import { closeSync, openSync, readFileSync, readSync, statSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";
import { Remotes } from "../helpers/remotes.js";
import { treeHash } from "../helpers/tree-hash.js";

let a: TestDaemon;
let b: TestDaemon;
let ref: ReferenceLxd;
let home: string;
const port = 9500 + Math.floor(Math.random() * 400);
let remotes: Remotes;
const dirs: Record<string, string> = {};
const client = (...args: string[]) => remotes.run(...args);
const ok = (...args: string[]) => remotes.ok(...args);
const local = (dir: string, ...args: string[]) => remotes.local(dir, ...args);
const A = "vma";
const B = "vmb";
const R = "vmr";


/** A custom volume's directory on the host (dir pools), or one of its snapshots'. */
const volPath = (remote: string, pool: string, name: string, snap?: string, project = "default") =>
  join(dirs[remote], "storage-pools", pool, snap ? "custom-snapshots" : "custom", `${project}_${name}`, ...(snap ? [snap] : []));
const get = async (remote: string, pool: string, vol: string, key = "user.foo", project = "default") => (await ok("storage", "volume", "get", `${remote}:${pool}`, vol, key, "--project", project)).trim();
const snaps = async (remote: string, pool: string, vol: string, project = "default") =>
  (JSON.parse(await ok("query", `${remote}:/1.0/storage-pools/${pool}/volumes/custom/${vol}/snapshots?project=${project}`)) as string[]).map((u) => u.split("?")[0].split("/").pop()).sort();

/**
 * Volume `name` on `remote`: snapshots snap0 and snap1 with their own user.foo and content.
 * The last write ("now", as long as snap1's "one") lands in snap1's second: rsync's size-and-mtime
 * quick check can't tell them apart, which a receiver must handle (ours does). Where real LXD
 * receives (its receiver has that race), `laterSecond` moves the write's mtime on by two seconds.
 */
async function prepare(remote: string, pool: string, name: string, laterSecond = false): Promise<void> {
  await ok("storage", "volume", "create", `${remote}:${pool}`, name);
  const write = (text: string) => writeFileSync(join(volPath(remote, pool, name), "data"), text);
  write("zero\n");
  await ok("storage", "volume", "set", `${remote}:${pool}`, name, "user.foo=snap0");
  await ok("storage", "volume", "snapshot", `${remote}:${pool}`, name, "snap0");
  write("one\n");
  await ok("storage", "volume", "set", `${remote}:${pool}`, name, "user.foo=snap1");
  await ok("storage", "volume", "snapshot", `${remote}:${pool}`, name, "snap1");
  write("now\n");
  if (laterSecond) {
    const t = new Date(Date.now() + 2000);
    utimesSync(join(volPath(remote, pool, name), "data"), t, t);
  }
  await ok("storage", "volume", "set", `${remote}:${pool}`, name, "user.foo=post");
}

async function expectCopy(from: [string, string, string], to: [string, string, string], withSnaps = true, project = "default"): Promise<void> {
  const [tr, tp, tn] = to;
  const [fr, fp, fn] = from;
  expect(await get(tr, tp, tn, "user.foo", project)).toBe("post");
  expect(readFileSync(join(volPath(tr, tp, tn, undefined, project), "data"), "utf8")).toBe("now\n");
  if (!withSnaps) return void expect(await snaps(tr, tp, tn, project)).toEqual([]);
  expect(await snaps(tr, tp, tn, project)).toEqual(["snap0", "snap1"]);
  expect(await get(tr, tp, `${tn}/snap0`, "user.foo", project)).toBe("snap0");
  expect(await get(tr, tp, `${tn}/snap1`, "user.foo", project)).toBe("snap1");
  for (const s of ["snap0", "snap1"]) expect(treeHash(volPath(tr, tp, tn, s, project)), s).toBe(treeHash(volPath(fr, fp, fn, s)));
}

beforeAll(async () => {
  remotes = new Remotes("/tmp/migrate2-vol-home-");
  home = remotes.home;
  a = await startDaemon();
  b = await startDaemon();
  ref = await startReferenceLxd();
  const all: [string, string, number][] = [[A, a.dir, 3], [B, b.dir, 4], [R, dirname(ref.socket), 5]];
  for (const [remote, dir, n] of all) {
    dirs[remote] = dir;
    await remotes.addDefaultPool(dir, false);
    await remotes.listen(remote, dir, `127.0.0.${50 + n}:${port}`);
  }
  await local(a.dir, "storage", "create", "p2", "dir");
  await local(a.dir, "project", "create", "vp", "-c", "features.storage.volumes=true");
}, 300_000);

afterAll(async () => {
  await remotes?.deleteVolumes(A, ["default", "p2"], ["default", "vp"]);
  for (const r of [B, R]) await remotes?.deleteVolumes(r, ["default"], ["default"]);
  await a?.stop().catch(() => {});
  await b?.stop().catch(() => {});
  await ref?.stop().catch(() => {});
  remotes?.removeHome();
}, 180_000);

describe("on one server", { timeout: 900_000 }, () => {
  it("copies across pools with snapshots and config, and --volume-only without them", async () => {
    await prepare(A, "default", "lv");
    await ok("storage", "volume", "copy", `${A}:default/lv`, `${A}:p2/lv`);
    await expectCopy([A, "default", "lv"], [A, "p2", "lv"]);
    await ok("storage", "volume", "copy", `${A}:default/lv`, `${A}:p2/lv-only`, "--volume-only");
    await expectCopy([A, "default", "lv"], [A, "p2", "lv-only"], false);
    // The same name on the same pool is refused; the source is untouched.
    expect((await client("storage", "volume", "copy", `${A}:default/lv`, `${A}:p2/lv`)).status).not.toBe(0);
    // A snapshot as the source: a plain volume with the snapshot's content and config.
    await ok("storage", "volume", "copy", `${A}:default/lv/snap0`, `${A}:p2/from-snap`);
    expect(await get(A, "p2", "from-snap", "user.foo")).toBe("snap0");
    expect(readFileSync(join(volPath(A, "p2", "from-snap"), "data"), "utf8")).toBe("zero\n");
    expect(await snaps(A, "p2", "from-snap")).toEqual([]);
  });

  it("moves across pools and projects (the source goes)", async () => {
    await prepare(A, "default", "mv");
    await ok("storage", "volume", "move", `${A}:default/mv`, `${A}:p2/mv2`);
    expect((await client("storage", "volume", "show", `${A}:default`, "mv")).status).not.toBe(0);
    await expectCopy([A, "p2", "mv2"], [A, "p2", "mv2"]);
    await ok("storage", "volume", "move", `${A}:p2/mv2`, `${A}:p2/mv2`, "--target-project", "vp");
    expect((await client("storage", "volume", "show", `${A}:p2`, "mv2")).status).not.toBe(0);
    expect(await get(A, "p2", "mv2", "user.foo", "vp")).toBe("post");
    expect(await snaps(A, "p2", "mv2", "vp")).toEqual(["snap0", "snap1"]);
    expect(readFileSync(join(volPath(A, "p2", "mv2", undefined, "vp"), "data"), "utf8")).toBe("now\n");
  });

  it("--refresh keeps same-name snapshots, drops others, adds the missing ones", async () => {
    await prepare(A, "default", "rf");
    await ok("storage", "volume", "copy", `${A}:default/rf`, `${A}:p2/rf`);
    await ok("storage", "volume", "snapshot", `${A}:p2`, "rf", "extra");
    writeFileSync(join(volPath(A, "p2", "rf", "snap0"), "marker"), "untouched");
    await ok("storage", "volume", "snapshot", `${A}:default`, "rf", "snap2");
    writeFileSync(join(volPath(A, "default", "rf"), "data"), "later\n");
    await ok("storage", "volume", "copy", `${A}:default/rf`, `${A}:p2/rf`, "--refresh");
    expect(await snaps(A, "p2", "rf")).toEqual(["snap0", "snap1", "snap2"]);
    expect(readFileSync(join(volPath(A, "p2", "rf", "snap0"), "marker"), "utf8")).toBe("untouched");
    expect(readFileSync(join(volPath(A, "p2", "rf"), "data"), "utf8")).toBe("later\n");
  });
});

describe("between servers", { timeout: 900_000 }, () => {
  for (const mode of ["pull", "push", "relay"]) {
    it(`nodelxd to nodelxd (${mode}): copy, --volume-only, move`, async () => {
      const v = `x${mode}`;
      await prepare(A, "default", v);
      await ok("storage", "volume", "copy", `${A}:default/${v}`, `${B}:default/${v}`, "--mode", mode);
      await expectCopy([A, "default", v], [B, "default", v]);
      await ok("storage", "volume", "copy", `${A}:default/${v}`, `${B}:default/${v}-only`, "--volume-only", "--mode", mode);
      await expectCopy([A, "default", v], [B, "default", `${v}-only`], false);
      await ok("storage", "volume", "move", `${A}:default/${v}`, `${B}:default/${v}-moved`, "--mode", mode);
      expect((await client("storage", "volume", "show", `${A}:default`, v)).status).not.toBe(0);
      await expectCopy([B, "default", v], [B, "default", `${v}-moved`]);
    });
  }

  it("--refresh between servers keeps same-name snapshots and sends the rest", async () => {
    await prepare(A, "default", "xr");
    await ok("storage", "volume", "copy", `${A}:default/xr`, `${B}:default/xr`);
    writeFileSync(join(volPath(B, "default", "xr", "snap0"), "marker"), "untouched");
    await ok("storage", "volume", "snapshot", `${B}:default`, "xr", "extra");
    await ok("storage", "volume", "snapshot", `${A}:default`, "xr", "snap2");
    writeFileSync(join(volPath(A, "default", "xr"), "data"), "later\n");
    await ok("storage", "volume", "copy", `${A}:default/xr`, `${B}:default/xr`, "--refresh");
    expect(await snaps(B, "default", "xr")).toEqual(["snap0", "snap1", "snap2"]);
    expect(readFileSync(join(volPath(B, "default", "xr", "snap0"), "marker"), "utf8")).toBe("untouched");
    expect(readFileSync(join(volPath(B, "default", "xr"), "data"), "utf8")).toBe("later\n");
  });

  for (const mode of ["pull", "push", "relay"]) {
    it(`with real LXD both ways (${mode})`, async () => {
      const v = `r${mode}`;
      await prepare(A, "default", v, true);
      await ok("storage", "volume", "copy", `${A}:default/${v}`, `${R}:default/${v}`, "--mode", mode);
      await expectCopy([A, "default", v], [R, "default", v]);
      await ok("storage", "volume", "copy", `${R}:default/${v}`, `${B}:default/${v}-back`, "--mode", mode);
      await expectCopy([R, "default", v], [B, "default", `${v}-back`]);
    });
  }

  it("honours rsync.compression=false on the source pool", async () => {
    await local(a.dir, "storage", "set", "default", "rsync.compression", "false");
    try {
      await prepare(A, "default", "nocomp", true);
      await ok("storage", "volume", "copy", `${A}:default/nocomp`, `${R}:default/nocomp`);
      await expectCopy([A, "default", "nocomp"], [R, "default", "nocomp"]);
    } finally {
      await local(a.dir, "storage", "unset", "default", "rsync.compression");
    }
  });
});

describe("custom block volumes between servers (LXD's BLOCK_AND_RSYNC: the raw disk as one stream)", { timeout: 900_000 }, () => {
  const MiB = 2 ** 20;
  const disk = (remote: string, name: string, snap?: string) => join(volPath(remote, "default", name, snap), "root.img");
  const poke = (path: string, text: string) => {
    const fd = openSync(path, "r+");
    writeSync(fd, Buffer.from(text), 0, text.length, 3 * MiB);
    closeSync(fd);
  };
  const peek = (path: string) => {
    const fd = openSync(path, "r");
    const buf = Buffer.alloc(3);
    readSync(fd, buf, 0, 3, 3 * MiB);
    closeSync(fd);
    return buf.toString();
  };
  /** A 4MiB block volume whose snapshot s0 holds "one" and whose disk holds "two". */
  async function prepareBlock(remote: string, name: string): Promise<void> {
    await ok("storage", "volume", "create", `${remote}:default`, name, "--type=block", "size=4MiB");
    poke(disk(remote, name), "one");
    await ok("storage", "volume", "snapshot", `${remote}:default`, name, "s0");
    poke(disk(remote, name), "two");
  }
  async function expectBlock(remote: string, name: string, withSnap = true): Promise<void> {
    expect(await ok("storage", "volume", "show", `${remote}:default`, name)).toContain("content_type: block");
    expect([statSync(disk(remote, name)).size, peek(disk(remote, name))]).toEqual([4 * MiB, "two"]);
    if (!withSnap) return void expect(await snaps(remote, "default", name)).toEqual([]);
    expect(await snaps(remote, "default", name)).toEqual(["s0"]);
    expect(await ok("storage", "volume", "show", `${remote}:default`, `${name}/s0`)).toContain("content_type: block");
    expect(peek(disk(remote, name, "s0"))).toBe("one");
  }

  for (const mode of ["pull", "push", "relay"]) {
    it(`nodelxd to nodelxd and with real LXD both ways (${mode})`, async () => {
      const v = `b${mode}`;
      await prepareBlock(A, v);
      await ok("storage", "volume", "copy", `${A}:default/${v}`, `${B}:default/${v}`, "--mode", mode);
      await expectBlock(B, v);
      await ok("storage", "volume", "copy", `${A}:default/${v}`, `${B}:default/${v}-only`, "--volume-only", "--mode", mode);
      await expectBlock(B, `${v}-only`, false);
      await ok("storage", "volume", "copy", `${A}:default/${v}`, `${R}:default/${v}`, "--mode", mode);
      await expectBlock(R, v);
      await ok("storage", "volume", "copy", `${R}:default/${v}`, `${A}:default/${v}-back`, "--mode", mode);
      await expectBlock(A, `${v}-back`);
      await ok("storage", "volume", "move", `${A}:default/${v}-back`, `${B}:default/${v}-moved`, "--mode", mode);
      expect((await client("storage", "volume", "show", `${A}:default`, `${v}-back`)).status).not.toBe(0);
      await expectBlock(B, `${v}-moved`);
    });
  }
});
