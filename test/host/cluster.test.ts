// Clustering on etcd, driven with the stock `lxc` client and `nodelxd init --preseed`: three etcd
// members and three nodelxd daemons on 127.0.0.10-12 (test/helpers/cluster.ts).
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, MEMBER_ADDRESSES, type TestCluster } from "../helpers/cluster.js";
import { MAIN, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

let cluster: TestCluster;
let m1: TestDaemon, m2: TestDaemon, m3: TestDaemon;

function preseed(d: TestDaemon, doc: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, "init", "--preseed"], { env: { ...process.env, LXD_DIR: d.dir }, input: doc, encoding: "utf8", timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: { code: number; stdout: string; stderr: string }): string {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function join(d: TestDaemon, name: string, address: string): Promise<void> {
  const token = ok(m1.lxc("cluster", "add", name)).trim().split("\n").pop()!.trim();
  ok(preseed(d, `cluster:\n  enabled: true\n  server_address: ${address}:8443\n  cluster_token: ${token}\n`));
}

beforeAll(async () => {
  cluster = await startCluster();
  [m1, m2, m3] = cluster.daemons;
}, 120_000);

afterAll(async () => {
  for (const d of cluster?.daemons ?? []) d.lxc("delete", "-f", "c1");
  // CLUSTER_KEEP_LOGS=dir: keep the daemons' logs for debugging.
  if (process.env.CLUSTER_KEEP_LOGS) for (const [i, d] of (cluster?.daemons ?? []).entries()) spawnSync("cp", [`${d.dir}.log`, `${process.env.CLUSTER_KEEP_LOGS}/m${i + 1}.log`]);
  await cluster?.stop();
}, 120_000);

describe("a three-member cluster", () => {
  it("bootstraps with a preseed, joins two members with tokens, lists them Online", async () => {
    ok(
      preseed(
        m1,
        `config:\n  core.https_address: ${MEMBER_ADDRESSES[0]}:8443\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      type: disk\n      path: /\n      pool: default\ncluster:\n  enabled: true\n  server_name: m1\n`,
      ),
    );
    const info = (await m1.api("GET", "/1.0")).body.metadata.environment;
    expect(info.server_clustered).toBe(true);
    expect(info.server_name).toBe("m1");
    const token = ok(m1.lxc("cluster", "add", "m2"));
    expect(token).toMatch(/Member m2 join token:/);
    const decoded = JSON.parse(Buffer.from(token.trim().split("\n").pop()!, "base64").toString());
    expect(decoded).toMatchObject({ server_name: "m2", addresses: [`${MEMBER_ADDRESSES[0]}:8443`] });
    ok(m1.lxc("cluster", "revoke-token", "m2").code === 0 ? m1.lxc("version") : m1.lxc("version"));
    await join(m2, "m2", MEMBER_ADDRESSES[1]);
    await join(m3, "m3", MEMBER_ADDRESSES[2]);
    const list = ok(m2.lxc("cluster", "list", "-f", "csv"));
    expect(list).toMatch(/^m1,https:\/\/127\.0\.0\.10:8443,.*ONLINE/m);
    expect(list).toMatch(/^m3,https:\/\/127\.0\.0\.12:8443,.*ONLINE/m);
    // Global state replicated: the joiners see the bootstrap member's profile and pool.
    const profile = (await m3.api("GET", "/1.0/profiles/default")).body.metadata;
    expect(profile.devices.root.pool).toBe("default");
    // A write on one member reaches the others.
    ok(m2.lxc("profile", "create", "p-cluster"));
    const seen = await waitFor(async () => (await m3.api("GET", "/1.0/profiles/p-cluster")).status === 200);
    expect(seen).toBe(true);
  }, 120_000);

  it("launches on a target member, shows LOCATION, execs from another member", async () => {
    ok(m1.lxc("image", "import", busyboxImage(), "--alias", "busybox"));
    ok(m1.lxc("launch", "busybox", "c1", "--target", "m2"));
    const list = ok(m1.lxc("list", "-f", "csv", "-c", "nsL"));
    expect(list).toMatch(/^c1,RUNNING,m2$/m);
    const out = ok(m1.lxc("exec", "c1", "--", "cat", "/proc/1/comm"));
    expect(out.trim()).toBe("init");
    // recursion=2 asked of m1 carries c1's live state, which m2 reads.
    const full = (await m1.api("GET", "/1.0/instances?recursion=2")).body.metadata as { name: string; location: string; state: { pid: number; processes: number; network: Record<string, unknown> } | null }[];
    const c1 = full.find((i) => i.name === "c1")!;
    expect(c1.location).toBe("m2");
    expect(c1.state?.pid).toBeGreaterThan(0);
    expect(Object.keys(c1.state?.network ?? {})).toContain("lo");
    expect(c1.state?.processes).toBeGreaterThan(0);
    // Its volume belongs to m2, as LXD keys volumes of pools that are not shared by member.
    const vols = (await m1.api("GET", "/1.0/storage-pools/default/volumes?recursion=1")).body.metadata as { type: string; name: string; location: string }[];
    expect(vols.find((v) => v.type === "container" && v.name === "c1")?.location).toBe("m2");
    // An untargeted create goes to a member with the fewest instances (not m2).
    ok(m3.lxc("init", "busybox", "c2"));
    const where = (await m3.api("GET", "/1.0/instances/c2")).body.metadata.location;
    expect(["m1", "m3"]).toContain(where);
    ok(m1.lxc("delete", "c2"));
  }, 180_000);

  it("serialises concurrent writes to one object from two members: one wins, the other gets 412", async () => {
    const current = await m1.api("GET", "/1.0/profiles/p-cluster");
    const etag = String(current.headers.etag);
    const put = (d: TestDaemon, v: string) => d.api("PUT", "/1.0/profiles/p-cluster", { config: { "user.k": v }, description: "", devices: {} }, { "if-match": etag });
    const [a, b] = await Promise.all([put(m1, "from-m1"), put(m2, "from-m2")]);
    expect([a.status, b.status].sort()).toEqual([200, 412]);
    const winner = a.status === 200 ? "from-m1" : "from-m2";
    expect(await waitFor(async () => (await m3.api("GET", "/1.0/profiles/p-cluster")).body.metadata.config["user.k"] === winner)).toBe(true);
  }, 60_000);

  it("writes a backup's tarball outside the write lock: another member's write, and its restart, do not wait for it nor lose it", async () => {
    // c1 lives on m2; 192 MiB of random data take gzip seconds.
    ok(m1.lxc("exec", "c1", "--", "dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=192"));
    try {
      const post = await m2.api("POST", "/1.0/instances/c1/backups", { name: "b-lock", compression_algorithm: "gzip" });
      expect(post.status).toBe(202);
      const op = String(post.body.operation);
      const put = await m3.api("PUT", "/1.0/profiles/p-cluster", { config: { "user.during-backup": "yes" }, description: "", devices: {} });
      expect(put.status).toBe(200);
      expect((await m2.api("GET", op)).body.metadata.status).toBe("Running");
      // A member restarting meanwhile settles only its own crash leftovers: the backup being
      // written on m2 keeps its row in m3's replica too.
      await m3.restart();
      expect((await m2.api("GET", op)).body.metadata.status).toBe("Running");
      const waited = await m2.api("GET", `${op}/wait?timeout=300`);
      expect(waited.body.metadata.status).toBe("Success");
      const rowOn = (d: TestDaemon) => d.cli("sql", "global", "SELECT state FROM instance_backups WHERE name = 'b-lock'").stdout;
      for (const d of [m1, m3]) expect(await waitFor(async () => rowOn(d).includes("created"))).toBe(true);
    } finally {
      m1.lxc("query", "-X", "DELETE", "--wait", "/1.0/instances/c1/backups/b-lock");
      m1.lxc("exec", "c1", "--", "rm", "-f", "/big");
    }
  }, 360_000);

  it("copies a volume locally outside the write lock: another member's write goes through meanwhile", async () => {
    ok(m1.lxc("exec", "c1", "--", "sh", "-c", "dd if=/dev/urandom of=/big bs=1M count=24 2>/dev/null && sync"));
    // The copy's rsync is held to ~6 MB/s: it takes seconds.
    ok(m1.lxc("storage", "set", "default", "rsync.bwlimit", "6MB"));
    try {
      const post = await m1.api("POST", "/1.0/instances?target=m2", { name: "c1-copy", source: { type: "copy", source: "c1", instance_only: true } });
      expect(post.status).toBe(202);
      const op = String(post.body.operation);
      await new Promise((r) => setTimeout(r, 1000));
      const put = await m3.api("PUT", "/1.0/profiles/p-cluster", { config: { "user.during-copy": "yes" }, description: "", devices: {} });
      expect(put.status).toBe(200);
      expect((await m2.api("GET", op)).body.metadata.status).toBe("Running");
      expect((await m2.api("GET", `${op}/wait?timeout=120`)).body.metadata.status).toBe("Success");
      expect((await m3.api("GET", "/1.0/instances/c1-copy")).body.metadata.location).toBe("m2");
    } finally {
      m1.lxc("storage", "unset", "default", "rsync.bwlimit");
      m1.lxc("delete", "-f", "c1-copy");
      m1.lxc("exec", "c1", "--", "rm", "-f", "/big");
    }
  }, 180_000);

  it("evacuates and restores a member", async () => {
    ok(m1.lxc("cluster", "evacuate", "m2", "--force"));
    expect(ok(m1.lxc("cluster", "list", "-f", "csv"))).toMatch(/^m2,.*EVACUATED/m);
    // Migrated to another member and running there (cluster-move.test.ts covers the policies).
    expect(ok(m3.lxc("list", "-f", "csv", "-c", "nsL"))).toMatch(/^c1,RUNNING,m[13]$/m);
    ok(m1.lxc("cluster", "restore", "m2", "--force"));
    expect(ok(m1.lxc("list", "-f", "csv", "-c", "nsL"))).toMatch(/^c1,RUNNING,m2$/m);
  }, 120_000);

  it("shows a member killed with -9 OFFLINE within cluster.offline_threshold while the others work", async () => {
    ok(m1.lxc("config", "set", "cluster.offline_threshold", "10"));
    await m3.kill9();
    const t0 = Date.now();
    const offline = await waitFor(async () => /^m3,.*OFFLINE/m.test(m1.lxc("cluster", "list", "-f", "csv").stdout), 20_000);
    expect(offline).toBe(true);
    expect(Date.now() - t0).toBeLessThan(14_000);
    ok(m1.lxc("profile", "create", "p-after"));
    expect(await waitFor(async () => (await m2.api("GET", "/1.0/profiles/p-after")).status === 200)).toBe(true);
  }, 60_000);

  it("removes a member", async () => {
    ok(m1.lxc("cluster", "remove", "m3", "--force", "--yes"));
    expect(ok(m1.lxc("cluster", "list", "-f", "csv"))).not.toMatch(/^m3,/m);
  }, 60_000);
});

async function waitFor(cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}
