// `nodelxd cluster recover-from-quorum-loss`: three etcd members and three nodelxd daemons
// (127.0.60.20-22; etcd on 2379/2380, members' HTTPS on 8443). Two members are killed, daemon
// and etcd (quorum lost); on the survivor, with its daemon and etcd stopped, one command makes its
// etcd a one-member cluster (from its data directory, then again from a snapshot) and rewrites the
// membership; started again, the cluster answers and takes writes with the stock `lxc`.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdReady, formCluster, lxcAsync, ok, run, spawnEtcdMember, startCluster, waitFor, type ClusterLayout, type Run, type TestCluster } from "../helpers/cluster.js";
import { MAIN, type TestDaemon } from "../helpers/daemon.js";

const LAYOUT: ClusterLayout = { addresses: ["127.0.60.20", "127.0.60.21", "127.0.60.22"], clientPort: 2379, peerPort: 2380 };
const PORT = 8443;

let cluster: TestCluster;
let m1: TestDaemon, m2: TestDaemon, m3: TestDaemon;

const recover = (d: TestDaemon, args: string[], input = ""): Promise<Run> =>
  run(process.execPath, [MAIN, "cluster", "recover-from-quorum-loss", ...args], { env: { ...process.env, LXD_DIR: d.dir }, input, timeoutMs: 90_000 });

