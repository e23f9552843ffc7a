// `lxc copy --refresh`, snapshot migration and instance volume config, with the stock client
// over HTTPS between two nodelxd daemons and real LXD 5.0.2 (listeners on 127.0.0.50-52).
// A refresh moves only what changed: the target's snapshots that match the source's (name and
// creation time) stay untouched on disk, missing ones arrive, extra ones go, and the main
// volume is synced (changed and deleted files follow).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { busyboxImage } from "../helpers/image.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";
import { treeHash } from "../helpers/tree-hash.js";

let src: InitialisedDaemon;
let dst: TestDaemon;
let ref: ReferenceLxd;
let home: string;
const port = 9500 + Math.floor(Math.random() * 400);
const dirs: Record<string, string> = {};

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

function listen(remote: string, dir: string, n: number): void {
  dirs[remote] = dir;
  local(dir, "config", "set", "core.https_address", `127.0.0.${50 + n}:${port}`);
  local(dir, "config", "set", "core.trust_password", "mig-test");
  ok("remote", "add", remote, `https://127.0.0.${50 + n}:${port}`, "--accept-certificate", "--password", "mig-test");
}

const S = "m2s";
const D = "m2d";
const R = "m2r";
const vol = (remote: string, name: string, snap?: string) => join(dirs[remote], "storage-pools", "default", snap ? "containers-snapshots" : "containers", name, ...(snap ? [snap] : []));
const rootfs = (remote: string, name: string, snap?: string) => join(vol(remote, name, snap), "rootfs");
const snapshots = (remote: string, name: string) => (JSON.parse(ok("query", `${remote}:/1.0/instances/${name}/snapshots`)) as string[]).map((u) => u.split("/").pop()).sort();
const cat = (remote: string, name: string, path: string) => client("file", "pull", `${remote}:${name}${path}`, "-");

