// Cluster-wide background work and operations, on three etcd members and three nodelxd daemons
// (127.0.0.100-102; etcd on ports 2400/2401, members' HTTPS on 8600), driven with the stock `lxc`:
// the etcd leader election (the `database-leader` role moves when the leader is killed with -9),
// scheduled snapshots taken once per minute by the instance's member only, before and after the
// leader dies, operations listed, shown and cancelled from any member, and cluster groups.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formCluster, lxcAsync, ok, run, startCluster, waitFor, type ClusterLayout, type TestCluster } from "../helpers/cluster.js";
import type { TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";
import { connect as tlsConnect } from "node:tls";
import { certFingerprint, generateCertificate } from "../../src/daemon/certificates.js";

/** The sha256 fingerprint of the certificate a TLS listener presents. */
function servedFingerprint(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host, port, rejectUnauthorized: false }, () => {
      const fp = certFingerprint(`-----BEGIN CERTIFICATE-----\n${s.getPeerCertificate().raw.toString("base64")}\n-----END CERTIFICATE-----\n`);
      s.destroy();
      resolve(fp);
    });
    s.once("error", reject);
  });
}

const LAYOUT: ClusterLayout = { addresses: ["127.0.0.100", "127.0.0.101", "127.0.0.102"], clientPort: 2400, peerPort: 2401 };
const PORT = 8600;

let cluster: TestCluster;
let m1: TestDaemon, m2: TestDaemon, m3: TestDaemon;

/** Member name → roles, as a member answers. */
async function roles(d: TestDaemon): Promise<Record<string, string[]>> {
  const r = await d.api("GET", "/1.0/cluster/members?recursion=1");
  return Object.fromEntries((r.body.metadata as { server_name: string; roles: string[] }[]).map((m) => [m.server_name, m.roles]));
}

async function leaders(d: TestDaemon): Promise<string[]> {
  return Object.entries(await roles(d))
    .filter(([, r]) => r.includes("database-leader"))
    .map(([n]) => n);
}

beforeAll(async () => {
  cluster = await startCluster({ layout: LAYOUT, prefix: "cl2-" });
  [m1, m2, m3] = cluster.daemons;
  await formCluster(cluster.daemons, LAYOUT, PORT);
}, 180_000);

afterAll(async () => {
  for (const d of cluster?.daemons ?? []) await lxcAsync(d, "delete", "-f", "s1").catch(() => undefined);
  // CLUSTER_KEEP_LOGS=dir: keep the daemons' logs for debugging.
  if (process.env.CLUSTER_KEEP_LOGS) for (const [i, d] of (cluster?.daemons ?? []).entries()) await run("cp", [`${d.dir}.log`, `${process.env.CLUSTER_KEEP_LOGS}/m${i + 1}.log`]);
  await cluster?.stop();
}, 120_000);