/** Stop a daemon and keep its directory (SIGTERM, wait). */
async function stopKeeping(d: TestDaemon): Promise<void> {
  const p = d.proc;
  if (p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise<void>((r) => p.once("exit", () => r()));
  p.kill("SIGTERM");
  await gone;
}

/** Stop m1's daemon and etcd (SIGTERM: a clean stop), as the command requires. */
async function stopSurvivor(): Promise<void> {
  await stopKeeping(m1);
  const e0 = cluster.etcd[0];
  if (e0.proc.exitCode === null && e0.proc.signalCode === null) {
    const gone = new Promise<void>((r) => e0.proc.once("exit", () => r()));
    e0.proc.kill("SIGTERM");
    await gone;
  }
}

/** Start m1's etcd (normally, on its data directory) and daemon again. */
async function startSurvivor(): Promise<void> {
  cluster.etcd[0] = spawnEtcdMember(cluster.root, 0, 3, LAYOUT);
  await etcdReady(cluster.etcd[0], LAYOUT);
  await m1.restart();
}

async function listed(): Promise<Record<string, string[]>> {
  const out = ok(await lxcAsync(m1, "cluster", "list", "-f", "csv"));
  return Object.fromEntries(out.trim().split("\n").map((l) => l.split(",")).map((f) => [f[0], f]));
}

beforeAll(async () => {
  cluster = await startCluster({ layout: LAYOUT, prefix: "etcdback-" });
  [m1, m2, m3] = cluster.daemons;
  await formCluster(cluster.daemons, LAYOUT, PORT);
}, 180_000);

afterAll(async () => {
  if (process.env.CLUSTER_KEEP_LOGS) for (const [i, d] of (cluster?.daemons ?? []).entries()) await run("cp", [`${d.dir}.log`, `${process.env.CLUSTER_KEEP_LOGS}/m${i + 1}.log`]);
  await cluster?.stop();
}, 120_000);

describe("recover-from-quorum-loss", () => {
  it("refuses while the daemon runs, as LXD", async () => {
    const r = await recover(m1, ["--quiet", "--etcd-data-dir", join(cluster.root, "etcd0")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Error: The LXD daemon is running, please stop it first.");
  });

  it("saves an etcd snapshot while the cluster is whole (for the snapshot run below)", async () => {
    ok(await lxcAsync(m1, "profile", "create", "before-snap"));
    const snap = join(cluster.root, "snap.db");
    ok(await run("etcdctl", ["--endpoints", `http://${LAYOUT.addresses[0]}:${LAYOUT.clientPort}`, "snapshot", "save", snap], { env: { ...process.env, ETCDCTL_API: "3" } }));
    expect(existsSync(snap)).toBe(true);
    ok(await lxcAsync(m1, "profile", "create", "after-snap"));
  });

  it("brings the cluster back on the survivor's etcd data, twice the same", async () => {
    // Lose two of three: daemons and etcd of m2 and m3.
    await Promise.all([m2.kill9(), m3.kill9(), cluster.etcd[1].kill(), cluster.etcd[2].kill()]);
    await stopSurvivor();
    const dataDir = join(cluster.root, "etcd0");
    const aborted = await recover(m1, ["--etcd-data-dir", dataDir], "no\n");
    expect(aborted.stdout).toContain("Do you want to proceed? (yes/no): ");
    expect(aborted.stderr).toContain("Error: Recover operation aborted");
    const t0 = Date.now();
    const first = await recover(m1, ["--quiet", "--etcd-data-dir", dataDir]);
    const took = Date.now() - t0;
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/etcd member [0-9a-f]+ \(http:\/\/127\.0\.60\.20:2380\) is now the only member of its cluster/);
    expect(first.stdout).toContain("Former members kept (Offline; remove them with \"lxc cluster remove <member-name> --force\"): m2, m3");
    console.log(`recover-from-quorum-loss took ${took} ms`);
    // Idempotent: the same command again leaves the same one-member cluster.
    const second = await recover(m1, ["--quiet", "--etcd-data-dir", dataDir]);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/etcd member [0-9a-f]+ \(http:\/\/127\.0\.60\.20:2380\) is now the only member of its cluster/);

    await startSurvivor();
    const members = await listed();
    expect(members.m1).toContain("ONLINE");
    expect(members.m1.join(",")).toContain("database");
    expect(members.m2).toContain("OFFLINE");
    expect(members.m3).toContain("OFFLINE");
    expect(members.m2.join(",")).not.toMatch(/database(?!-)/);
    // Writes work again, within moments of the start.
    const t1 = Date.now();
    expect(await waitFor(async () => (await lxcAsync(m1, "profile", "create", "after-recovery")).code === 0, 10_000, 500)).toBe(true);
    console.log(`first write after restart took ${Date.now() - t1} ms`);
    expect(ok(await lxcAsync(m1, "profile", "list", "-f", "csv"))).toMatch(/after-recovery/);
    // The etcd cluster has one member.
    const etcdMembers = ok(await run("etcdctl", ["--endpoints", `http://${LAYOUT.addresses[0]}:${LAYOUT.clientPort}`, "member", "list"], { env: { ...process.env, ETCDCTL_API: "3" } }));
    expect(etcdMembers.trim().split("\n")).toHaveLength(1);
    // A former member goes for good with --force, as LXD.
    ok(await lxcAsync(m1, "cluster", "remove", "m3", "--force", "--yes"));
    expect(Object.keys(await listed()).sort()).toEqual(["m1", "m2"]);
  }, 180_000);

  it("rebuilds the survivor's etcd from a snapshot instead (the state at the snapshot)", async () => {
    await stopSurvivor();
    const dataDir = join(cluster.root, "etcd0");
    const missingName = await recover(m1, ["--quiet", "--etcd-data-dir", dataDir, "--etcd-snapshot", join(cluster.root, "snap.db")]);
    expect(missingName.stderr).toContain("Error: --etcd-name is required with --etcd-snapshot");
    const r = await recover(m1, ["--quiet", "--etcd-data-dir", dataDir, "--etcd-snapshot", join(cluster.root, "snap.db"), "--etcd-name", "e0"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/Kept the former etcd data directory as .*etcd0\.before-recovery-\d+/);
    expect(r.stdout).toContain("etcd member e0 (http://127.0.60.20:2380) is now the only member of its cluster");
    await startSurvivor();
    // The cluster as it was at the snapshot: three members (m2, m3 Offline), the profile made before it only.
    const members = await listed();
    expect(Object.keys(members).sort()).toEqual(["m1", "m2", "m3"]);
    expect(members.m1).toContain("ONLINE");
    const profiles = ok(await lxcAsync(m1, "profile", "list", "-f", "csv"));
    expect(profiles).toMatch(/before-snap/);
    expect(profiles).not.toMatch(/after-snap|after-recovery/);
    expect(await waitFor(async () => (await lxcAsync(m1, "profile", "create", "after-restore")).code === 0, 10_000, 500)).toBe(true);
    expect(ok(await lxcAsync(m1, "profile", "show", "after-restore"))).toContain("name: after-restore");
  }, 180_000);
});
