// Per-member storage pools, networks and custom volumes in a cluster, as LXD 5.0.2: three etcd
// members and three nodelxd daemons (127.0.50.10-12; etcd on ports 2479/2480, members' HTTPS on
// 8650), driven with the stock `lxc`. A pool or network is first defined on each member with
// `--target` (its member-specific keys), then created everywhere at once (pending → created);
// custom volumes on a non-shared pool live on one member and requests for them go there.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formCluster, lxcAsync, ok, run, startCluster, waitFor, type ClusterLayout, type Run, type TestCluster } from "../helpers/cluster.js";
import { MAIN, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage, busyboxSplitImage } from "../helpers/image.js";

const LAYOUT: ClusterLayout = { addresses: ["127.0.50.10", "127.0.50.11", "127.0.50.12"], clientPort: 2479, peerPort: 2480 };
const PORT = 8650;

let cluster: TestCluster;
let m1: TestDaemon, m2: TestDaemon, m3: TestDaemon;
const src = (m: string) => join(cluster.root, `pool-${m}`);

/**
 * A member's answer once it has replayed the cluster's latest writes (members read their own
 * replica, which follows the etcd log within moments of a write elsewhere).
 */
async function settled(d: TestDaemon, path: string, until: (m: any) => boolean): Promise<any> {
  let last: any;
  await waitFor(async () => until((last = (await d.api("GET", path)).body.metadata)), 5_000, 100);
  return last;
}

/** The error text of a run that must fail. */
function failed(r: Run): string {
  if (r.code === 0) throw new Error(`expected a failure, got: ${r.stdout}`);
  return r.stderr;
}

beforeAll(async () => {
  cluster = await startCluster({ layout: LAYOUT, prefix: "c3-" });
  [m1, m2, m3] = cluster.daemons;
  await formCluster(cluster.daemons, LAYOUT, PORT);
}, 180_000);

afterAll(async () => {
  for (const v of ["v1", "v2", "v3"]) await lxcAsync(m1, "storage", "volume", "delete", "c3p", v).catch(() => undefined);
  await lxcAsync(m1, "storage", "delete", "c3p").catch(() => undefined);
  await lxcAsync(m1, "network", "delete", "c3br0").catch(() => undefined);
  if (process.env.CLUSTER_KEEP_LOGS) for (const [i, d] of (cluster?.daemons ?? []).entries()) await run("cp", [`${d.dir}.log`, `${process.env.CLUSTER_KEEP_LOGS}/m${i + 1}.log`]);
  await cluster?.stop();
}, 120_000);

