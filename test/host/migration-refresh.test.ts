// `lxc copy --refresh`, snapshot migration and instance volume config, with the stock client
// over HTTPS between two nodelxd daemons and real LXD 5.0.2 (listeners on 127.0.0.50-52).
// A refresh moves only what changed: the target's snapshots that match the source's (name and
// creation time) stay untouched on disk, missing ones arrive, extra ones go, and the main
// volume is synced (changed and deleted files follow).
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMigrationPeers, type MigrationPeers } from "../helpers/migration-peers.js";
import { treeHash } from "../helpers/tree-hash.js";

let peers: MigrationPeers;
let home: string;
const port = 9500 + Math.floor(Math.random() * 400);
const dirs = (): Record<string, string> => peers.remotes.dirs;
const client = (...args: string[]) => peers.remotes.run(...args);
const ok = (...args: string[]) => peers.remotes.ok(...args);


const S = "m2s";
const D = "m2d";
const R = "m2r";
const vol = (remote: string, name: string, snap?: string) => join(dirs()[remote], "storage-pools", "default", snap ? "containers-snapshots" : "containers", name, ...(snap ? [snap] : []));
const rootfs = (remote: string, name: string, snap?: string) => join(vol(remote, name, snap), "rootfs");
const snapshots = async (remote: string, name: string) => (JSON.parse(await ok("query", `${remote}:/1.0/instances/${name}/snapshots`)) as string[]).map((u) => u.split("/").pop()).sort();
const cat = async (remote: string, name: string, path: string) => await client("file", "pull", `${remote}:${name}${path}`, "-");

beforeAll(async () => {
  const at = (n: number) => `127.0.0.${50 + n}:${port}`;
  peers = await startMigrationPeers("/tmp/migrate2-refresh-home-", [S, D, R], [at(0), at(1), at(2)]);
  home = peers.remotes.home;
}, 300_000);

afterAll(async () => {
  await peers?.stop();
}, 180_000);

/** Source c with snapshots s0, s1; copied to the target; then changed on the source. */
async function refreshScenario(from: string, to: string, name: string, extra: string[] = []): Promise<void> {
  await ok("init", `${from}:busybox`, `${from}:${name}`, "-q");
  writeFileSync(join(home, "f"), "one\n");
  await ok("file", "push", join(home, "f"), `${from}:${name}/root/f`);
  await ok("file", "push", join(home, "f"), `${from}:${name}/root/gone`);
  await ok("snapshot", `${from}:${name}`, "s0");
  await ok("snapshot", `${from}:${name}`, "s1");
  await ok("copy", `${from}:${name}`, `${to}:${name}`, ...extra);
  expect(await snapshots(to, name)).toEqual(["s0", "s1"]);
  // Changes on the source: a new snapshot, s1 replaced, a file changed and one deleted.
  await ok("delete", `${from}:${name}/s1`);
  // A refresh tells snapshots apart by name and creation second (LXD's CompareSnapshots): the
  // new s1 must not be made in the old one's second.
  await new Promise((r) => setTimeout(r, 1100));
  writeFileSync(join(home, "f"), "two\n");
  await ok("file", "push", join(home, "f"), `${from}:${name}/root/f`);
  await ok("snapshot", `${from}:${name}`, "s1");
  await ok("file", "delete", `${from}:${name}/root/gone`);
  await ok("snapshot", `${from}:${name}`, "s2");
  writeFileSync(join(home, "f"), "three\n");
  await ok("file", "push", join(home, "f"), `${from}:${name}/root/f`);
}

async function expectRefreshed(from: string, to: string, name: string): Promise<void> {
  expect(await snapshots(to, name)).toEqual(["s0", "s1", "s2"]);
  expect((await cat(to, name, "/root/f")).stdout).toBe("three\n");
  expect((await cat(to, name, "/root/gone")).status).not.toBe(0);
  if (dirs()[from] && dirs()[to] && existsSync(rootfs(from, name))) {
    expect(treeHash(rootfs(to, name))).toBe(treeHash(rootfs(from, name)));
    for (const s of ["s0", "s1", "s2"]) expect(treeHash(rootfs(to, name, s)), s).toBe(treeHash(rootfs(from, name, s)));
  }
  await ok("restore", `${to}:${name}`, "s1");
  expect((await cat(to, name, "/root/f")).stdout).toBe("two\n");
  await ok("restore", `${to}:${name}`, "s0");
  expect((await cat(to, name, "/root/f")).stdout).toBe("one\n");
  expect((await cat(to, name, "/root/gone")).stdout).toBe("one\n");
}

