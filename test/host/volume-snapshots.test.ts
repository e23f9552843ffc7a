// Custom volume snapshots with the stock client and raw HTTP, on dir and btrfs pools:
// snapshot, change, restore; rename, expiry, update, delete; LXD's refusals.
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

const btrfsOk = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");

let d: InitialisedDaemon;
beforeAll(async () => {
  d = await startInitialisedDaemon();
  if (btrfsOk) {
    const r = d.lxc("storage", "create", "bt", "btrfs", "size=300MiB");
    if (r.code !== 0) throw new Error(r.stderr);
  }
});
afterAll(async () => {
  if (!d) return;
  for (const pool of ["default", "bt"]) {
    const list = await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom`);
    for (const url of (list.body?.metadata ?? []) as string[]) if (!url.includes("/snapshots/")) await d.api("DELETE", url);
  }
  d.lxc("storage", "delete", "bt");
  await d.teardown();
});

/** Run the stock client; the test fails with its stderr unless it exits 0. */
const ok = (...args: string[]) => {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r.stdout;
};
const wait = async (op: string) => (await d.api("GET", `${op}/wait?timeout=60`)).body.metadata;

describe.each([["default", "dir"], ...(btrfsOk ? [["bt", "btrfs"]] : [])])("custom volume snapshots on %s (%s)", (pool, driver) => {
  const vol = `v${driver}`;
  const base = `/1.0/storage-pools/${pool}/volumes/custom/${vol}`;
  const path = () => join(d.dir, "storage-pools", pool, "custom", `default_${vol}`);

  it("advertises the extensions the client needs", async () => {
    const ext = (await d.api("GET", "/1.0")).body.metadata.api_extensions;
    expect(ext).toContain("storage_api_volume_snapshots");
    expect(ext).toContain("custom_volume_snapshot_expiry");
  });

  it("snapshots, changes and restores with the stock client, inside a container too", async () => {
    ok("storage", "volume", "create", pool, vol);
    const c = d.launch(`c${driver}`);
    ok("storage", "volume", "attach", pool, vol, c, "/data");
    ok("exec", c, "--", "sh", "-c", "echo first > /data/f");
    const s = d.lxc("storage", "volume", "snapshot", pool, vol);
    expect(s.code, s.stderr).toBe(0);
    ok("storage", "volume", "snapshot", pool, vol, "named");
    ok("exec", c, "--", "sh", "-c", "echo second > /data/f && touch /data/new");
    // The snapshot holds the old content; on btrfs it is a read-only subvolume.
    const snapDir = join(d.dir, "storage-pools", pool, "custom-snapshots", `default_${vol}`, "snap0");
    expect(readFileSync(join(snapDir, "f"), "utf8")).toBe("first\n");
    if (driver === "btrfs") expect(() => writeFileSync(join(snapDir, "x"), "x")).toThrow(/EROFS|read-only/);
    // In use by a running container: refused, nothing changed.
    const busy = d.lxc("storage", "volume", "restore", pool, vol, "snap0");
    expect(busy.code).not.toBe(0);
    expect(busy.stderr).toContain("Cannot restore custom volume used by running instances");
    expect(readFileSync(join(path(), "f"), "utf8")).toBe("second\n");
    ok("stop", "-f", c);
    const r = d.lxc("storage", "volume", "restore", pool, vol, "snap0");
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(path(), "f"), "utf8")).toBe("first\n");
    expect(existsSync(join(path(), "new"))).toBe(false);
    // (Started with the volume attached, this container fails in liblxc's mount today: a disk
    // device issue outside volume snapshots; the restored content is checked by hot-plug.)
    ok("storage", "volume", "detach", pool, vol, c);
    ok("start", c);
    ok("storage", "volume", "attach", pool, vol, c, "/data");
    expect(d.lxc("exec", c, "--", "cat", "/data/f").stdout).toBe("first\n");
    // Writable after the restore (btrfs: not the read-only snapshot itself).
    ok("exec", c, "--", "sh", "-c", "echo third > /data/f");
    ok("delete", "-f", c);
    const info = d.lxc("storage", "volume", "show", pool, `${vol}/snap0`);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toContain("name: snap0");
    expect(info.stdout).toContain("expires_at: 0001-01-01T00:00:00Z");
  });

  it("answers as LXD: list, show, etag, update, rename, delete", async () => {
    const list = await d.api("GET", `${base}/snapshots`);
    expect(list.body.metadata).toEqual([`${base}/snapshots/snap0`, `${base}/snapshots/named`]);
    const rec = await d.api("GET", `${base}/snapshots?recursion=1`);
    expect(rec.body.metadata[0]).toEqual({ config: {}, content_type: "", created_at: "0001-01-01T00:00:00Z", description: "", expires_at: null, name: `${vol}/snap0` });
    const one = await d.api("GET", `${base}/snapshots/snap0`);
    expect(one.body.metadata).toEqual({ config: {}, content_type: "filesystem", created_at: "0001-01-01T00:00:00Z", description: "", expires_at: "0001-01-01T00:00:00Z", name: "snap0" });
    expect(one.headers.etag).toBeTruthy();
    expect((await d.api("PUT", `${base}/snapshots/snap0`, { description: "x" }, { "if-match": '"nope"' })).status).toBe(412);
    expect((await d.api("PUT", `${base}/snapshots/snap0`, { description: "hello", expires_at: "2031-01-01T00:00:00Z" })).status).toBe(200);
    expect((await d.api("PATCH", `${base}/snapshots/snap0`, { expires_at: "2032-01-01T00:00:00Z" })).status).toBe(200);
    const upd = (await d.api("GET", `${base}/snapshots/snap0`)).body.metadata;
    expect([upd.description, upd.expires_at]).toEqual(["hello", "2032-01-01T00:00:00Z"]);
    expect((await d.api("PUT", `${base}/snapshots/snap0`, { description: "" })).status).toBe(200);
    expect((await d.api("GET", `${base}/snapshots/snap0`)).body.metadata.expires_at).toBe("0001-01-01T00:00:00Z");

    const ren = await d.api("POST", `${base}/snapshots/named`, { name: "renamed" });
    expect(ren.status).toBe(202);
    expect((await wait(ren.body.operation)).status).toBe("Success");
    expect((await d.api("GET", `${base}/snapshots/renamed`)).status).toBe(200);
    expect((await d.api("GET", `${base}/snapshots/named`)).status).toBe(404);
    const dup = await d.api("POST", `${base}/snapshots/renamed`, { name: "snap0" });
    expect((await wait(dup.body.operation)).err).toBe("UNIQUE constraint failed: storage_volumes_snapshots.storage_volume_id, storage_volumes_snapshots.name");
    const del = d.lxc("storage", "volume", "delete", pool, `${vol}/renamed`);
    expect(del.code, del.stderr).toBe(0);
    expect((await d.api("GET", `${base}/snapshots/renamed`)).status).toBe(404);
    expect(readdirSync(join(d.dir, "storage-pools", pool, "custom-snapshots", `default_${vol}`))).toEqual(["snap0"]);
  });

  it("refuses bad names and requests with LXD's messages and changes nothing", async () => {
    const before = (await d.api("GET", `${base}/snapshots`)).body.metadata;
    const cases: [string, string, unknown, number, string][] = [
      ["POST", `${base}/snapshots`, { name: "a/b" }, 400, 'Storage name cannot contain "/"'],
      ["POST", `${base}/snapshots`, { name: "a b" }, 400, "Storage name cannot contain white space"],
      ["POST", `${base}/snapshots`, { name: ".." }, 400, 'Invalid storage volume snapshot name: ".." is reserved'],
      ["POST", `${base}/snapshots`, { name: "." }, 400, 'Invalid storage volume snapshot name: "." is reserved'],
      ["POST", `${base}/snapshots`, { name: "snap0" }, 409, 'Snapshot "snap0" already in use'],
      ["POST", `/1.0/storage-pools/${pool}/volumes/custom/nope/snapshots`, { name: "x" }, 404, "Storage pool volume not found"],
      ["POST", `/1.0/storage-pools/${pool}/volumes/container/nope/snapshots`, { name: "x" }, 400, 'Invalid storage volume type "container"'],
      ["POST", `${base}/snapshots/snap0`, { name: "" }, 400, "No name provided"],
      ["POST", `${base}/snapshots/snap0`, { name: "a/b" }, 400, "Storage volume names may not contain slashes"],
      ["POST", `${base}/snapshots/snap0`, { name: ".." }, 400, 'Invalid storage volume snapshot name: ".." is reserved'],
      ["GET", `${base}/snapshots/nope`, undefined, 404, "Storage pool volume not found"],
      ["DELETE", `${base}/snapshots/nope`, undefined, 404, "Storage pool volume not found"],
      ["PUT", base, { restore: "nope" }, 500, "Snapshot not found"],
      ["PUT", base, { restore: "../x" }, 500, "Invalid snapshot name"],
    ];
    for (const [method, url, body, status, error] of cases) {
      const r = await d.api(method, url, body);
      expect([r.status, r.body.error], `${method} ${url} ${JSON.stringify(body)}`).toEqual([status, error]);
      expect(r.body.type).toBe("error");
    }
    expect((await d.api("GET", `${base}/snapshots`)).body.metadata).toEqual(before);
    expect(readdirSync(join(d.dir, "storage-pools", pool, "custom-snapshots"))).toEqual([`default_${vol}`]);
  });

  it("takes snapshots.expiry and expires_at, renames and deletes along with the volume", async () => {
    ok("storage", "volume", "set", pool, vol, "snapshots.expiry", "1d");
    const before = Date.now();
    ok("storage", "volume", "snapshot", pool, vol, "exp");
    const exp = new Date((await d.api("GET", `${base}/snapshots/exp`)).body.metadata.expires_at).getTime();
    expect(exp).toBeGreaterThanOrEqual(before + 86_400_000 - 2000);
    expect(exp).toBeLessThanOrEqual(Date.now() + 86_400_000 + 2000);
    // The snapshot keeps the volume's config as it was.
    expect((await d.api("GET", `${base}/snapshots/exp`)).body.metadata.config).toEqual({ "snapshots.expiry": "1d" });
    const r = await d.api("POST", `${base}/snapshots`, { name: "given", expires_at: "2030-01-01T00:00:00Z" });
    expect((await wait(r.body.operation)).status).toBe("Success");
    expect((await d.api("GET", `${base}/snapshots/given`)).body.metadata.expires_at).toBe("2030-01-01T00:00:00Z");
    ok("storage", "volume", "rename", pool, vol, `${vol}-2`);
    expect((await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom/${vol}-2/snapshots`)).body.metadata).toHaveLength(3);
    expect(readFileSync(join(d.dir, "storage-pools", pool, "custom-snapshots", `default_${vol}-2`, "snap0", "f"), "utf8")).toBe("first\n");
    ok("storage", "volume", "delete", pool, `${vol}-2`);
    expect((await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom`)).body.metadata).toEqual([]);
    expect(readdirSync(join(d.dir, "storage-pools", pool, "custom-snapshots"))).toEqual([]);
  });
});
