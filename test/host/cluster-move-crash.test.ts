// A move between members cut short by kill -9 of the target's or the source's daemon: the
// original is never lost, the half copy (LXD's lxd-move-of-<uuid>) is never listed and is
// removed (by the target at its next start, or by the target itself when the source vanished),
// the move's operation ends as failed, and the instance moves fine afterwards. Three etcd
// members and three nodelxd daemons on 127.0.77.10-12, driven with the stock `lxc` and the API.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formCluster, listedOn, lxcAsync, ok, run, startCluster, waitFor, type ClusterLayout, type TestCluster } from "../helpers/cluster.js";
import type { TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

const LAYOUT: ClusterLayout = { addresses: ["127.0.77.10", "127.0.77.11", "127.0.77.12"], clientPort: 2379, peerPort: 2380 };
const PORT = 8443;
const INSTANCES = ["cf-a", "cf-b"];
/** The payload that makes the copy last (at the pool's rsync.bwlimit) long enough to be cut. */
const PAYLOAD_MB = 24;

let cluster: TestCluster;
let m1: TestDaemon, m2: TestDaemon, m3: TestDaemon;

const volumeDir = (d: TestDaemon, name: string) => join(d.dir, "storage-pools", "default", "containers", name);

/** A stopped instance on `member` holding a random payload (its checksum returned). */
async function withPayload(name: string, member: string, d: TestDaemon): Promise<string> {
  ok(await lxcAsync(m1, "init", "busybox", name, "--target", member));
  const data = randomBytes(PAYLOAD_MB << 20);
  writeFileSync(join(volumeDir(d, name), "rootfs", "payload"), data);
  return (await import("node:crypto")).createHash("sha256").update(data).digest("hex");
}

/** Start moving `name` (on `src`) to `target` through the API; the operation's id. */
async function startMove(src: TestDaemon, name: string, target: string): Promise<string> {
  const r = await src.api("POST", `/1.0/instances/${name}?target=${target}`, { name, migration: true, live: false });
  expect(r.status).toBe(202);
  return r.body.metadata.id as string;
}

/** The staging copy's name of instance `name`. */
async function stagingName(name: string): Promise<string> {
  const uuid = (await m1.api("GET", `/1.0/instances/${name}`)).body.metadata.config["volatile.uuid"];
  expect(uuid).toBeTruthy();
  return `lxd-move-of-${uuid}`;
}

/** Wait until the copy is on its way: its directory on `d` holds part of the payload. */
async function copying(d: TestDaemon, staging: string): Promise<boolean> {
  return waitFor(async () => {
    const dir = join(volumeDir(d, staging), "rootfs");
    if (!existsSync(dir)) return false;
    const r = await lxcAsync(d, "query", "/1.0/instances"); // the copy is never listed, while it runs too
    return !r.stdout.includes(staging) && existsSync(dir);
  }, 60_000, 100);
}

/** The move journal's records as member `d`'s replica has them. */
async function journalled(d: TestDaemon): Promise<number> {
  const out = ok(await lxcAsync(d, "query", "/internal/sql", "-X", "POST", "-d", '{"database":"global","query":"SELECT count(*) AS n FROM nodelxd_instance_moves"}'));
  const n = /"rows":\s*\[\s*\[\s*(\d+)/.exec(out)?.[1];
  if (n === undefined) throw new Error(`unexpected answer: ${out}`);
  return Number(n);
}

const sha = async (d: TestDaemon, name: string) => ok(await lxcAsync(d, "exec", name, "--", "sha256sum", "/payload")).split(" ")[0];

beforeAll(async () => {
  cluster = await startCluster({ layout: LAYOUT, prefix: "cf-move-" });
  [m1, m2, m3] = cluster.daemons;
  await formCluster(cluster.daemons, LAYOUT, PORT);
  ok(await lxcAsync(m1, "image", "import", busyboxImage(), "--alias", "busybox"));
  // A copy of PAYLOAD_MB at 2 MiB/s lasts ~12 s: time to kill a daemon in the middle.
  ok(await lxcAsync(m1, "storage", "set", "default", "rsync.bwlimit", "2MB"));
}, 180_000);

afterAll(async () => {
  for (const n of INSTANCES) await lxcAsync(m1, "delete", "-f", n).catch(() => undefined);
  if (process.env.CLUSTER_KEEP_LOGS) for (const [i, d] of (cluster?.daemons ?? []).entries()) await run("cp", [`${d.dir}.log`, `${process.env.CLUSTER_KEEP_LOGS}/m${i + 1}.log`]);
  await cluster?.stop();
}, 120_000);

describe("a move cut short by kill -9", () => {
  it("of the target: the original stays, the half copy is never listed, a move elsewhere is refused until the target is back, which removes it at start", async () => {
    const sum = await withPayload("cf-a", "m1", m1);
    const staging = await stagingName("cf-a");
    const opId = await startMove(m1, "cf-a", "m2");
    expect(await copying(m2, staging)).toBe(true);
    await m2.kill9();

    // The move fails on the source; the original is where it was, whole.
    const op = (await m1.api("GET", `/1.0/operations/${opId}/wait?timeout=90`)).body.metadata;
    expect(op.status).toBe("Failure");
    expect(op.err).toMatch(/Copy instance operation failed/);
    const seen = await listedOn(m3);
    expect(seen["cf-a"]).toEqual(["STOPPED", "m1"]);
    expect(Object.keys(seen).filter((n) => n.startsWith("lxd-move-of-"))).toEqual([]);
    expect(((await m3.api("GET", "/1.0/instances?recursion=1")).body.metadata as { name: string }[]).map((i) => i.name)).not.toContain(staging);
    // The half copy is still on m2's disk: a move elsewhere first removes it, which needs m2.
    expect(existsSync(volumeDir(m2, staging))).toBe(true);
    const refused = await lxcAsync(m1, "move", "cf-a", "--target", "m3");
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("Failed removing the copy left by an interrupted move");
    expect((await listedOn(m1))["cf-a"]).toEqual(["STOPPED", "m1"]);

    // m2 back: it removes the half copy on its own (record, volume, directory).
    await m2.restart();
    // Its pool is its own directory again, not bound to the first member's (as it was before).
    expect(readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(`${m1.dir}/`) && l.includes(`${m2.dir}/`))).toEqual([]);
    expect(await waitFor(async () => (await m1.api("GET", `/1.0/instances/${staging}`)).status === 404 && !existsSync(volumeDir(m2, staging)), 60_000, 250)).toBe(true);
    expect(ok(await lxcAsync(m2, "query", "/1.0/instances/cf-a")).includes('"location": "m1"')).toBe(true);
    // Nothing left of the move in the journal on any member.
    expect(await waitFor(async () => (await Promise.all([m1, m2, m3].map(journalled))).every((n) => n === 0), 10_000, 250)).toBe(true);

    // And the instance moves now, whole.
    ok(await lxcAsync(m1, "storage", "unset", "default", "rsync.bwlimit"));
    ok(await lxcAsync(m3, "move", "cf-a", "--target", "m2"));
    ok(await lxcAsync(m1, "start", "cf-a"));
    expect(await sha(m3, "cf-a")).toBe(sum);
    expect(existsSync(volumeDir(m1, "cf-a"))).toBe(false);
    ok(await lxcAsync(m1, "stop", "-f", "cf-a"));
  }, 300_000);

  it("of the source: the target drops its half copy at once, the operation ends as failed, the original is whole after the source's restart", async () => {
    ok(await lxcAsync(m1, "storage", "set", "default", "rsync.bwlimit", "2MB"));
    const sum = await withPayload("cf-b", "m1", m1);
    const staging = await stagingName("cf-b");
    const opId = await startMove(m1, "cf-b", "m3");
    expect(await copying(m3, staging)).toBe(true);
    await m1.kill9();

    // The target saw its source vanish: no copy left there, none listed.
    expect(await waitFor(async () => !existsSync(volumeDir(m3, staging)), 60_000, 250)).toBe(true);
    const seen = await listedOn(m2);
    expect(Object.keys(seen).filter((n) => n.startsWith("lxd-move-of-"))).toEqual([]);
    expect(seen["cf-b"]?.[1]).toBe("m1");

    // The source back: the move's operation answers as failed (from any member), the original is whole.
    await m1.restart();
    for (const d of [m1, m2]) {
      const op = await d.api("GET", `/1.0/operations/${opId}`);
      expect(op.status).toBe(200);
      expect(op.body.metadata).toMatchObject({ status: "Failure", err: "Operation interrupted by a daemon restart", description: "Migrating instance", location: "m1" });
    }
    expect(await waitFor(async () => (await Promise.all([m1, m2, m3].map(journalled))).every((n) => n === 0), 60_000, 250)).toBe(true);
    expect((await listedOn(m3))["cf-b"]).toEqual(["STOPPED", "m1"]);
    ok(await lxcAsync(m1, "storage", "unset", "default", "rsync.bwlimit"));
    ok(await lxcAsync(m2, "move", "cf-b", "--target", "m3"));
    ok(await lxcAsync(m2, "start", "cf-b"));
    expect(await sha(m2, "cf-b")).toBe(sum);
    // Every global write of the moves went through the cluster's write lock.
    for (const d of [m1, m2, m3]) expect(readFileSync(`${d.dir}.log`, "utf8")).not.toContain("write outside the lock");
  }, 300_000);
});