describe("storage pools per member", () => {
  it("refuses an untargeted create of a pool no member has defined", async () => {
    expect(failed(await lxcAsync(m1, "storage", "create", "c3p", "dir"))).toContain("Pool not pending on any node (use --target <node> first)");
  });

  it("records a pending pool per member with member-specific keys only", async () => {
    for (const m of ["m1", "m2"]) mkdirSync(src(m));
    expect(ok(await lxcAsync(m1, "storage", "create", "c3p", "dir", `source=${src("m1")}`, "--target", "m1"))).toContain("Storage pool c3p pending on member m1");
    expect(failed(await lxcAsync(m2, "storage", "create", "c3p", "dir", "rsync.bwlimit=10", "--target", "m2"))).toContain('Config key "rsync.bwlimit" may not be used as member-specific key');
    expect(failed(await lxcAsync(m2, "storage", "create", "c3p", "dir", `source=${src("m1")}`, "--target", "m1"))).toContain('The storage pool already defined on member "m1"');
    expect(failed(await lxcAsync(m2, "storage", "create", "c3p", "btrfs", "--target", "m2"))).toContain("Storage pool already exists with a different driver");
    expect(failed(await lxcAsync(m2, "storage", "create", "c3p", "dir", "--target", "m9"))).toContain("Cluster member not found");
    // Any member sees it pending, defined on m1 only, and m1's own source with --target.
    const pool = await settled(m3, "/1.0/storage-pools/c3p", (p) => p?.status === "Pending");
    expect(pool).toMatchObject({ name: "c3p", driver: "dir", status: "Pending", locations: ["m1"], config: {} });
    expect(ok(await lxcAsync(m2, "storage", "list", "-f", "csv"))).toMatch(/c3p,dir,.*PENDING/);
    expect(ok(await lxcAsync(m3, "storage", "get", "c3p", "source", "--target", "m1")).trim()).toBe(src("m1"));
    // Not created on any host yet.
    expect(existsSync(join(src("m1"), "custom"))).toBe(false);
    // Every member must have it before it is created.
    expect(failed(await lxcAsync(m1, "storage", "create", "c3p", "dir"))).toContain("Pool not defined on nodes: m2, m3");
  }, 60_000);

  it("changes a member's own keys with --target while the pool is pending, and only those", async () => {
    mkdirSync(src("m1x"));
    ok(await lxcAsync(m2, "storage", "set", "c3p", `source=${src("m1x")}`, "--target", "m1"));
    expect(ok(await lxcAsync(m3, "storage", "get", "c3p", "source", "--target", "m1")).trim()).toBe(src("m1x"));
    expect(failed(await lxcAsync(m2, "storage", "set", "c3p", "rsync.bwlimit=10", "--target", "m1"))).toContain('Config key "rsync.bwlimit" may not be used as cluster member specific key');
    expect(failed(await lxcAsync(m2, "storage", "set", "c3p", "rsync.bwlimit=10"))).toContain("Cannot update storage pool global config when not in created state");
    // A stale ETag on a member's view is 412.
    const etag = String((await m1.api("GET", "/1.0/storage-pools/c3p?target=m1")).headers.etag);
    ok(await lxcAsync(m1, "storage", "set", "c3p", `source=${src("m1")}`, "--target", "m1"));
    expect(ok(await lxcAsync(m2, "storage", "get", "c3p", "source", "--target", "m1")).trim()).toBe(src("m1"));
    expect((await m1.api("PATCH", "/1.0/storage-pools/c3p?target=m1", { config: { source: src("m1x") } }, { "if-match": etag })).status).toBe(412);
    expect((await m1.api("GET", "/1.0/storage-pools/c3p?target=m1")).body.metadata.config).toEqual({ source: src("m1") });
    expect(failed(await lxcAsync(m1, "storage", "set", "c3p", "size=1GiB", "--target", "m1"))).toContain('Invalid option "size"');
  }, 60_000);

  it("creates the pool on every member at once and shows each member's config with --target", async () => {
    ok(await lxcAsync(m2, "storage", "create", "c3p", "dir", `source=${src("m2")}`, "--target", "m2"));
    ok(await lxcAsync(m1, "storage", "create", "c3p", "dir", "--target", "m3"));
    expect(failed(await lxcAsync(m1, "storage", "create", "c3p", "dir", "source=/tmp/x"))).toContain('Config key "source" is cluster member specific');
    expect(ok(await lxcAsync(m3, "storage", "create", "c3p", "dir", "volume.size=1GiB"))).toContain("Storage pool c3p created");
    const pool = await settled(m1, "/1.0/storage-pools/c3p", (p) => p?.status === "Created");
    expect(pool).toMatchObject({ status: "Created", locations: ["m1", "m2", "m3"], config: { "volume.size": "1GiB" } });
    expect(pool.config.source).toBeUndefined();
    // Each member's pool is on its own source (m3's default under its LXD_DIR).
    expect(existsSync(join(src("m1"), "custom"))).toBe(true);
    expect(existsSync(join(src("m2"), "custom"))).toBe(true);
    expect(existsSync(join(m3.dir, "storage-pools", "c3p", "custom"))).toBe(true);
    const onM2 = (await m1.api("GET", "/1.0/storage-pools/c3p?target=m2")).body.metadata;
    expect(onM2).toMatchObject({ status: "Created", config: { source: src("m2"), "volume.size": "1GiB" } });
    expect(ok(await lxcAsync(m1, "storage", "get", "c3p", "source", "--target", "m3")).trim()).toBe(join(m3.dir, "storage-pools", "c3p"));
    expect(ok(await lxcAsync(m1, "storage", "list", "-f", "csv"))).toMatch(/c3p,dir,.*CREATED/);
    expect(failed(await lxcAsync(m2, "storage", "create", "c3p", "dir"))).toContain("The storage pool is already created");
    expect(failed(await lxcAsync(m2, "storage", "create", "c3p", "dir", "--target", "m2"))).toContain("Storage pool is not in pending state");
  }, 60_000);

  it("updates the shared config from any member (every member told) and refuses member keys there", async () => {
    ok(await lxcAsync(m2, "storage", "set", "c3p", "volume.size=2GiB"));
    expect((await settled(m3, "/1.0/storage-pools/c3p", (p) => p?.config?.["volume.size"] === "2GiB")).config["volume.size"]).toBe("2GiB");
    // Each member keeps its own source.
    expect(ok(await lxcAsync(m1, "storage", "get", "c3p", "source", "--target", "m2")).trim()).toBe(src("m2"));
    expect(failed(await lxcAsync(m2, "storage", "set", "c3p", "source=/tmp/elsewhere"))).toContain('Config key "source" is cluster member specific');
  }, 60_000);

  it("takes a created pool's member keys with --target as LXD 5.0.2 does", async () => {
    // The source of a created pool stays (LXD's error), shared keys are not member keys.
    expect(failed(await lxcAsync(m1, "storage", "set", "c3p", "source=/tmp/elsewhere", "--target", "m2"))).toContain("Pool source cannot be changed when not in pending state");
    expect(failed(await lxcAsync(m1, "storage", "set", "c3p", "volume.size=3GiB", "--target", "m2"))).toContain('Config key "volume.size" may not be used as cluster member specific key');
    // volatile.initial_source is recorded for that member only.
    ok(await lxcAsync(m3, "storage", "set", "c3p", `volatile.initial_source=${src("m2")}`, "--target", "m2"));
    expect(ok(await lxcAsync(m1, "storage", "get", "c3p", "volatile.initial_source", "--target", "m2")).trim()).toBe(src("m2"));
    expect(ok(await lxcAsync(m1, "storage", "get", "c3p", "volatile.initial_source", "--target", "m1")).trim()).toBe("");
    expect((await m1.api("GET", "/1.0/storage-pools/c3p")).body.metadata.config["volatile.initial_source"]).toBeUndefined();
    expect(ok(await lxcAsync(m1, "storage", "get", "c3p", "source", "--target", "m2")).trim()).toBe(src("m2"));
  }, 60_000);

  it("keeps a custom volume on the member it was made on and sends every request for it there", async () => {
    expect(ok(await lxcAsync(m1, "storage", "volume", "create", "c3p", "v1", "--target", "m2"))).toContain("Storage volume v1 created");
    // On m2's source only.
    expect(existsSync(join(src("m2"), "custom", "default_v1"))).toBe(true);
    expect(existsSync(join(src("m1"), "custom", "default_v1"))).toBe(false);
    const vol = await settled(m3, "/1.0/storage-pools/c3p/volumes/custom/v1", (v) => v?.location === "m2");
    expect(vol).toMatchObject({ name: "v1", type: "custom", location: "m2" });
    expect(ok(await lxcAsync(m3, "storage", "volume", "list", "c3p", "-f", "csv"))).toMatch(/custom,v1,.*m2/);
    // Changes from any member reach m2's volume.
    ok(await lxcAsync(m1, "storage", "volume", "set", "c3p", "v1", "user.note=hi"));
    expect(ok(await lxcAsync(m3, "storage", "volume", "get", "c3p", "v1", "user.note")).trim()).toBe("hi");
    ok(await lxcAsync(m3, "storage", "volume", "snapshot", "c3p", "v1", "s1"));
    expect(existsSync(join(src("m2"), "custom-snapshots", "default_v1", "s1"))).toBe(true);
    // Made without a target: on the member asked.
    ok(await lxcAsync(m3, "storage", "volume", "create", "c3p", "v3"));
    expect((await settled(m1, "/1.0/storage-pools/c3p/volumes/custom/v3", (v) => !!v?.location)).location).toBe("m3");
    expect(existsSync(join(m3.dir, "storage-pools", "c3p", "custom", "default_v3"))).toBe(true);
    expect(failed(await lxcAsync(m1, "storage", "volume", "create", "c3p", "v4", "--target", "m9"))).toContain("Member not found");
    ok(await lxcAsync(m1, "storage", "volume", "delete", "c3p", "v3"));
    ok(await lxcAsync(m1, "storage", "volume", "delete", "c3p", "v1"));
    expect(existsSync(join(src("m2"), "custom", "default_v1"))).toBe(false);
    expect(existsSync(join(m3.dir, "storage-pools", "c3p", "custom", "default_v3"))).toBe(false);
  }, 60_000);

  it("has two volumes of one name on two members (lxc --target picks one; without it, LXD's error)", async () => {
    ok(await lxcAsync(m1, "storage", "volume", "create", "c3p", "tw", "--target", "m1", "user.on=m1"));
    ok(await lxcAsync(m3, "storage", "volume", "create", "c3p", "tw", "--target", "m2", "user.on=m2"));
    expect(failed(await lxcAsync(m3, "storage", "volume", "create", "c3p", "tw", "--target", "m2"))).toContain("Volume by that name already exists");
    expect(existsSync(join(src("m1"), "custom", "default_tw"))).toBe(true);
    expect(existsSync(join(src("m2"), "custom", "default_tw"))).toBe(true);
    const listed = ok(await lxcAsync(m3, "storage", "volume", "list", "c3p", "-f", "csv")).split("\n").filter((l) => l.startsWith("custom,tw,"));
    expect(listed.map((l) => l.split(",").pop()).sort()).toEqual(["m1", "m2"]);
    const ambiguous = "Storage volume found on more than one cluster member. Please target a specific member";
    expect(failed(await lxcAsync(m3, "storage", "volume", "show", "c3p", "tw"))).toContain(ambiguous);
    expect(failed(await lxcAsync(m1, "storage", "volume", "delete", "c3p", "tw"))).toContain(ambiguous);
    expect(ok(await lxcAsync(m3, "storage", "volume", "get", "c3p", "tw", "user.on", "--target", "m2")).trim()).toBe("m2");
    ok(await lxcAsync(m3, "storage", "volume", "set", "c3p", "tw", "user.note=two", "--target", "m2"));
    expect(ok(await lxcAsync(m2, "storage", "volume", "get", "c3p", "tw", "user.note", "--target", "m1")).trim()).toBe("");
    ok(await lxcAsync(m2, "storage", "volume", "snapshot", "c3p", "tw", "s1", "--target", "m1"));
    expect(existsSync(join(src("m1"), "custom-snapshots", "default_tw", "s1"))).toBe(true);
    expect(existsSync(join(src("m2"), "custom-snapshots", "default_tw"))).toBe(false);
    ok(await lxcAsync(m1, "storage", "volume", "rename", "c3p", "tw", "tw2", "--target", "m2"));
    expect(existsSync(join(src("m2"), "custom", "default_tw2"))).toBe(true);
    // The name is m1's alone now.
    expect(ok(await lxcAsync(m3, "storage", "volume", "get", "c3p", "tw", "user.on")).trim()).toBe("m1");
    ok(await lxcAsync(m1, "storage", "volume", "delete", "c3p", "tw"));
    ok(await lxcAsync(m1, "storage", "volume", "delete", "c3p", "tw2"));
    expect(existsSync(join(src("m1"), "custom", "default_tw"))).toBe(false);
    expect(existsSync(join(src("m2"), "custom", "default_tw2"))).toBe(false);
  }, 60_000);

  it("takes a member's volume's scheduled snapshots on that member, not on the leader", async () => {
    ok(await lxcAsync(m1, "storage", "volume", "create", "c3p", "v2", "--target", "m3", "snapshots.schedule=* * * * *"));
    const snaps = join(m3.dir, "storage-pools", "c3p", "custom-snapshots", "default_v2");
    const taken = await waitFor(async () => {
      const r = await m1.api("GET", "/1.0/storage-pools/c3p/volumes/custom/v2/snapshots");
      return r.status === 200 && (r.body.metadata as string[]).length > 0;
    }, 80_000, 1000);
    expect(taken).toBe(true);
    expect(existsSync(join(snaps, "snap0"))).toBe(true);
    ok(await lxcAsync(m2, "storage", "volume", "delete", "c3p", "v2"));
    expect(existsSync(join(m3.dir, "storage-pools", "c3p", "custom", "default_v2"))).toBe(false);
  }, 120_000);

  it("settles a member's own half-created volume once it is back after a restart, everywhere, and leaves another member's", async () => {
    ok(await lxcAsync(m1, "storage", "volume", "create", "c3p", "v-crash", "--target", "m3"));
    ok(await lxcAsync(m1, "storage", "volume", "create", "c3p", "v-busy", "--target", "m2"));
    // As a crash mid-create leaves them (and as another member's create looks while under way).
    const sql = (d: TestDaemon, q: string) => d.cli("sql", "global", q);
    expect(sql(m1, "UPDATE storage_volumes SET state = 'creating' WHERE name IN ('v-crash', 'v-busy')").code).toBe(0);
    const states = (d: TestDaemon) => sql(d, "SELECT name, state FROM storage_volumes WHERE name IN ('v-crash', 'v-busy') ORDER BY name").stdout;
    expect(await waitFor(async () => (states(m3).match(/creating/g) ?? []).length === 2)).toBe(true);
    await m3.restart();
    for (const d of [m1, m2, m3]) expect(await waitFor(async () => !states(d).includes("v-crash"))).toBe(true);
    expect(existsSync(join(m3.dir, "storage-pools", "c3p", "custom", "default_v-crash"))).toBe(false);
    for (const d of [m1, m3]) expect(states(d)).toMatch(/v-busy\s*\|\s*creating/);
    expect(existsSync(join(src("m2"), "custom", "default_v-busy"))).toBe(true);
    expect(sql(m1, "UPDATE storage_volumes SET state = 'created' WHERE name = 'v-busy'").code).toBe(0);
    expect(await waitFor(async () => states(m2).includes("created"))).toBe(true);
    ok(await lxcAsync(m1, "storage", "volume", "delete", "c3p", "v-busy"));
  }, 120_000);

  it("deletes the pool from every member", async () => {
    expect(ok(await lxcAsync(m2, "storage", "delete", "c3p"))).toContain("Storage pool c3p deleted");
    expect(existsSync(join(src("m1"), "custom"))).toBe(false);
    expect(existsSync(join(src("m2"), "custom"))).toBe(false);
    expect(existsSync(join(m3.dir, "storage-pools", "c3p"))).toBe(false);
    expect((await settled(m1, "/1.0/storage-pools?recursion=0", (l) => !l.includes("/1.0/storage-pools/c3p"))).includes("/1.0/storage-pools/c3p")).toBe(false);
  }, 60_000);

  it("deletes a pool still pending without touching any member's host", async () => {
    ok(await lxcAsync(m1, "storage", "create", "c3q", "dir", "--target", "m2"));
    ok(await lxcAsync(m1, "storage", "delete", "c3q"));
    expect(failed(await lxcAsync(m1, "storage", "show", "c3q"))).toContain("Storage pool not found");
  }, 30_000);
});

