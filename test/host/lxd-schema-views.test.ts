// LXD-named tables written and read with `lxd sql` as LXD's scripts and test suite do:
// images_aliases.image_id with /internal/testing/warnings (LXD's `warnings` test), and
// storage_volumes_snapshots with the `storage_missing_snapshot_records` patch (LXD's
// `snap_volume_db_recovery` test); and LXD's per-object tables (storage_pools_config, the
// profile device tables) next to real LXD 5.0.2's answers to the same queries.
import { dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";

let d: InitialisedDaemon;
beforeAll(async () => {
  d = await startInitialisedDaemon();
}, 120_000);
afterAll(async () => {
  await d?.teardown();
});

const ok = (...args: string[]) => {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
};
const warn = (body: Record<string, unknown>) => d.api("POST", "/internal/testing/warnings", body);

describe("/internal/testing/warnings and images_aliases", () => {
  it("creates and bumps warnings as LXD's testing endpoint, refusing what LXD refuses", async () => {
    for (const w of (await d.api("GET", "/1.0/warnings?recursion=1")).body.metadata) await d.api("DELETE", `/1.0/warnings/${w.uuid}`);
    expect((await warn({ type_code: 0, message: "global warning" })).status).toBe(200);
    expect((await warn({ type_code: 0, message: "global warning", project: "default" })).status).toBe(200);
    expect((await warn({ type_code: 0, message: "global warning 2", project: "default" })).status).toBe(200);
    const list = (await d.api("GET", "/1.0/warnings?recursion=1")).body.metadata as { project: string; last_message: string; count: number; type: string }[];
    expect(list.map((w) => [w.project, w.last_message, w.count, w.type])).toEqual([
      ["", "global warning", 1, "Undefined warning"],
      ["default", "global warning 2", 2, "Undefined warning"],
    ]);

    const bad = [
      [{ type_code: 0, message: "m", project: "foo" }, 'Failed to create warning: Unknown project "foo"'],
      [{ type_code: 999, message: "m" }, "Failed to create warning: Unknown warning type code 999"],
      [{ type_code: 0, message: "m", entity_type_code: 0, entity_id: 0 }, "Failed to create warning: Failed to get URI for entity ID 0 with entity type code 0: Unknown entity ID"],
      [{ type_code: 0, message: "m", entity_type_code: 99, entity_id: 1 }, "Invalid entity type"],
    ] as const;
    for (const [body, error] of bad) {
      const r = await warn(body);
      expect(r.status).toBe(500);
      expect(r.body.error).toBe(error);
    }
    // LXD's filter on the list (status eq new / resolved).
    const count = async (filter: string) => ((await d.api("GET", `/1.0/warnings?filter=${encodeURIComponent(filter)}`)).body.metadata as string[]).length;
    expect(await count("status eq new")).toBe(2);
    expect(await count("status eq resolved")).toBe(0);
    const typed = await warn({ type_code: "0" });
    expect(typed.status).toBe(400);
  });

  it("images_aliases.image_id (read with LXD's double-quoted string) names the image a warning is about", async () => {
    const out = d.cli("sql", "global", 'select image_id from images_aliases where name="busybox"');
    expect(out.code, out.stderr).toBe(0);
    const id = Number(/\| (\d+) +\|/.exec(out.stdout)?.[1]);
    expect(id).toBeGreaterThan(0);
    const fingerprint = (await d.api("GET", "/1.0/images/aliases/busybox")).body.metadata.target as string;
    expect((await warn({ type_code: 0, message: "about an image", entity_type_code: 1, entity_id: id })).status).toBe(200);
    const w = ((await d.api("GET", "/1.0/warnings?recursion=1")).body.metadata as { last_message: string; entity_url: string }[]).find((x) => x.last_message === "about an image");
    expect(w?.entity_url).toBe(`/1.0/images/${fingerprint}?project=default`);
  });
});

describe("storage_volumes_snapshots and the storage_missing_snapshot_records patch", () => {
  it("deleted snapshot volume records stop the start, and the patch repairs them at the next start", async () => {
    const pool = ok("profile", "device", "get", "default", "root", "pool").trim();
    const c = d.launch("snaprec", { init: true });
    ok("snapshot", c);
    ok("snapshot", c);
    const listed = d.cli("sql", "global", `SELECT s.name FROM storage_volumes_snapshots s JOIN storage_volumes v ON v.id = s.storage_volume_id WHERE v.name = '${c}' ORDER BY s.name`);
    expect(listed.stdout).toBe("+-------+\n| name  |\n+-------+\n| snap0 |\n| snap1 |\n+-------+\n");

    expect(d.cli("sql", "global", "DELETE FROM storage_volumes_snapshots").stdout).toBe("Rows affected: 2\n");
    expect(d.cli("sql", "local", 'DELETE FROM  patches WHERE name = "storage_missing_snapshot_records"').stdout).toBe("Rows affected: 1\n");
    const start = d.lxc("start", c);
    expect(start.code).not.toBe(0);
    expect(start.stderr).toContain("Instance snapshot record count doesn't match instance snapshot volume record count");

    await d.kill9();
    await d.restart();
    for (const snap of ["snap0", "snap1"]) expect(ok("storage", "volume", "show", pool, `container/${c}/${snap}`)).toContain("description: Auto repaired");
    expect(d.cli("sql", "local", "SELECT count(*) AS n FROM patches WHERE name = 'storage_missing_snapshot_records'").stdout).toContain("| 1 |");
    ok("start", c);
    ok("delete", "-f", c);
    expect(d.cli("sql", "global", "SELECT count(*) AS n FROM storage_volumes_snapshots").stdout).toContain("| 0 |");
  }, 120_000);
});

describe("LXD's per-object tables, next to real LXD 5.0.2", () => {
  let ref: ReferenceLxd;
  const pool = `tbv${process.pid.toString(36)}`;
  const profile = `${pool}p`;
  beforeAll(async () => {
    ref = await startReferenceLxd();
  }, 120_000);
  afterAll(async () => {
    if (d) {
      await d.api("DELETE", `/1.0/profiles/${profile}`);
      await d.api("DELETE", `/1.0/storage-pools/${pool}`);
    }
    await ref?.stop();
  }, 60_000);

  /** `lxd sql global QUERY` as /internal/sql answers it (columns and rows). */
  const query = async (api: (m: string, p: string, b?: unknown) => Promise<{ status: number; body: { metadata: { Results: { columns: string[]; rows: unknown[][] | null }[] } } }>, q: string) => {
    const r = await api("POST", "/internal/sql", { database: "global", query: q });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.metadata.Results[0];
  };

  it("storage_pools_config, storage_pools_nodes and the profile device tables answer as LXD's (ids aside)", async () => {
    for (const api of [d.api, ref.api] as const) {
      expect((await api("POST", "/1.0/storage-pools", { name: pool, driver: "dir", config: { "user.foo": "bah" } })).status).toBe(201);
      const devices = { root: { type: "disk", path: "/", pool }, eth0: { type: "nic", nictype: "p2p" } };
      expect((await api("POST", "/1.0/profiles", { name: profile, config: { "limits.cpu": "1" }, devices })).status).toBe(201);
    }
    const queries = [
      `SELECT storage_pools_config.* FROM storage_pools_config JOIN storage_pools ON storage_pools.id = storage_pools_config.storage_pool_id WHERE storage_pools.name = '${pool}' ORDER BY key`,
      `SELECT key,value FROM storage_pools_config JOIN storage_pools ON storage_pools.id = storage_pools_config.storage_pool_id WHERE storage_pools.name = '${pool}' ORDER BY key`,
      `SELECT storage_pools_nodes.* FROM storage_pools_nodes JOIN storage_pools ON storage_pools.id = storage_pools_nodes.storage_pool_id WHERE storage_pools.name = '${pool}'`,
      `SELECT profiles_config.* FROM profiles_config JOIN profiles ON profiles.id = profiles_config.profile_id WHERE profiles.name = '${profile}'`,
      `SELECT profiles_devices.name, profiles_devices.type, c.key, c.value FROM profiles_devices JOIN profiles ON profiles.id = profiles_devices.profile_id JOIN profiles_devices_config c ON c.profile_device_id = profiles_devices.id WHERE profiles.name = '${profile}' ORDER BY profiles_devices.name, c.key`,
    ];
    const dirs = [d.dir, dirname(ref.socket)];
    for (const q of queries) {
      const [ours, real] = [await query(d.api, q), await query(ref.api, q)];
      expect(ours.columns, q).toEqual(real.columns);
      // Ids are numbered by each database; the pool source is each daemon's directory.
      const idCols = new Set(real.columns.flatMap((c, i) => (c === "id" || c.endsWith("_id") ? [i] : [])));
      const norm = (rows: unknown[][] | null, dir: string) => (rows ?? []).map((r) => r.map((v, i) => (idCols.has(i) && v !== null ? "<id>" : typeof v === "string" ? v.replace(dir, "<dir>") : v)));
      expect(norm(ours.rows, dirs[0]), q).toEqual(norm(real.rows, dirs[1]));
      expect((ours.rows ?? []).length, q).toBeGreaterThan(0);
    }
  }, 120_000);
});
