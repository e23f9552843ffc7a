// Storage pools and volumes over the API and with the stock lxc client (dir driver).
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";

let d: TestDaemon;
const scratch: string[] = [];
beforeAll(async () => {
  d = await startDaemon();
});
afterAll(async () => {
  await d?.stop();
  for (const s of scratch) rmSync(s, { recursive: true, force: true });
});

describe("storage pools API", () => {
  it("creates a dir pool with upstream's layout and shape", async () => {
    const r = await d.api("POST", "/1.0/storage-pools", { name: "pool1", driver: "dir", description: "first" });
    expect(r.status).toBe(201);
    expect(r.headers.location).toBe("/1.0/storage-pools/pool1");
    const g = await d.api("GET", "/1.0/storage-pools/pool1");
    expect(g.body.metadata).toEqual({
      config: { source: join(d.dir, "storage-pools/pool1") },
      description: "first",
      name: "pool1",
      driver: "dir",
      used_by: null,
      status: "Created",
      locations: ["none"],
    });
    for (const sub of ["containers", "containers-snapshots", "custom", "custom-snapshots", "images", "virtual-machines", "virtual-machines-snapshots", "buckets"]) {
      expect(existsSync(join(d.dir, "storage-pools/pool1", sub)), sub).toBe(true);
    }
    expect(statSync(join(d.dir, "storage-pools/pool1/containers")).mode & 0o777).toBe(0o711);
    expect(statSync(join(d.dir, "storage-pools/pool1/custom")).mode & 0o777).toBe(0o700);
    const list = await d.api("GET", "/1.0/storage-pools");
    expect(list.body.metadata).toContain("/1.0/storage-pools/pool1");
    const rec = await d.api("GET", "/1.0/storage-pools?recursion=1");
    expect(rec.body.metadata.find((p: any) => p.name === "pool1").driver).toBe("dir");
  });

  it("rejects bad requests with LXD's messages and creates nothing", async () => {
    const cases: [unknown, number, string][] = [
      [{ name: "", driver: "dir" }, 400, "No name provided"],
      [{ name: "a/b", driver: "dir" }, 400, "Storage pool names may not contain slashes"],
      [{ name: "..", driver: "dir" }, 400, 'Invalid storage pool name ".."'],
      [{ name: "x1" }, 400, "No driver provided"],
      [{ name: "x1", driver: "nope" }, 500, "Unknown driver"],
      [{ name: "pool1", driver: "dir" }, 409, "The storage pool already exists: The record already exists"],
      [{ name: "x1", driver: "dir", config: { foo: "bar" } }, 500, 'Invalid option "foo"'],
      [{ name: "x1", driver: "dir", config: { "rsync.bwlimit": "abc" } }, 500, 'Invalid value for option "rsync.bwlimit": Invalid value: abc'],
      [{ name: "x1", driver: "dir", config: { "rsync.compression": "abc" } }, 500, 'Invalid value for option "rsync.compression": Invalid value for a boolean "abc"'],
      [{ name: "x1", driver: "dir", config: { "volume.size": "abc" } }, 500, 'Invalid value for option "volume.size": Invalid value: abc'],
      [{ name: "x1", driver: "dir", config: { "volume.block.filesystem": "ext4" } }, 500, 'Invalid option "volume.block.filesystem"'],
      [{ name: "x1", driver: "dir", config: { size: "1GiB" } }, 500, 'Invalid option "size"'],
      [{ name: "x1", driver: "dir", config: { source: "/nonexistent/nodelxd" } }, 500, "Source path '/nonexistent/nodelxd' doesn't exist"],
    ];
    for (const [body, status, error] of cases) {
      const r = await d.api("POST", "/1.0/storage-pools", body);
      expect([r.status, r.body.error], JSON.stringify(body)).toEqual([status, error]);
    }
    expect(existsSync(join(d.dir, "storage-pools/x1"))).toBe(false);
    expect((await d.api("GET", "/1.0/storage-pools/x1")).status).toBe(404);
  });

  it("a pool with its own source is bind-mounted and the source left behind on delete", async () => {
    const src = mkdtempSync("/tmp/nodelxd-test-src-");
    scratch.push(src);
    writeFileSync(join(src, "f"), "x");
    const nonEmpty = await d.api("POST", "/1.0/storage-pools", { name: "srcpool", driver: "dir", config: { source: src } });
    expect(nonEmpty.body.error).toBe(`Source path '${src}' isn't empty`);
    rmSync(join(src, "f"));
    expect((await d.api("POST", "/1.0/storage-pools", { name: "srcpool", driver: "dir", config: { source: src } })).status).toBe(201);
    expect(existsSync(join(src, "containers"))).toBe(true);
    const mounts = (await import("node:fs")).readFileSync("/proc/self/mountinfo", "utf8");
    expect(mounts).toContain(join(d.dir, "storage-pools/srcpool"));
    expect((await d.api("DELETE", "/1.0/storage-pools/srcpool")).status).toBe(200);
    expect(existsSync(src)).toBe(true);
    expect(existsSync(join(src, "containers"))).toBe(false);
    expect(existsSync(join(d.dir, "storage-pools/srcpool"))).toBe(false);
  });

  it("PUT and PATCH follow LXD's rules", async () => {
    const source = join(d.dir, "storage-pools/pool1");
    const noSource = await d.api("PUT", "/1.0/storage-pools/pool1", { config: { "rsync.bwlimit": "10" } });
    expect([noSource.status, noSource.body.error]).toEqual([500, "Pool source cannot be changed when not in pending state"]);
    const bad = await d.api("PATCH", "/1.0/storage-pools/pool1", { config: { foo: "x" } });
    expect([bad.status, bad.body.error]).toEqual([400, 'Invalid option "foo"']);
    const badSchedule = await d.api("PATCH", "/1.0/storage-pools/pool1", { config: { "volume.snapshots.schedule": "x" } });
    expect(badSchedule.body.error).toBe('Invalid value for option "volume.snapshots.schedule": Schedule must be of the form: <minute> <hour> <day-of-month> <month> <day-of-week>');
    expect((await d.api("PUT", "/1.0/storage-pools/pool1", { description: "d2", config: { source, "rsync.compression": "false" } })).status).toBe(200);
    expect((await d.api("PATCH", "/1.0/storage-pools/pool1", { config: { "volume.size": "1GiB", "user.x": "y", "volume.snapshots.schedule": "@daily" } })).status).toBe(200);
    const g = await d.api("GET", "/1.0/storage-pools/pool1");
    expect(g.body.metadata.config).toEqual({ source, "rsync.compression": "false", "volume.size": "1GiB", "user.x": "y", "volume.snapshots.schedule": "@daily" });
    // PATCH replaces the description, as upstream does.
    expect(g.body.metadata.description).toBe("");
    const stale = await d.api("PUT", "/1.0/storage-pools/pool1", { config: { source } }, { "if-match": '"nope"' });
    expect(stale.status).toBe(412);
  });

  it("resources come from statfs", async () => {
    const r = await d.api("GET", "/1.0/storage-pools/pool1/resources");
    expect(r.status).toBe(200);
    expect(r.body.metadata.space.total).toBeGreaterThan(0);
    expect(r.body.metadata.space.used).toBeGreaterThanOrEqual(0);
    expect(r.body.metadata.inodes.total).toBeGreaterThanOrEqual(r.body.metadata.inodes.used);
    expect((await d.api("GET", "/1.0/storage-pools/nope/resources")).body.error).toBe("Storage pool not found");
  });

  it("volumes listing and errors", async () => {
    const l = await d.api("GET", "/1.0/storage-pools/pool1/volumes");
    expect(l.body.metadata).toEqual([]);
    expect((await d.api("GET", "/1.0/storage-pools/pool1/volumes/bogus/x")).body.error).toBe("Invalid storage volume type name");
    const nf = await d.api("GET", "/1.0/storage-pools/pool1/volumes/container/x");
    expect([nf.status, nf.body.error]).toEqual([404, "Storage pool volume not found"]);
    expect((await d.api("GET", "/1.0/storage-pools/nope/volumes")).body.error).toBe("Storage pool not found");
  });

  it("environment reports pools' drivers and supported drivers", async () => {
    const env = (await d.api("GET", "/1.0")).body.metadata.environment;
    expect(env.storage).toBe("dir");
    expect(env.storage_version).toBe("1");
    expect(env.storage_supported_drivers).toContainEqual({ Name: "dir", Version: "1", Remote: false });
  });

  it("refuses to delete a pool a profile uses, emits lifecycle events", async () => {
    const ws = new WebSocket("ws+unix://" + d.socket + ":/1.0/events?type=lifecycle");
    const events: any[] = [];
    ws.on("message", (m) => events.push(JSON.parse(String(m))));
    await new Promise((r) => ws.on("open", r));
    try {
      expect((await d.api("POST", "/1.0/storage-pools", { name: "pool2", driver: "dir" })).status).toBe(201);
      expect((await d.api("PATCH", "/1.0/storage-pools/pool2", { config: { "user.a": "b" } })).status).toBe(200);
      expect((await d.api("POST", "/1.0/profiles", { name: "usespool2", devices: { root: { type: "disk", path: "/", pool: "pool2" } } })).status).toBe(201);
      expect((await d.api("GET", "/1.0/storage-pools/pool2")).body.metadata.used_by).toEqual(["/1.0/profiles/usespool2"]);
      const r = await d.api("DELETE", "/1.0/storage-pools/pool2");
      expect([r.status, r.body.error]).toEqual([400, "The storage pool is currently in use"]);
      expect((await d.api("DELETE", "/1.0/profiles/usespool2")).status).toBe(200);
      expect((await d.api("DELETE", "/1.0/storage-pools/pool2")).status).toBe(200);
      expect(existsSync(join(d.dir, "storage-pools/pool2"))).toBe(false);
      expect((await d.api("DELETE", "/1.0/storage-pools/pool2")).body.error).toBe("Storage pool not found");
      await new Promise((r) => setTimeout(r, 200));
      const actions = events.map((e) => [e.metadata.action, e.metadata.source]);
      expect(actions).toContainEqual(["storage-pool-created", "/1.0/storage-pools/pool2"]);
      expect(actions).toContainEqual(["storage-pool-updated", "/1.0/storage-pools/pool2"]);
      expect(actions).toContainEqual(["storage-pool-deleted", "/1.0/storage-pools/pool2"]);
    } finally {
      ws.close();
    }
  });
});

