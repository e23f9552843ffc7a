// The storage contract of the database-aware layer (PoolService, its volume and snapshot
// services, and the API over them): pools, custom volumes and their snapshots, ETags and 412,
// LXD's error texts, used_by. One suite, run on every back end of the global database: a
// standalone daemon (its SQLite) and a cluster (each member's SQLite a replica of the etcd
// statement log). Writes go to member `a`, reads are made on member `b` once it has replayed
// them (the same daemon when standalone); conflicting writes are sent from both at once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Res, TestDaemon } from "../helpers/daemon.js";
import { waitFor } from "../helpers/cluster.js";

export interface StorageDbBackend {
  /** Who writes, and who reads (`b === a` standalone). */
  a: TestDaemon;
  b: TestDaemon;
  clustered: boolean;
  /** Create a `dir` pool on fresh temp dirs (in a cluster: defined on every member, then created). */
  createPool(name: string, config?: Record<string, string>): Promise<Res>;
  /** Rows of the global database as member `d` holds them (`nodelxd sql global`). */
  sql(d: TestDaemon, query: string): Promise<string>;
  stop(): Promise<void>;
}

const P = "sdb";
const vols = `/1.0/storage-pools/${P}/volumes/custom`;

/** The operation behind a 202 answer, waited for; any other answer as it is. */
async function done(d: TestDaemon, r: Res): Promise<{ status: number; err: string; code: number }> {
  if (r.status !== 202) return { status: r.status, err: r.body?.error ?? "", code: r.body?.error_code ?? 0 };
  const w = await d.api("GET", `/1.0/operations/${r.body.metadata.id}/wait?timeout=60`);
  const op = w.body.metadata;
  return { status: op.status_code === 200 ? 200 : op.status_code, err: op.err ?? "", code: op.status_code };
}