describe("networks per member", () => {
  const EXT = "c3ext0";
  beforeAll(async () => {
    ok(await run("ip", ["link", "add", EXT, "type", "veth", "peer", "name", "c3ext1"]));
  });
  afterAll(async () => {
    await run("ip", ["link", "del", EXT]);
    await run("ip", ["link", "del", "c3br0"]);
  });

  it("records a pending bridge per member, refuses shared keys there, and creates it everywhere", async () => {
    expect(failed(await lxcAsync(m1, "network", "create", "c3br0", "ipv4.address=none"))).toContain("Network not pending on any node (use --target <node> first)");
    expect(ok(await lxcAsync(m1, "network", "create", "c3br0", `bridge.external_interfaces=${EXT}`, "--target", "m1"))).toContain("Network c3br0 pending on member m1");
    expect(failed(await lxcAsync(m1, "network", "create", "c3br0", "ipv4.address=none", "--target", "m2"))).toContain('Config key "ipv4.address" may not be used as member-specific key');
    expect(failed(await lxcAsync(m2, "network", "create", "c3br0", "--target", "m1"))).toContain('The network is already defined on member "m1"');
    const pending = await settled(m2, "/1.0/networks/c3br0", (n) => n?.status === "Pending");
    expect(pending).toMatchObject({ name: "c3br0", type: "bridge", managed: true, status: "Pending", locations: ["m1"] });
    expect(failed(await lxcAsync(m1, "network", "create", "c3br0", "ipv4.address=none"))).toContain("Network not defined on nodes: m2, m3");
    ok(await lxcAsync(m1, "network", "create", "c3br0", "--target", "m2"));
    ok(await lxcAsync(m1, "network", "create", "c3br0", "--target", "m3"));
    expect(failed(await lxcAsync(m1, "network", "create", "c3br0", `bridge.external_interfaces=${EXT}`))).toContain('Config key "bridge.external_interfaces" is cluster member specific');
    expect(ok(await lxcAsync(m1, "network", "create", "c3br0", "ipv4.address=none", "ipv6.address=none"))).toContain("Network c3br0 created");
    const net = await settled(m3, "/1.0/networks/c3br0", (n) => n?.status === "Created");
    expect(net).toMatchObject({ status: "Created", locations: ["m1", "m2", "m3"], config: { "ipv4.address": "none", "ipv6.address": "none" } });
    expect(net.config["bridge.external_interfaces"]).toBeUndefined();
    // m1's own key, shown with --target and applied on m1's host.
    expect(ok(await lxcAsync(m3, "network", "get", "c3br0", "bridge.external_interfaces", "--target", "m1")).trim()).toBe(EXT);
    expect(ok(await lxcAsync(m3, "network", "get", "c3br0", "bridge.external_interfaces", "--target", "m2")).trim()).toBe("");
    expect(ok(await run("ip", ["-o", "link", "show", EXT]))).toContain("master c3br0");
    expect(failed(await lxcAsync(m2, "network", "create", "c3br0", "ipv4.address=none"))).toContain("The network is already created");
  }, 60_000);

  it("applies an update on every member keeping each member's own keys, refuses member keys without a target, and changes one member's keys with one", async () => {
    ok(await lxcAsync(m3, "network", "set", "c3br0", "bridge.mtu=1400"));
    expect(ok(await run("ip", ["-o", "link", "show", "c3br0"]))).toContain("mtu 1400");
    // m1 applied it with its own bridge.external_interfaces: the interface stays in the bridge.
    expect(ok(await run("ip", ["-o", "link", "show", EXT]))).toContain("master c3br0");
    expect((await settled(m1, "/1.0/networks/c3br0", (n) => n?.config?.["bridge.mtu"] === "1400")).config["bridge.mtu"]).toBe("1400");
    expect(failed(await lxcAsync(m2, "network", "set", "c3br0", `bridge.external_interfaces=${EXT}`))).toContain('Config key "bridge.external_interfaces" is cluster member specific');
    // With --target: that member's own keys only, on its host.
    expect(failed(await lxcAsync(m2, "network", "set", "c3br0", "bridge.mtu=1300", "--target", "m1"))).toContain('Config key "bridge.mtu" may not be used as member-specific key');
    ok(await lxcAsync(m2, "network", "unset", "c3br0", "bridge.external_interfaces", "--target", "m1"));
    expect(ok(await run("ip", ["-o", "link", "show", EXT]))).not.toContain("master c3br0");
    expect(ok(await lxcAsync(m1, "network", "get", "c3br0", "bridge.external_interfaces", "--target", "m1")).trim()).toBe("");
  }, 60_000);

  it("deletes the network from every member", async () => {
    expect(ok(await lxcAsync(m3, "network", "delete", "c3br0"))).toContain("Network c3br0 deleted");
    expect((await run("ip", ["link", "show", "c3br0"])).code).not.toBe(0);
    expect(failed(await lxcAsync(m1, "network", "show", "c3br0"))).toContain("Network not found");
  }, 60_000);
});

