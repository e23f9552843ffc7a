// LXD-named tables written and read with `lxd sql` as LXD's scripts and test suite do:
// images_aliases.image_id with /internal/testing/warnings (LXD's `warnings` test), and
// storage_volumes_snapshots with the `storage_missing_snapshot_records` patch (LXD's
// `snap_volume_db_recovery` test).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

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