describe("lxc copy --refresh", { timeout: 900_000 }, () => {
  for (const mode of ["pull", "push", "relay"]) {
    it(`nodelxd to nodelxd (${mode}): only new and changed snapshots and the volume move`, async () => {
      const name = `r-${mode}`;
      await refreshScenario(S, D, name, ["--mode", mode]);
      // A marker inside the target's unchanged snapshot s0 shows it is not sent again; the
      // target's own extra snapshot goes.
      const marker = join(rootfs(D, name, "s0"), "marker");
      writeFileSync(marker, "untouched");
      await ok("snapshot", `${D}:${name}`, "extra");
      await ok("copy", `${S}:${name}`, `${D}:${name}`, "--refresh", "--mode", mode);
      expect(readFileSync(marker, "utf8")).toBe("untouched");
      rmSync(marker);
      await expectRefreshed(S, D, name);
    });
  }

  it("refreshes from a running source, and refuses a running target", async () => {
    await refreshScenario(S, D, "r-run");
    await ok("start", `${S}:r-run`);
    await ok("copy", `${S}:r-run`, `${D}:r-run`, "--refresh");
    await ok("stop", "-f", `${S}:r-run`);
    await expectRefreshed(S, D, "r-run");
    await ok("start", `${D}:r-run`);
    const r = await client("copy", `${S}:r-run`, `${D}:r-run`, "--refresh");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("Instance is running");
    await ok("stop", "-f", `${D}:r-run`);
  });

  it("--instance-only refreshes the volume and leaves snapshots alone", async () => {
    await refreshScenario(S, D, "r-only");
    await ok("copy", `${S}:r-only`, `${D}:r-only`, "--refresh", "--instance-only");
    expect(await snapshots(D, "r-only")).toEqual(["s0", "s1"]);
    expect((await cat(D, "r-only", "/root/f")).stdout).toBe("three\n");
  });

  it("on one server (source.type copy, refresh)", async () => {
    await ok("init", `${S}:busybox`, `${S}:rl-src`, "-q");
    await ok("snapshot", `${S}:rl-src`, "s0");
    await ok("snapshot", `${S}:rl-src`, "s1");
    await ok("copy", `${S}:rl-src`, `${S}:rl`);
    await ok("snapshot", `${S}:rl`, "extra");
    const marker = join(rootfs(S, "rl", "s0"), "marker");
    writeFileSync(marker, "untouched");
    await ok("snapshot", `${S}:rl-src`, "s2");
    writeFileSync(join(home, "f"), "new\n");
    await ok("file", "push", join(home, "f"), `${S}:rl-src/root/new`);
    await ok("copy", `${S}:rl-src`, `${S}:rl`, "--refresh");
    expect(readFileSync(marker, "utf8")).toBe("untouched");
    expect(await snapshots(S, "rl")).toEqual(["s0", "s1", "s2"]);
    expect((await cat(S, "rl", "/root/new")).stdout).toBe("new\n");
  });

  it("from nodelxd to real LXD and back", async () => {
    await refreshScenario(S, R, "r-toref");
    await ok("copy", `${S}:r-toref`, `${R}:r-toref`, "--refresh");
    await expectRefreshed(S, R, "r-toref");
    await refreshScenario(R, S, "r-fromref");
    await ok("copy", `${R}:r-fromref`, `${S}:r-fromref`, "--refresh");
    await expectRefreshed(R, S, "r-fromref");
  });

  it("from a running real LXD container (it sends the volume twice, the second time frozen)", async () => {
    await ok("launch", `${R}:busybox`, `${R}:r-refrun`, "-q");
    await ok("snapshot", `${R}:r-refrun`, "s0");
    await ok("copy", `${R}:r-refrun`, `${S}:r-refrun`, "--stateless");
    await ok("exec", `${R}:r-refrun`, "--", "sh", "-c", "echo later > /root/later");
    await ok("copy", `${R}:r-refrun`, `${S}:r-refrun`, "--refresh");
    expect((await cat(S, "r-refrun", "/root/later")).stdout).toBe("later\n");
    await ok("delete", "-f", `${R}:r-refrun`);
  });
});

describe("snapshot migration", { timeout: 900_000 }, () => {
  for (const [from, to, mode] of [[S, D, "pull"], [S, D, "push"], [S, D, "relay"], [S, R, "pull"], [R, S, "relay"]]) {
    it(`lxc copy ${from === S ? "ours" : "real"}:c/snap to ${to === S || to === D ? "ours" : "real"} (${mode})`, async () => {
      const name = `sm-${mode}-${to}`;
      await ok("init", `${from}:busybox`, `${from}:${name}`, "-q");
      await ok("config", "set", `${from}:${name}`, "user.tester", "at-snap");
      writeFileSync(join(home, "f"), "in snapshot\n");
      await ok("file", "push", join(home, "f"), `${from}:${name}/root/f`);
      await ok("snapshot", `${from}:${name}`, "snap0");
      await ok("config", "unset", `${from}:${name}`, "user.tester");
      await ok("file", "delete", `${from}:${name}/root/f`);
      await ok("copy", `${from}:${name}/snap0`, `${to}:${name}-c`, "--mode", mode);
      expect(await snapshots(to, `${name}-c`)).toEqual([]);
      expect((await ok("config", "get", `${to}:${name}-c`, "user.tester")).trim()).toBe("at-snap");
      await ok("start", `${to}:${name}-c`);
      expect(await ok("exec", `${to}:${name}-c`, "--", "cat", "/root/f")).toBe("in snapshot\n");
      await ok("delete", "-f", `${to}:${name}-c`);
    });
  }
});

describe("instance volume config (PUT on a container volume)", { timeout: 900_000 }, () => {
  it("is set through the storage API, snapshotted, and carried by local and remote copies", async () => {
    await ok("init", `${S}:busybox`, `${S}:vc`, "-q");
    await ok("storage", "volume", "set", `${S}:default`, "container/vc", "user.foo=snap0");
    await ok("snapshot", `${S}:vc`);
    await ok("storage", "volume", "set", `${S}:default`, "container/vc", "user.foo=post");
    expect((await client("storage", "volume", "set", `${S}:default`, "container/vc", "size=1GiB")).stderr).toContain('Instance volume "size" property cannot be changed');
    const get = async (remote: string, v: string) => (await ok("storage", "volume", "get", `${remote}:default`, v, "user.foo")).trim();
    expect(await get(S, "container/vc/snap0")).toBe("snap0");
    await ok("copy", `${S}:vc`, `${S}:vc2`);
    expect(await get(S, "container/vc2")).toBe("post");
    expect(await get(S, "container/vc2/snap0")).toBe("snap0");
    for (const to of [D, R]) {
      await ok("copy", `${S}:vc`, `${to}:vc`);
      expect(await get(to, "container/vc")).toBe("post");
      expect(await get(to, "container/vc/snap0")).toBe("snap0");
    }
  });
});