export function testStorageDb(label: string, setup: () => Promise<StorageDbBackend>, clustered = false): void {
  describe(`storage layer on ${label}`, () => {
    let be: StorageDbBackend;
    let a: TestDaemon, b: TestDaemon;

    /** `path` as member b answers it, once `until` holds (a replica follows within moments). */
    async function seen(path: string, until: (r: Res) => boolean): Promise<Res> {
      let last!: Res;
      const ok = await waitFor(async () => until((last = await b.api("GET", path))), 10_000, 50);
      if (!ok) throw new Error(`member b never saw the expected ${path}: ${last.status} ${last.text}`);
      return last;
    }

    beforeAll(async () => {
      be = await setup();
      ({ a, b } = be);
    }, 240_000);

    afterAll(async () => {
      await be?.stop();
    }, 120_000);

    it("creates a pool, refuses a second of the same name and shows it on every member", async () => {
      expect((await be.createPool(P, { "volume.size": "1GiB" })).status).toBe(201);
      const again = await a.api("POST", "/1.0/storage-pools", { name: P, driver: "dir", config: {} });
      expect(again.status).toBeGreaterThanOrEqual(400);
      expect(again.body.error).toMatch(be.clustered ? /The storage pool is already created|already exists/ : /^The storage pool already exists: The record already exists$/);
      const pool = (await seen(`/1.0/storage-pools/${P}`, (r) => r.status === 200 && r.body.metadata.status === "Created")).body.metadata;
      expect(pool).toMatchObject({ name: P, driver: "dir", status: "Created", config: { "volume.size": "1GiB" } });
      expect((await b.api("GET", "/1.0/storage-pools/nope")).body).toMatchObject({ error: "Storage pool not found", error_code: 404 });
    });

    it("creates a custom volume with the pool's volume.* defaults, visible to the other member", async () => {
      expect((await a.api("POST", vols, { name: "v1", type: "custom", config: { "user.k": "1" } })).status).toBe(200);
      const listed = await seen(`${vols}?recursion=1`, (r) => r.body.metadata?.some((v: { name: string }) => v.name === "v1"));
      const v1 = listed.body.metadata.find((v: { name: string }) => v.name === "v1");
      expect(v1).toMatchObject({ name: "v1", type: "custom", content_type: "filesystem", config: { size: "1GiB", "user.k": "1" } });
      expect(v1.location).toBe(be.clustered ? "m1" : "none");
      // The same name again on its member (in a cluster another member may have its own: LXD
      // checks the member the volume is made on).
      const dup = await b.api("POST", `${vols}${be.clustered ? "?target=m1" : ""}`, { name: "v1", type: "custom", config: {} });
      expect(dup.body).toMatchObject({ error: "Volume by that name already exists", error_code: 409 });
      expect((await b.api("POST", vols, { name: "bad/name", type: "custom", config: {} })).status).toBe(400);
      expect((await b.api("GET", `${vols}/nope`)).body).toMatchObject({ error: "Storage pool volume not found", error_code: 404 });
    });

    it("updates with ETags: a stale ETag is 412 and changes nothing", async () => {
      const got = await b.api("GET", `${vols}/v1`);
      const etag = String(got.headers.etag);
      expect(etag).toMatch(/^"?[0-9a-f]{64}"?$/);
      const put = await b.api("PUT", `${vols}/v1`, { description: "first", config: { size: "1GiB", "user.k": "2" } }, { "if-match": etag });
      expect(put.status).toBe(200);
      const stale = await a.api("PUT", `${vols}/v1`, { description: "stale", config: { size: "1GiB" } }, { "if-match": etag });
      expect(stale.status).toBe(412);
      expect(stale.body.error).toMatch(/^ETag doesn't match: [0-9a-f]{64} vs [0-9a-f]{64}$/);
      const after = (await seen(`${vols}/v1`, (r) => r.body.metadata?.description === "first")).body.metadata;
      expect(after.config).toEqual({ size: "1GiB", "user.k": "2" });
      const patch = await a.api("PATCH", `${vols}/v1`, { config: { "user.x": "y" } });
      expect(patch.status).toBe(200);
      const patched = (await seen(`${vols}/v1`, (r) => r.body.metadata?.config?.["user.x"] === "y")).body.metadata;
      expect(patched).toMatchObject({ description: "first", config: { size: "1GiB", "user.k": "2", "user.x": "y" } });
      // An invalid key is the driver's validation error, a 500 as LXD 5.0.2 answers (main's 759fd1e).
      expect((await a.api("PUT", `${vols}/v1`, { config: { "nope.key": "1" } })).status).toBe(500);
    });

    it("pool updates: ETag, 412 on a stale one, immutable keys refused", async () => {
      const got = await b.api("GET", `/1.0/storage-pools/${P}`);
      const etag = String(got.headers.etag);
      expect((await a.api("PATCH", `/1.0/storage-pools/${P}`, { config: { "user.tier": "gold" } }, { "if-match": etag })).status).toBe(200);
      const stale = await b.api("PATCH", `/1.0/storage-pools/${P}`, { config: { "user.tier": "lead" } }, { "if-match": etag });
      expect(stale.status).toBe(412);
      const pool = (await seen(`/1.0/storage-pools/${P}`, (r) => r.body.metadata?.config?.["user.tier"] === "gold")).body.metadata;
      expect(pool.config).toMatchObject({ "user.tier": "gold", "volume.size": "1GiB" });
      expect((await b.api("PATCH", `/1.0/storage-pools/${P}`, { config: { "rsync.bwlimit": "x", "nope": "1" } })).status).toBe(400);
    });

    it("snapshots: create, list, update with ETag, rename, errors, delete", async () => {
      expect((await done(a, await a.api("POST", `${vols}/v1/snapshots`, { name: "s0" }))).status).toBe(200);
      const dup = await done(b, await b.api("POST", `${vols}/v1/snapshots`, { name: "s0" }));
      expect(dup.err).toBe('Snapshot "s0" already in use');
      const list = (await seen(`${vols}/v1/snapshots`, (r) => r.body.metadata?.length === 1)).body.metadata;
      expect(list).toEqual([`${vols}/v1/snapshots/s0`]);
      const snap = await b.api("GET", `${vols}/v1/snapshots/s0`);
      expect(snap.body.metadata).toMatchObject({ name: "s0", content_type: "filesystem", config: { size: "1GiB", "user.k": "2", "user.x": "y" } });
      const etag = String(snap.headers.etag);
      expect((await a.api("PUT", `${vols}/v1/snapshots/s0`, { description: "kept" }, { "if-match": etag })).status).toBe(200);
      expect((await b.api("PUT", `${vols}/v1/snapshots/s0`, { description: "lost" }, { "if-match": etag })).status).toBe(412);
      expect((await done(a, await a.api("POST", `${vols}/v1/snapshots/s0`, { name: "s1" }))).status).toBe(200);
      const renamed = await seen(`${vols}/v1/snapshots/s1`, (r) => r.status === 200);
      expect(renamed.body.metadata).toMatchObject({ name: "s1", description: "kept" });
      expect((await b.api("GET", `${vols}/v1/snapshots/s0`)).body).toMatchObject({ error: "Storage pool volume not found", error_code: 404 });
      expect((await done(b, await b.api("DELETE", `${vols}/v1/snapshots/s1`))).status).toBe(200);
      await seen(`${vols}/v1/snapshots`, (r) => r.body.metadata?.length === 0);
    });

    it("used_by: a profile using a volume shows on the volume and the pool; a used pool is not deleted", async () => {
      const dev = { type: "disk", pool: P, source: "v1", path: "/mnt" };
      expect((await a.api("POST", "/1.0/profiles", { name: "sdbp", devices: { d: dev } })).status).toBe(201);
      const vol = (await seen(`${vols}/v1`, (r) => r.body.metadata?.used_by?.length === 1)).body.metadata;
      expect(vol.used_by).toEqual(["/1.0/profiles/sdbp"]);
      const pool = (await seen(`/1.0/storage-pools/${P}`, (r) => r.body.metadata?.used_by?.includes("/1.0/profiles/sdbp"))).body.metadata;
      // As LXD: the pool lists its custom volumes themselves (with their member as target) and the profile.
      const at = be.clustered ? "?target=m1" : "";
      expect(pool.used_by).toEqual([`${vols}/v1${at}`, "/1.0/profiles/sdbp"]);
      const del = await b.api("DELETE", `/1.0/storage-pools/${P}`);
      expect(del.body).toMatchObject({ error: "The storage pool is currently in use", error_code: 400 });
      expect((await a.api("DELETE", "/1.0/profiles/sdbp")).status).toBe(200);
      await seen(`${vols}/v1`, (r) => (r.body.metadata?.used_by ?? []).length === 0);
    });

    it("renames and deletes a custom volume; the old name is gone everywhere", async () => {
      expect((await a.api("POST", vols, { name: "v2", type: "custom", config: {} })).status).toBe(200);
      await seen(`${vols}/v2`, (r) => r.status === 200);
      expect((await b.api("POST", `${vols}/v2`, { name: "v1" })).body).toMatchObject({ error: "Volume by that name already exists", error_code: 409 });
      expect((await b.api("POST", `${vols}/v2`, { name: "v3" })).status).toBe(200);
      await seen(`${vols}/v3`, (r) => r.status === 200);
      expect((await b.api("GET", `${vols}/v2`)).status).toBe(404);
      expect((await a.api("DELETE", `${vols}/v3`)).status).toBe(200);
      await seen(`${vols}/v3`, (r) => r.status === 404);
      expect((await b.api("DELETE", `${vols}/v3`)).body).toMatchObject({ error: "Storage pool volume not found", error_code: 404 });
    });

    it("concurrent conflicting writes from two members: exactly one wins, the other is told", async () => {
      // Same new name from both at once (on one member: on a local pool each member may have its own).
      const on = be.clustered ? "?target=m1" : "";
      const creates = await Promise.all([a, b].map((d) => d.api("POST", `${vols}${on}`, { name: "race", type: "custom", config: {} })));
      expect(creates.map((r) => r.status).sort()).toEqual([200, 409]);
      // Same ETag, different changes, at once.
      const etag = String((await b.api("GET", `/1.0/storage-pools/${P}`)).headers.etag);
      const puts = await Promise.all(
        [a, b].map((d, i) => d.api("PATCH", `/1.0/storage-pools/${P}`, { config: { "user.winner": `m${i + 1}` } }, { "if-match": etag })),
      );
      expect(puts.map((r) => r.status).sort()).toEqual([200, 412]);
      const winner = `m${puts.findIndex((r) => r.status === 200) + 1}`;
      for (const d of [a, b]) {
        await waitFor(async () => (await d.api("GET", `/1.0/storage-pools/${P}`)).body.metadata?.config?.["user.winner"] === winner, 10_000, 50);
        expect((await d.api("GET", `/1.0/storage-pools/${P}`)).body.metadata.config["user.winner"]).toBe(winner);
      }
      // Two renames of one volume at once: one lands, the other finds it gone.
      const renames = await Promise.all([a, b].map((d, i) => d.api("POST", `${vols}/race`, { name: `race${i}` })));
      expect(renames.map((r) => r.status).sort()).toEqual([200, 404]);
      // Same snapshot name on one volume at once.
      const snaps = await Promise.all([a, b].map(async (d) => done(d, await d.api("POST", `${vols}/v1/snapshots`, { name: "twin" }))));
      // The loser is refused before its operation starts (409) or its operation fails (400).
      expect(snaps.filter((s) => s.status === 200)).toHaveLength(1);
      expect([400, 409]).toContain(snaps.find((s) => s.status !== 200)!.status);
      expect(snaps.find((s) => s.status !== 200)!.err).toMatch(/^(Snapshot "twin" already in use|Snapshot by that name already exists)$/);
    });

    it.skipIf(!clustered)("same-name custom volumes on two members of a local pool: both listed with their location, ?target= picks one, no target is LXD's 409 (a standalone daemon has one member)", async () => {
      for (const m of ["m1", "m2"]) {
        expect((await a.api("POST", `${vols}?target=${m}`, { name: "twin", type: "custom", config: {}, description: `on ${m}` })).status).toBe(200);
      }
      // A third on a member that has one already is refused.
      expect((await b.api("POST", `${vols}?target=m2`, { name: "twin", type: "custom", config: {} })).body).toMatchObject({ error: "Volume by that name already exists", error_code: 409 });
      const listed = (await seen(`/1.0/storage-pools/${P}/volumes?recursion=1`, (r) => (r.body.metadata ?? []).filter((v: { name: string }) => v.name === "twin").length === 2)).body.metadata;
      const twins = listed.filter((v: { name: string }) => v.name === "twin").map((v: { location: string; description: string }) => [v.location, v.description]);
      expect(twins.sort()).toEqual([["m1", "on m1"], ["m2", "on m2"]]);
      const names = (await b.api("GET", `/1.0/storage-pools/${P}/volumes`)).body.metadata as string[];
      expect(names.filter((n) => n.endsWith("/custom/twin")).length).toBe(2);
      // With a target, that member's own only (from either member).
      for (const [d, m] of [[a, "m2"], [b, "m1"]] as const) {
        const own = (await d.api("GET", `/1.0/storage-pools/${P}/volumes?recursion=1&target=${m}`)).body.metadata as { name: string; location: string }[];
        expect(own.filter((v) => v.name === "twin").map((v) => v.location)).toEqual([m]);
      }
      // Without a target the name is ambiguous, for every kind of request on it.
      const ambiguous = { error: "Storage volume found on more than one cluster member. Please target a specific member", error_code: 409 };
      for (const d of [a, b]) {
        expect((await d.api("GET", `${vols}/twin`)).body).toMatchObject(ambiguous);
        expect((await d.api("PATCH", `${vols}/twin`, { description: "x" })).body).toMatchObject(ambiguous);
        expect((await d.api("DELETE", `${vols}/twin`)).body).toMatchObject(ambiguous);
        expect((await d.api("GET", `${vols}/twin/snapshots`)).body).toMatchObject(ambiguous);
      }
      // ?target= selects one, from either member.
      expect((await a.api("GET", `${vols}/twin?target=m2`)).body.metadata).toMatchObject({ name: "twin", location: "m2", description: "on m2" });
      expect((await b.api("GET", `${vols}/twin?target=m1`)).body.metadata).toMatchObject({ name: "twin", location: "m1", description: "on m1" });
      const etag = String((await a.api("GET", `${vols}/twin?target=m2`)).headers.etag);
      expect((await a.api("PUT", `${vols}/twin?target=m2`, { description: "changed on m2", config: {} }, { "if-match": etag })).status).toBe(200);
      expect((await b.api("GET", `${vols}/twin?target=m1`)).body.metadata.description).toBe("on m1");
      expect((await done(b, await b.api("POST", `${vols}/twin/snapshots?target=m1`, { name: "s0" }))).status).toBe(200);
      expect((await a.api("GET", `${vols}/twin/snapshots?target=m1`)).body.metadata).toEqual([`${vols}/twin/snapshots/s0`]);
      expect((await a.api("GET", `${vols}/twin/snapshots?target=m2`)).body.metadata).toEqual([]);
      // Renamed on m2, the name is m1's alone again: served without a target.
      expect((await a.api("POST", `${vols}/twin?target=m2`, { name: "twin2" })).status).toBe(200);
      const one = (await seen(`${vols}/twin`, (r) => r.status === 200)).body.metadata;
      expect(one).toMatchObject({ location: "m1", description: "on m1" });
      expect((await b.api("GET", `${vols}/twin2`)).body.metadata).toMatchObject({ location: "m2", description: "changed on m2" });
      expect((await done(a, await a.api("DELETE", `${vols}/twin/snapshots/s0`))).status).toBe(200);
      for (const v of ["twin", "twin2"]) expect((await b.api("DELETE", `${vols}/${v}`)).status).toBe(200);
    });

    it("leaves both members' databases holding the same storage rows", async () => {
      const q = "SELECT v.name, v.type, v.description, v.config FROM storage_volumes v JOIN storage_pools p ON p.id = v.pool_id WHERE p.name = 'sdb' ORDER BY v.name";
      const rows = await be.sql(a, q);
      expect(rows).toContain("v1/twin");
      expect(rows).toMatch(/race[01]/);
      expect(await be.sql(b, q)).toBe(rows);
      const pq = "SELECT name, driver, description, config, state FROM storage_pools ORDER BY name";
      expect(await be.sql(b, pq)).toBe(await be.sql(a, pq));
    });

    it("deletes the pool once empty, everywhere", async () => {
      for (const v of ["v1", "race0", "race1"]) {
        const r = await a.api("DELETE", `${vols}/${v}`);
        expect([200, 404]).toContain(r.status);
      }
      await seen(`${vols}`, (r) => r.body.metadata?.length === 0);
      expect((await b.api("DELETE", `/1.0/storage-pools/${P}`)).status).toBe(200);
      await seen(`/1.0/storage-pools/${P}`, (r) => r.status === 404);
      expect((await a.api("GET", `/1.0/storage-pools/${P}`)).status).toBe(404);
    });
  });
}