beforeAll(async () => {
  home = mkdtempSync("/tmp/migrate2-refresh-home-");
  src = await startInitialisedDaemon();
  dst = await startDaemon();
  ref = await startReferenceLxd();
  for (const dir of [dst.dir, dirname(ref.socket)]) {
    local(dir, "storage", "create", "default", "dir");
    local(dir, "profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
  }
  listen(S, src.dir, 0);
  listen(D, dst.dir, 1);
  listen(R, dirname(ref.socket), 2);
  local(dirname(ref.socket), "image", "import", busyboxImage(), "--alias", "busybox");
}, 300_000);

afterAll(async () => {
  for (const dir of Object.values(dirs)) {
    const names = spawnSync("lxc", ["list", "--format", "csv", "-c", "n"], { env: { ...process.env, LXD_DIR: dir, HOME: home }, encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    for (const n of names) spawnSync("lxc", ["delete", "-f", n], { env: { ...process.env, LXD_DIR: dir, HOME: home } });
  }
  await src?.teardown().catch(() => {});
  await dst?.stop().catch(() => {});
  await ref?.stop().catch(() => {});
  if (home) rmSync(home, { recursive: true, force: true });
}, 180_000);

/** Source c with snapshots s0, s1; copied to the target; then changed on the source. */
function refreshScenario(from: string, to: string, name: string, extra: string[] = []): void {
  ok("init", `${from}:busybox`, `${from}:${name}`, "-q");
  writeFileSync(join(home, "f"), "one\n");
  ok("file", "push", join(home, "f"), `${from}:${name}/root/f`);
  ok("file", "push", join(home, "f"), `${from}:${name}/root/gone`);
  ok("snapshot", `${from}:${name}`, "s0");
  ok("snapshot", `${from}:${name}`, "s1");
  ok("copy", `${from}:${name}`, `${to}:${name}`, ...extra);
  expect(snapshots(to, name)).toEqual(["s0", "s1"]);
  // Changes on the source: a new snapshot, s1 replaced, a file changed and one deleted.
  ok("delete", `${from}:${name}/s1`);
  writeFileSync(join(home, "f"), "two\n");
  ok("file", "push", join(home, "f"), `${from}:${name}/root/f`);
  ok("snapshot", `${from}:${name}`, "s1");
  ok("file", "delete", `${from}:${name}/root/gone`);
  ok("snapshot", `${from}:${name}`, "s2");
  writeFileSync(join(home, "f"), "three\n");
  ok("file", "push", join(home, "f"), `${from}:${name}/root/f`);
}

function expectRefreshed(from: string, to: string, name: string): void {
  expect(snapshots(to, name)).toEqual(["s0", "s1", "s2"]);
  expect(cat(to, name, "/root/f").stdout).toBe("three\n");
  expect(cat(to, name, "/root/gone").status).not.toBe(0);
  if (dirs[from] && dirs[to] && existsSync(rootfs(from, name))) {
    expect(treeHash(rootfs(to, name))).toBe(treeHash(rootfs(from, name)));
    for (const s of ["s0", "s1", "s2"]) expect(treeHash(rootfs(to, name, s)), s).toBe(treeHash(rootfs(from, name, s)));
  }
  ok("restore", `${to}:${name}`, "s1");
  expect(cat(to, name, "/root/f").stdout).toBe("two\n");
  ok("restore", `${to}:${name}`, "s0");
  expect(cat(to, name, "/root/f").stdout).toBe("one\n");
  expect(cat(to, name, "/root/gone").stdout).toBe("one\n");
}

describe("lxc copy --refresh", { timeout: 900_000 }, () => {
  for (const mode of ["pull", "push", "relay"]) {
    it(`nodelxd to nodelxd (${mode}): only new and changed snapshots and the volume move`, () => {
      const name = `r-${mode}`;
      refreshScenario(S, D, name, ["--mode", mode]);
      // A marker inside the target's unchanged snapshot s0 shows it is not sent again; the
      // target's own extra snapshot goes.
      const marker = join(rootfs(D, name, "s0"), "marker");
      writeFileSync(marker, "untouched");
      ok("snapshot", `${D}:${name}`, "extra");
      ok("copy", `${S}:${name}`, `${D}:${name}`, "--refresh", "--mode", mode);
      expect(readFileSync(marker, "utf8")).toBe("untouched");
      rmSync(marker);
      expectRefreshed(S, D, name);
    });
  }

  it("refreshes from a running source, and refuses a running target", () => {
    refreshScenario(S, D, "r-run");
    ok("start", `${S}:r-run`);
    ok("copy", `${S}:r-run`, `${D}:r-run`, "--refresh");
    ok("stop", "-f", `${S}:r-run`);
    expectRefreshed(S, D, "r-run");
    ok("start", `${D}:r-run`);
    const r = client("copy", `${S}:r-run`, `${D}:r-run`, "--refresh");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("Instance is running");
    ok("stop", "-f", `${D}:r-run`);
  });

  it("--instance-only refreshes the volume and leaves snapshots alone", () => {
    refreshScenario(S, D, "r-only");
    ok("copy", `${S}:r-only`, `${D}:r-only`, "--refresh", "--instance-only");
    expect(snapshots(D, "r-only")).toEqual(["s0", "s1"]);
    expect(cat(D, "r-only", "/root/f").stdout).toBe("three\n");
  });

  it("on one server (source.type copy, refresh)", () => {
    ok("init", `${S}:busybox`, `${S}:rl-src`, "-q");
    ok("snapshot", `${S}:rl-src`, "s0");
    ok("snapshot", `${S}:rl-src`, "s1");
    ok("copy", `${S}:rl-src`, `${S}:rl`);
    ok("snapshot", `${S}:rl`, "extra");
    const marker = join(rootfs(S, "rl", "s0"), "marker");
    writeFileSync(marker, "untouched");
    ok("snapshot", `${S}:rl-src`, "s2");
    writeFileSync(join(home, "f"), "new\n");
    ok("file", "push", join(home, "f"), `${S}:rl-src/root/new`);
    ok("copy", `${S}:rl-src`, `${S}:rl`, "--refresh");
    expect(readFileSync(marker, "utf8")).toBe("untouched");
    expect(snapshots(S, "rl")).toEqual(["s0", "s1", "s2"]);
    expect(cat(S, "rl", "/root/new").stdout).toBe("new\n");
  });

  it("from nodelxd to real LXD and back", () => {
    refreshScenario(S, R, "r-toref");
    ok("copy", `${S}:r-toref`, `${R}:r-toref`, "--refresh");
    expectRefreshed(S, R, "r-toref");
    refreshScenario(R, S, "r-fromref");
    ok("copy", `${R}:r-fromref`, `${S}:r-fromref`, "--refresh");
    expectRefreshed(R, S, "r-fromref");
  });

  it("from a running real LXD container (it sends the volume twice, the second time frozen)", () => {
    ok("launch", `${R}:busybox`, `${R}:r-refrun`, "-q");
    ok("snapshot", `${R}:r-refrun`, "s0");
    ok("copy", `${R}:r-refrun`, `${S}:r-refrun`, "--stateless");
    ok("exec", `${R}:r-refrun`, "--", "sh", "-c", "echo later > /root/later");
    ok("copy", `${R}:r-refrun`, `${S}:r-refrun`, "--refresh");
    expect(cat(S, "r-refrun", "/root/later").stdout).toBe("later\n");
    ok("delete", "-f", `${R}:r-refrun`);
  });
});

describe("snapshot migration", { timeout: 900_000 }, () => {
  for (const [from, to, mode] of [[S, D, "pull"], [S, D, "push"], [S, D, "relay"], [S, R, "pull"], [R, S, "relay"]]) {
    it(`lxc copy ${from === S ? "ours" : "real"}:c/snap to ${to === S || to === D ? "ours" : "real"} (${mode})`, () => {
      const name = `sm-${mode}-${to}`;
      ok("init", `${from}:busybox`, `${from}:${name}`, "-q");
      ok("config", "set", `${from}:${name}`, "user.tester", "at-snap");
      writeFileSync(join(home, "f"), "in snapshot\n");
      ok("file", "push", join(home, "f"), `${from}:${name}/root/f`);
      ok("snapshot", `${from}:${name}`, "snap0");
      ok("config", "unset", `${from}:${name}`, "user.tester");
      ok("file", "delete", `${from}:${name}/root/f`);
      ok("copy", `${from}:${name}/snap0`, `${to}:${name}-c`, "--mode", mode);
      expect(snapshots(to, `${name}-c`)).toEqual([]);
      expect(ok("config", "get", `${to}:${name}-c`, "user.tester").trim()).toBe("at-snap");
      ok("start", `${to}:${name}-c`);
      expect(ok("exec", `${to}:${name}-c`, "--", "cat", "/root/f")).toBe("in snapshot\n");
      ok("delete", "-f", `${to}:${name}-c`);
    });
  }
});

describe("instance volume config (PUT on a container volume)", { timeout: 900_000 }, () => {
  it("is set through the storage API, snapshotted, and carried by local and remote copies", () => {
    ok("init", `${S}:busybox`, `${S}:vc`, "-q");
    ok("storage", "volume", "set", `${S}:default`, "container/vc", "user.foo=snap0");
    ok("snapshot", `${S}:vc`);
    ok("storage", "volume", "set", `${S}:default`, "container/vc", "user.foo=post");
    expect(client("storage", "volume", "set", `${S}:default`, "container/vc", "size=1GiB").stderr).toContain('Instance volume "size" property cannot be changed');
    const get = (remote: string, v: string) => ok("storage", "volume", "get", `${remote}:default`, v, "user.foo").trim();
    expect(get(S, "container/vc/snap0")).toBe("snap0");
    ok("copy", `${S}:vc`, `${S}:vc2`);
    expect(get(S, "container/vc2")).toBe("post");
    expect(get(S, "container/vc2/snap0")).toBe("snap0");
    for (const to of [D, R]) {
      ok("copy", `${S}:vc`, `${to}:vc`);
      expect(get(to, "container/vc")).toBe("post");
      expect(get(to, "container/vc/snap0")).toBe("snap0");
    }
  });
});
