// Moves and copies inside one server with the stock client, as LXD 5.0.2 does them:
// `lxc move c1 --storage P` (dir <-> btrfs), `lxc copy c1 c2 --storage P`, `lxc move c1
// --target-project P`, `lxc copy c1 c2 --target-project P`, with snapshots (or --instance-only).
// Every copy's rootfs and snapshot trees hash equal to the source's (content and ownership).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { treeHash } from "../helpers/tree-hash.js";

const btrfsOk = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");
let d: InitialisedDaemon;
const tag = Math.random().toString(36).slice(2, 6);
const bt = `bt${tag}`;
const p2 = `p${tag}`;
const projectInstances: string[] = [];

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

const volumePath = (pool: string, vol: string, snap?: string) => join(d.dir, "storage-pools", pool, snap ? "containers-snapshots" : "containers", vol, ...(snap ? [snap] : []));
/** What a copy or move must carry unchanged: the root filesystem (backup.yaml beside it names the pool and project, so it changes). */
const rootHash = (pool: string, vol: string, snap?: string) => treeHash(join(volumePath(pool, vol, snap), "rootfs"));
const rootPool = (name: string, project = "default") => JSON.parse(ok("query", `/1.0/instances/${name}?project=${project}`)).expanded_devices.root.pool as string;
const snapshots = (name: string, project = "default") => (JSON.parse(ok("query", `/1.0/instances/${name}/snapshots?project=${project}`)) as string[]).map((u) => u.split("/").pop()!.split("?")[0]).sort();

/** A stopped container with two snapshots of different content. */
function prepare(what: string): { name: string; hashes: Record<string, string>; uuid: string } {
  const name = d.launch(what);
  ok("exec", name, "--", "sh", "-c", "echo first > /root/f; mkdir -p /srv/own; chown 1234:4321 /srv/own; ln -s /etc/hostname /root/link");
  ok("snapshot", name, "s0");
  ok("exec", name, "--", "sh", "-c", "echo second > /root/f; echo more > /root/g");
  ok("snapshot", name, "s1");
  ok("exec", name, "--", "sh", "-c", "echo third > /root/f");
  ok("stop", name, "-f");
  const pool = rootPool(name);
  const hashes = { current: rootHash(pool, name), s0: rootHash(pool, name, "s0"), s1: rootHash(pool, name, "s1") };
  return { name, hashes, uuid: ok("config", "get", name, "volatile.uuid").trim() };
}

function expectSame(pool: string, vol: string, hashes: Record<string, string>, snaps: string[]) {
  expect(rootHash(pool, vol)).toBe(hashes.current);
  for (const s of snaps) expect(rootHash(pool, vol, s), s).toBe(hashes[s]);
}

function startsAndReads(name: string, project = "default"): string {
  ok("start", name, "--project", project);
  const out = ok("exec", name, "--project", project, "--", "cat", "/root/f").trim();
  ok("stop", name, "-f", "--project", project);
  return out;
}

beforeAll(async () => {
  d = await startInitialisedDaemon();
  if (btrfsOk) ok("storage", "create", bt, "btrfs", "size=512MiB");
  ok("project", "create", p2, "-c", "features.images=false", "-c", "features.profiles=false");
}, 120_000);

afterAll(async () => {
  if (!d) return;
  for (const n of projectInstances) d.lxc("delete", "-f", n, "--project", p2);
  await d.teardown();
});

describe.skipIf(!btrfsOk)("between pools", () => {
  it("lxc move --storage carries snapshots and volatile state, dir -> btrfs -> dir", () => {
    const { name, hashes, uuid } = prepare("pm");
    ok("move", name, "--storage", bt);
    expect(rootPool(name)).toBe(bt);
    expect(snapshots(name)).toEqual(["s0", "s1"]);
    expect(ok("config", "get", name, "volatile.uuid").trim()).toBe(uuid);
    expect(existsSync(volumePath("default", name))).toBe(false);
    expectSame(bt, name, hashes, ["s0", "s1"]);
    // Snapshots on btrfs stay read-only subvolumes.
    expect(spawnSync("btrfs", ["property", "get", "-ts", volumePath(bt, name, "s0"), "ro"], { encoding: "utf8" }).stdout.trim()).toBe("ro=true");
    expect(startsAndReads(name)).toBe("third");
    ok("restore", name, "s0");
    expect(startsAndReads(name)).toBe("first");
    ok("restore", name, "s1");
    const back = rootHash(bt, name);
    ok("move", name, "--storage", "default", "--instance-only");
    expect(rootPool(name)).toBe("default");
    expect(snapshots(name)).toEqual([]);
    expect(rootHash("default", name)).toBe(back);
    expect(existsSync(volumePath(bt, name))).toBe(false);
    expect(existsSync(join(d.dir, "storage-pools", bt, "containers-snapshots", name))).toBe(false);
  });

  it("lxc copy --storage makes a new instance with the snapshots, --instance-only without", () => {
    const { name, hashes, uuid } = prepare("pc");
    const c2 = d.instanceName("pc2");
    const c3 = d.instanceName("pc3");
    ok("copy", name, c2, "--storage", bt);
    expect(rootPool(c2)).toBe(bt);
    expect(snapshots(c2)).toEqual(["s0", "s1"]);
    expect(ok("config", "get", c2, "volatile.uuid").trim()).not.toBe(uuid);
    expectSame(bt, c2, hashes, ["s0", "s1"]);
    expectSame("default", name, hashes, ["s0", "s1"]);
    ok("copy", c2, c3, "--storage", "default", "--instance-only");
    expect(snapshots(c3)).toEqual([]);
    expectSame("default", c3, hashes, []);
    expect(startsAndReads(c2)).toBe("third");
    expect(startsAndReads(c3)).toBe("third");
  });

  it("refuses a stateless move of a running instance and changes nothing", () => {
    const name = d.launch("pr");
    const r = d.lxc("move", name, "--storage", bt, "--stateless");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Instance must be stopped to move between pools statelessly");
    expect(rootPool(name)).toBe("default");
    expect(ok("list", name, "-c", "s", "--format", "csv").trim()).toBe("RUNNING");
  });
});

describe("between projects", () => {
  it("lxc move --target-project and lxc copy --target-project carry snapshots", () => {
    const { name, hashes, uuid } = prepare("jm");
    const copy = `${name}-c`;
    projectInstances.push(name, copy);
    ok("copy", name, copy, "--target-project", p2);
    expect(snapshots(copy, p2)).toEqual(["s0", "s1"]);
    expectSame("default", `${p2}_${copy}`, hashes, ["s0", "s1"]);
    expect(ok("config", "get", copy, "volatile.uuid", "--project", p2).trim()).not.toBe(uuid);
    ok("move", name, "--target-project", p2);
    expect(d.lxc("info", name).code).not.toBe(0);
    expect(snapshots(name, p2)).toEqual(["s0", "s1"]);
    expect(ok("config", "get", name, "volatile.uuid", "--project", p2).trim()).toBe(uuid);
    expectSame("default", `${p2}_${name}`, hashes, ["s0", "s1"]);
    expect(existsSync(volumePath("default", name))).toBe(false);
    expect(startsAndReads(name, p2)).toBe("third");
    expect(startsAndReads(copy, p2)).toBe("third");
  });
});