describe("cluster leader, scheduled work and operations", () => {
  it("elects exactly one leader, shown as the database-leader role on every member", async () => {
    expect(await waitFor(async () => (await leaders(m3)).length === 1, 15_000)).toBe(true);
    const [leader] = await leaders(m3);
    expect(leader).toBe("m1");
    expect(await leaders(m2)).toEqual(["m1"]);
    expect((await roles(m1)).m1).toEqual(expect.arrayContaining(["database", "database-leader"]));
  }, 30_000);

  it("lists every member's operations with their location, and shows and cancels one through any member", async () => {
    // A join token is a running operation on the member that issued it.
    ok(await lxcAsync(m2, "cluster", "add", "m9"));
    const listed = await m3.api("GET", "/1.0/operations?recursion=1");
    expect(listed.status).toBe(200);
    const running = (listed.body.metadata.running ?? []) as { id: string; class: string; location: string }[];
    const token = running.find((op) => op.class === "token" && (op as { metadata?: { serverName?: string } }).metadata?.serverName === "m9");
    expect(token?.location).toBe("m2");
    // Not recursive: the urls include it too.
    const urls = (await m1.api("GET", "/1.0/operations")).body.metadata.running as string[];
    expect(urls).toContain(`/1.0/operations/${token!.id}`);
    // The stock client's table has a LOCATION column in a cluster.
    expect(ok(await lxcAsync(m1, "operation", "list", "-f", "csv"))).toContain(token!.id);
    // GET and DELETE of another member's operation are forwarded to it.
    const shown = await m3.api("GET", `/1.0/operations/${token!.id}`);
    expect(shown.status).toBe(200);
    expect(shown.body.metadata).toMatchObject({ id: token!.id, location: "m2", status: "Running" });
    const del = await m1.api("DELETE", `/1.0/operations/${token!.id}`);
    expect(del.status).toBe(200);
    expect(await waitFor(async () => (await m2.api("GET", `/1.0/operations/${token!.id}`)).body.metadata?.status !== "Running")).toBe(true);
    expect(ok(await lxcAsync(m1, "cluster", "list-tokens", "-f", "csv"))).not.toMatch(/^m9,/m);
    // An unknown operation is still a 404 on every member.
    expect((await m3.api("GET", "/1.0/operations/00000000-0000-0000-0000-000000000000")).status).toBe(404);
  }, 60_000);

  it("manages cluster groups and places `--target @group` creates on their members", async () => {
    ok(await lxcAsync(m1, "image", "import", busyboxImage(), "--alias", "busybox"));
    ok(await lxcAsync(m1, "cluster", "group", "create", "g1"));
    expect((await m3.api("GET", "/1.0/cluster/groups/default")).body.metadata.members).toEqual(["m1", "m2", "m3"]);
    ok(await lxcAsync(m1, "cluster", "group", "assign", "m2", "g1"));
    const g1 = await m3.api("GET", "/1.0/cluster/groups/g1");
    expect(g1.status).toBe(200);
    expect(g1.body.metadata).toEqual({ name: "g1", description: "", members: ["m2"] });
    expect((await m3.api("GET", "/1.0/cluster/members/m2")).body.metadata.groups).toEqual(["g1"]);
    expect(ok(await lxcAsync(m2, "cluster", "group", "list", "-f", "csv"))).toMatch(/^g1,,1$/m);
    expect((await m1.api("GET", "/1.0/cluster/groups")).body.metadata).toEqual(["/1.0/cluster/groups/default", "/1.0/cluster/groups/g1"]);
    // Placement inside the group.
    ok(await lxcAsync(m3, "init", "busybox", "g-inst", "--target", "@g1"));
    expect((await m1.api("GET", "/1.0/instances/g-inst")).body.metadata.location).toBe("m2");
    ok(await lxcAsync(m1, "delete", "g-inst"));
    // A restricted project's placement rules (restricted.cluster.groups, restricted.cluster.target).
    ok(await lxcAsync(m1, "project", "create", "p-r", "-c", "restricted=true", "-c", "restricted.cluster.groups=g1"));
    ok(await lxcAsync(m1, "profile", "device", "add", "default", "root", "disk", "path=/", "pool=default", "--project", "p-r"));
    const refused = async (...args: string[]) => (await lxcAsync(m3, "init", "--empty", "--project", "p-r", ...args)).stderr;
    expect(await refused("r0", "--target", "m1")).toContain("Project isn't allowed to use this cluster member");
    expect(await refused("r0", "--target", "@default")).toContain("Project isn't allowed to use this cluster group");
    ok(await lxcAsync(m3, "init", "--empty", "r1", "--project", "p-r"));
    expect((await m1.api("GET", "/1.0/instances/r1?project=p-r")).body.metadata.location).toBe("m2");
    ok(await lxcAsync(m3, "init", "--empty", "r2", "--project", "p-r", "--target", "m2"));
    // A restricted client of the project may not name a member (restricted.cluster.target=block); untargeted, it may create.
    const certDir = mkdtempSync("/tmp/nodelxd-placement-");
    try {
      execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(certDir, "c.key"), "-out", join(certDir, "c.crt"), "-subj", "/CN=restricted", "-days", "2"], { stdio: "pipe" });
      ok(await lxcAsync(m1, "config", "trust", "add", join(certDir, "c.crt"), "--restricted", "--projects", "p-r"));
      const post = (query: string, name: string) =>
        execFileSync("curl", ["-k", "-s", "--max-time", "30", "--cert", join(certDir, "c.crt"), "--key", join(certDir, "c.key"), "-X", "POST", "-H", "content-type: application/json", "-d", JSON.stringify({ name, source: { type: "none" } }), `https://${LAYOUT.addresses[0]}:${PORT}/1.0/instances?project=p-r${query}`], { encoding: "utf8" });
      expect(JSON.parse(post("&target=m2", "r3"))).toMatchObject({ error_code: 500, error: "This project doesn't allow cluster member targeting" });
      expect(JSON.parse(post("", "r3"))).toMatchObject({ type: "async" });
      expect(await waitFor(async () => (await m1.api("GET", "/1.0/instances/r3?project=p-r")).body.metadata?.location === "m2", 20_000)).toBe(true);
    } finally {
      rmSync(certDir, { recursive: true, force: true });
    }
    for (const n of ["r1", "r2", "r3"]) ok(await lxcAsync(m1, "delete", n, "--project", "p-r"));
    ok(await lxcAsync(m1, "project", "delete", "p-r"));
    // LXD's refusals.
    const busy = await m1.api("DELETE", "/1.0/cluster/groups/g1");
    expect([busy.status, busy.body.error]).toEqual([500, "Only empty cluster groups can be removed"]);
    const dflt = await m1.api("DELETE", "/1.0/cluster/groups/default");
    expect([dflt.status, dflt.body.error]).toEqual([403, "The 'default' cluster group cannot be deleted"]);
    const bad = await m1.api("POST", "/1.0/cluster/groups", { name: "a_b" });
    expect([bad.status, bad.body.error]).toEqual([400, "Cluster group names may not contain underscores"]);
    const dup = await m2.api("POST", "/1.0/cluster/groups", { name: "g1" });
    expect(dup.status).toBe(409);
    expect((await lxcAsync(m1, "cluster", "group", "remove", "m2", "g1")).code).not.toBe(0);
    const strict = await m1.api("PATCH", "/1.0/cluster/groups/g1", { members: [] });
    expect([strict.status, strict.body.error]).toEqual([400, "Cannot remove m2 from group as member needs to belong to at least one group"]);
    ok(await lxcAsync(m1, "cluster", "group", "assign", "m2", "default"));
    ok(await lxcAsync(m1, "cluster", "group", "rename", "g1", "g2"));
    ok(await lxcAsync(m1, "cluster", "group", "delete", "g2"));
    expect((await m3.api("GET", "/1.0/cluster/groups/g2")).status).toBe(404);
    expect((await m3.api("GET", "/1.0/cluster/groups/default")).body.metadata.members).toEqual(["m1", "m2", "m3"]);
    // clustering_edit_roles: event-hub may be given; the database role is not the client's to add.
    const m3view = (await m1.api("GET", "/1.0/cluster/members/m3")).body.metadata;
    const put = (roles: string[]) => m1.api("PUT", "/1.0/cluster/members/m3", { ...m3view, roles });
    expect((await put(["event-hub"])).status).toBe(200);
    expect((await m2.api("GET", "/1.0/cluster/members/m3")).body.metadata.roles).toEqual(["event-hub"]);
    const db = await put(["database"]);
    expect([db.status, db.body.error]).toEqual([400, `The "database" role cannot be added at this time`]);
    expect((await put([])).status).toBe(200);
  }, 120_000);

  it("replaces the cluster certificate on every member (PUT /1.0/cluster/certificate), members keep talking", async () => {
    const fresh = await generateCertificate("cl2-new-cluster");
    const bad = await m1.api("PUT", "/1.0/cluster/certificate", { cluster_certificate: "nope", cluster_certificate_key: fresh.key });
    expect(bad.status).toBe(400);
    const r = await m2.api("PUT", "/1.0/cluster/certificate", { cluster_certificate: fresh.cert, cluster_certificate_key: fresh.key });
    expect([r.status, r.body.error]).toEqual([200, ""]);
    for (const d of [m1, m2, m3]) {
      expect(await waitFor(async () => (await d.api("GET", "/1.0")).body.metadata.environment.certificate.trim() === fresh.cert.trim())).toBe(true);
    }
    // Every member now serves it on its cluster address.
    for (const addr of LAYOUT.addresses) expect(await waitFor(async () => (await servedFingerprint(addr, PORT)) === certFingerprint(fresh.cert), 5_000, 100)).toBe(true);
    // Members still trust each other: fan-out listings and forwarding work.
    ok(await lxcAsync(m1, "cluster", "add", "m8"));
    const ops = (await m3.api("GET", "/1.0/operations?recursion=1")).body.metadata.running as { location: string; metadata: { serverName?: string } }[];
    expect(ops.some((o) => o.location === "m1" && o.metadata?.serverName === "m8")).toBe(true);
    ok(await lxcAsync(m1, "cluster", "revoke-token", "m8"));
    expect(ok(await lxcAsync(m3, "cluster", "list", "-f", "csv")).match(/ONLINE/g)).toHaveLength(3);
  }, 60_000);

  it("takes a scheduled snapshot once a minute on the instance's member, before and after the leader is killed with -9", async () => {
    // Stopped, with snapshots.schedule.stopped: every member's scheduler would see it as due.
    ok(await lxcAsync(m1, "init", "busybox", "s1", "--target", "m2", "-c", "snapshots.schedule=* * * * *", "-c", "snapshots.schedule.stopped=true"));
    const snapshots = async () => ((await m3.api("GET", "/1.0/instances/s1/snapshots?recursion=1")).body.metadata ?? []) as { name: string; created_at: string }[];
    expect(await waitFor(async () => (await snapshots()).length >= 1, 80_000, 500)).toBe(true);
    const before = await snapshots();
    expect(before).toHaveLength(1);
    // Kill the leader; another member is elected within the lease's lifetime.
    await m1.kill9();
    const t0 = Date.now();
    expect(await waitFor(async () => (await leaders(m2)).length === 1 && !(await leaders(m2)).includes("m1"), 20_000, 250)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(await leaders(m3)).toEqual(await leaders(m2));
    // The next minute's snapshot still happens, once.
    expect(await waitFor(async () => (await snapshots()).length >= 2, 80_000, 500)).toBe(true);
    await new Promise((r) => setTimeout(r, 8_000));
    const after = await snapshots();
    const minutes = after.map((s) => s.created_at.slice(0, 16));
    expect(new Set(minutes).size).toBe(minutes.length);
    expect(after.length).toBeGreaterThanOrEqual(2);
    expect(after.length).toBeLessThanOrEqual(3);
    // Writes keep working on the survivors.
    ok(await lxcAsync(m3, "profile", "create", "p-after-leader"));
    expect(await waitFor(async () => (await m2.api("GET", "/1.0/profiles/p-after-leader")).status === 200)).toBe(true);
  }, 240_000);
});