describe("lxc storage with the stock client", () => {
  it("create, list, show, info, set, unset, delete", () => {
    const ok = (...args: string[]) => {
      const r = d.lxc(...args);
      expect(r.code, `lxc ${args.join(" ")}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    ok("storage", "create", "cli1", "dir");
    expect(JSON.parse(ok("storage", "list", "-f", "json")).map((p: any) => p.name)).toContain("cli1");
    expect(ok("storage", "show", "cli1")).toContain("driver: dir");
    const info = ok("storage", "info", "cli1");
    expect(info).toContain("driver: dir");
    expect(info).toContain("total space:");
    ok("storage", "set", "cli1", "rsync.bwlimit", "10MiB");
    expect(ok("storage", "get", "cli1", "rsync.bwlimit").trim()).toBe("10MiB");
    const bad = d.lxc("storage", "set", "cli1", "bogus", "1");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('Invalid option "bogus"');
    ok("storage", "unset", "cli1", "rsync.bwlimit");
    expect(ok("storage", "show", "cli1")).not.toContain("rsync.bwlimit");
    ok("storage", "delete", "cli1");
    expect(d.lxc("storage", "show", "cli1").stderr).toContain("Storage pool not found");
  });
});

describe("crash safety", () => {
  it("a pool left half-created by a crash is cleaned up at start", async () => {
    // Simulate the crash window: the record written, the directory made, the daemon killed.
    const Database = (await import("better-sqlite3")).default;
    await d.kill9();
    const db = new Database(join(d.dir, "database/nodelxd.db"));
    db.prepare("INSERT INTO storage_pools (name, driver, description, config, state) VALUES ('halfway', 'dir', '', ?, 'creating')").run(JSON.stringify({ source: join(d.dir, "storage-pools/halfway") }));
    db.close();
    mkdirSync(join(d.dir, "storage-pools/halfway/containers"), { recursive: true });
    await d.restart();
    expect((await d.api("GET", "/1.0/storage-pools/halfway")).status).toBe(404);
    expect(existsSync(join(d.dir, "storage-pools/halfway"))).toBe(false);
    expect((await d.api("POST", "/1.0/storage-pools", { name: "halfway", driver: "dir" })).status).toBe(201);
    expect((await d.api("DELETE", "/1.0/storage-pools/halfway")).status).toBe(200);
  });
});