describe("background image work in a cluster", () => {
  it("expires a cached image on the leader (its writes taking the write lock) and every member sees it gone", async () => {
    const fp = ok(await lxcAsync(m2, "image", "import", busyboxImage())).match(/[0-9a-f]{64}/)?.[0];
    expect(fp).toBeTruthy();
    await settled(m1, `/1.0/images/${fp}`, (i) => i?.fingerprint === fp);
    expect(existsSync(join(m2.dir, "images", fp!))).toBe(true);
    // A cached image last used long ago (as LXD's own tests age one), then expiry turned on: the leader deletes it.
    ok(await run(process.execPath, [MAIN, "sql", "global", `UPDATE images SET cached = 1, last_use_date = '2000-01-01T00:00:00Z' WHERE fingerprint = '${fp}'`], { env: { ...process.env, LXD_DIR: m3.dir } }));
    ok(await lxcAsync(m1, "config", "set", "images.remote_cache_expiry", "1"));
    for (const d of [m1, m2, m3]) expect(await waitFor(async () => (await d.api("GET", `/1.0/images/${fp}`)).status === 404, 20_000, 250)).toBe(true);
    // The member that imported it drops its copy of the files when the deletion reaches its replica.
    expect(await waitFor(async () => !existsSync(join(m2.dir, "images", fp!)), 10_000, 250)).toBe(true);
    // No write went outside the lock (a member appending without it would have raced for a log index).
    for (const d of [m1, m2, m3]) expect(readFileSync(`${d.dir}.log`, "utf8")).not.toContain("write outside the lock");
  }, 60_000);

  it("copies a split image's two files to the member that creates an instance from it", async () => {
    const split = busyboxSplitImage();
    const fp = ok(await lxcAsync(m2, "image", "import", split.meta, split.rootfs, "--alias", "bbsplit")).match(/[0-9a-f]{64}/)?.[0];
    expect(fp).toBeTruthy();
    await settled(m3, "/1.0/images/aliases/bbsplit", (a) => a?.target === fp);
    expect(existsSync(join(m3.dir, "images", fp!))).toBe(false);
    ok(await lxcAsync(m1, "init", "bbsplit", "s1", "--target", "m3"));
    expect(existsSync(join(m3.dir, "images", fp!))).toBe(true);
    expect(existsSync(join(m3.dir, "images", `${fp}.rootfs`))).toBe(true);
    const out = ok(await lxcAsync(m1, "file", "pull", "s1/bin/busybox", "-")).length;
    expect(out).toBeGreaterThan(100_000);
    ok(await lxcAsync(m1, "delete", "s1"));
    ok(await lxcAsync(m1, "image", "delete", fp!));
  }, 90_000);
});
