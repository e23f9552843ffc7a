// Custom volume copy and move with the stock client: across pools and projects on one server,
// and across servers (pull, push, relay) between nodelxd daemons and real LXD 5.0.2 in both
// directions (listeners on 127.0.0.53-55). Contents, snapshots and their config arrive;
// --volume-only leaves snapshots behind; --refresh keeps same-name snapshots untouched.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";
import { treeHash } from "../helpers/tree-hash.js";

let a: TestDaemon;
let b: TestDaemon;
let ref: ReferenceLxd;
let home: string;
const port = 9500 + Math.floor(Math.random() * 400);
const dirs: Record<string, string> = {};
const A = "vma";
const B = "vmb";
const R = "vmr";

function client(...args: string[]) {
  return spawnSync("lxc", args, { env: { ...process.env, HOME: home }, encoding: "utf8", timeout: 400_000 });
}
function ok(...args: string[]): string {
  const r = client(...args);
  if (r.status !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}
function local(dir: string, ...args: string[]): string {
  const r = spawnSync("lxc", args, { env: { ...process.env, LXD_DIR: dir, HOME: home }, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`lxc ${args.join(" ")} (LXD_DIR=${dir}) failed: ${r.stderr}`);
  return r.stdout;
}

/** A custom volume's directory on the host (dir pools), or one of its snapshots'. */
const volPath = (remote: string, pool: string, name: string, snap?: string, project = "default") =>
  join(dirs[remote], "storage-pools", pool, snap ? "custom-snapshots" : "custom", `${project}_${name}`, ...(snap ? [snap] : []));
const get = (remote: string, pool: string, vol: string, key = "user.foo", project = "default") => ok("storage", "volume", "get", `${remote}:${pool}`, vol, key, "--project", project).trim();
const snaps = (remote: string, pool: string, vol: string, project = "default") =>
  (JSON.parse(ok("query", `${remote}:/1.0/storage-pools/${pool}/volumes/custom/${vol}/snapshots?project=${project}`)) as string[]).map((u) => u.split("?")[0].split("/").pop()).sort();

/**
 * Volume `name` on `remote`: snapshots snap0 and snap1 with their own user.foo and content.
 * The last write ("now", as long as snap1's "one") lands in snap1's second: rsync's size-and-mtime
 * quick check can't tell them apart, which a receiver must handle (ours does). Where real LXD
 * receives (its receiver has that race), `laterSecond` moves the write's mtime on by two seconds.
 */
function prepare(remote: string, pool: string, name: string, laterSecond = false): void {
  ok("storage", "volume", "create", `${remote}:${pool}`, name);
  const write = (text: string) => writeFileSync(join(volPath(remote, pool, name), "data"), text);
  write("zero\n");
  ok("storage", "volume", "set", `${remote}:${pool}`, name, "user.foo=snap0");
  ok("storage", "volume", "snapshot", `${remote}:${pool}`, name, "snap0");
  write("one\n");
  ok("storage", "volume", "set", `${remote}:${pool}`, name, "user.foo=snap1");
  ok("storage", "volume", "snapshot", `${remote}:${pool}`, name, "snap1");
  write("now\n");
  if (laterSecond) {
    const t = new Date(Date.now() + 2000);
    utimesSync(join(volPath(remote, pool, name), "data"), t, t);
  }
  ok("storage", "volume", "set", `${remote}:${pool}`, name, "user.foo=post");
}

function expectCopy(from: [string, string, string], to: [string, string, string], withSnaps = true, project = "default"): void {
  const [tr, tp, tn] = to;
  const [fr, fp, fn] = from;
  expect(get(tr, tp, tn, "user.foo", project)).toBe("post");
  expect(readFileSync(join(volPath(tr, tp, tn, undefined, project), "data"), "utf8")).toBe("now\n");
  if (!withSnaps) return void expect(snaps(tr, tp, tn, project)).toEqual([]);
  expect(snaps(tr, tp, tn, project)).toEqual(["snap0", "snap1"]);
  expect(get(tr, tp, `${tn}/snap0`, "user.foo", project)).toBe("snap0");
  expect(get(tr, tp, `${tn}/snap1`, "user.foo", project)).toBe("snap1");
  for (const s of ["snap0", "snap1"]) expect(treeHash(volPath(tr, tp, tn, s, project)), s).toBe(treeHash(volPath(fr, fp, fn, s)));
}

beforeAll(async () => {
  home = mkdtempSync("/tmp/migrate2-vol-home-");
  a = await startDaemon();
  b = await startDaemon();
  ref = await startReferenceLxd();
  const all: [string, string, number][] = [[A, a.dir, 3], [B, b.dir, 4], [R, dirname(ref.socket), 5]];
  for (const [remote, dir, n] of all) {
    dirs[remote] = dir;
    local(dir, "storage", "create", "default", "dir");
    local(dir, "config", "set", "core.https_address", `127.0.0.${50 + n}:${port}`);
    local(dir, "config", "set", "core.trust_password", "vol-test");
    ok("remote", "add", remote, `https://127.0.0.${50 + n}:${port}`, "--accept-certificate", "--password", "vol-test");
  }
  local(a.dir, "storage", "create", "p2", "dir");
  local(a.dir, "project", "create", "vp", "-c", "features.storage.volumes=true");
}, 300_000);

afterAll(async () => {
  for (const [remote, dir] of Object.entries(dirs)) {
    for (const project of remote === A ? ["default", "vp"] : ["default"]) {
      for (const pool of remote === A ? ["default", "p2"] : ["default"]) {
        const names = spawnSync("lxc", ["storage", "volume", "list", pool, "--format", "csv", "-c", "tn", "--project", project], { env: { ...process.env, LXD_DIR: dir, HOME: home }, encoding: "utf8" }).stdout.split("\n");
        for (const line of names) {
          const [type, name] = line.split(",");
          if (type === "custom" && name && !name.includes("/")) spawnSync("lxc", ["storage", "volume", "delete", pool, name, "--project", project], { env: { ...process.env, LXD_DIR: dir, HOME: home } });
        }
      }
    }
  }
  await a?.stop().catch(() => {});
  await b?.stop().catch(() => {});
  await ref?.stop().catch(() => {});
  if (home) rmSync(home, { recursive: true, force: true });
}, 180_000);

describe("on one server", { timeout: 900_000 }, () => {
  it("copies across pools with snapshots and config, and --volume-only without them", () => {
    prepare(A, "default", "lv");
    ok("storage", "volume", "copy", `${A}:default/lv`, `${A}:p2/lv`);
    expectCopy([A, "default", "lv"], [A, "p2", "lv"]);
    ok("storage", "volume", "copy", `${A}:default/lv`, `${A}:p2/lv-only`, "--volume-only");
    expectCopy([A, "default", "lv"], [A, "p2", "lv-only"], false);
    // The same name on the same pool is refused; the source is untouched.
    expect(client("storage", "volume", "copy", `${A}:default/lv`, `${A}:p2/lv`).status).not.toBe(0);
  });

  it("moves across pools and projects (the source goes)", () => {
    prepare(A, "default", "mv");
    ok("storage", "volume", "move", `${A}:default/mv`, `${A}:p2/mv2`);
    expect(client("storage", "volume", "show", `${A}:default`, "mv").status).not.toBe(0);
    expectCopy([A, "p2", "mv2"], [A, "p2", "mv2"]);
    ok("storage", "volume", "move", `${A}:p2/mv2`, `${A}:p2/mv2`, "--target-project", "vp");
    expect(client("storage", "volume", "show", `${A}:p2`, "mv2").status).not.toBe(0);
    expect(get(A, "p2", "mv2", "user.foo", "vp")).toBe("post");
    expect(snaps(A, "p2", "mv2", "vp")).toEqual(["snap0", "snap1"]);
    expect(readFileSync(join(volPath(A, "p2", "mv2", undefined, "vp"), "data"), "utf8")).toBe("now\n");
  });

  it("--refresh keeps same-name snapshots, drops others, adds the missing ones", () => {
    prepare(A, "default", "rf");
    ok("storage", "volume", "copy", `${A}:default/rf`, `${A}:p2/rf`);
    ok("storage", "volume", "snapshot", `${A}:p2`, "rf", "extra");
    writeFileSync(join(volPath(A, "p2", "rf", "snap0"), "marker"), "untouched");
    ok("storage", "volume", "snapshot", `${A}:default`, "rf", "snap2");
    writeFileSync(join(volPath(A, "default", "rf"), "data"), "later\n");
    ok("storage", "volume", "copy", `${A}:default/rf`, `${A}:p2/rf`, "--refresh");
    expect(snaps(A, "p2", "rf")).toEqual(["snap0", "snap1", "snap2"]);
    expect(readFileSync(join(volPath(A, "p2", "rf", "snap0"), "marker"), "utf8")).toBe("untouched");
    expect(readFileSync(join(volPath(A, "p2", "rf"), "data"), "utf8")).toBe("later\n");
  });
});

describe("between servers", { timeout: 900_000 }, () => {
  for (const mode of ["pull", "push", "relay"]) {
    it(`nodelxd to nodelxd (${mode}): copy, --volume-only, move`, () => {
      const v = `x${mode}`;
      prepare(A, "default", v);
      ok("storage", "volume", "copy", `${A}:default/${v}`, `${B}:default/${v}`, "--mode", mode);
      expectCopy([A, "default", v], [B, "default", v]);
      ok("storage", "volume", "copy", `${A}:default/${v}`, `${B}:default/${v}-only`, "--volume-only", "--mode", mode);
      expectCopy([A, "default", v], [B, "default", `${v}-only`], false);
      ok("storage", "volume", "move", `${A}:default/${v}`, `${B}:default/${v}-moved`, "--mode", mode);
      expect(client("storage", "volume", "show", `${A}:default`, v).status).not.toBe(0);
      expectCopy([B, "default", v], [B, "default", `${v}-moved`]);
    });
  }

  it("--refresh between servers keeps same-name snapshots and sends the rest", () => {
    prepare(A, "default", "xr");
    ok("storage", "volume", "copy", `${A}:default/xr`, `${B}:default/xr`);
    writeFileSync(join(volPath(B, "default", "xr", "snap0"), "marker"), "untouched");
    ok("storage", "volume", "snapshot", `${B}:default`, "xr", "extra");
    ok("storage", "volume", "snapshot", `${A}:default`, "xr", "snap2");
    writeFileSync(join(volPath(A, "default", "xr"), "data"), "later\n");
    ok("storage", "volume", "copy", `${A}:default/xr`, `${B}:default/xr`, "--refresh");
    expect(snaps(B, "default", "xr")).toEqual(["snap0", "snap1", "snap2"]);
    expect(readFileSync(join(volPath(B, "default", "xr", "snap0"), "marker"), "utf8")).toBe("untouched");
    expect(readFileSync(join(volPath(B, "default", "xr"), "data"), "utf8")).toBe("later\n");
  });

  for (const mode of ["pull", "push", "relay"]) {
    it(`with real LXD both ways (${mode})`, () => {
      const v = `r${mode}`;
      prepare(A, "default", v, true);
      ok("storage", "volume", "copy", `${A}:default/${v}`, `${R}:default/${v}`, "--mode", mode);
      expectCopy([A, "default", v], [R, "default", v]);
      ok("storage", "volume", "copy", `${R}:default/${v}`, `${B}:default/${v}-back`, "--mode", mode);
      expectCopy([R, "default", v], [B, "default", `${v}-back`]);
    });
  }

  it("honours rsync.compression=false on the source pool", () => {
    local(a.dir, "storage", "set", "default", "rsync.compression", "false");
    try {
      prepare(A, "default", "nocomp", true);
      ok("storage", "volume", "copy", `${A}:default/nocomp`, `${R}:default/nocomp`);
      expectCopy([A, "default", "nocomp"], [R, "default", "nocomp"]);
    } finally {
      local(a.dir, "storage", "unset", "default", "rsync.compression");
    }
  });
});
