// Storage pools and volumes over the API and with the stock lxc client (dir driver).
import * as fs from "node:fs";
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

  it("a driver the host can't run is refused with the reason, as upstream", async () => {
    const zfsHere = existsSync("/sys/module/zfs");
    const r = await d.api("POST", "/1.0/storage-pools", { name: "z1", driver: "zfs" });
    if (zfsHere) return;
    expect(r.status).toBe(500);
    expect(r.body.error).toMatch(/^Error loading "zfs" module: Failed to run: modprobe -b zfs: exit status \d+ \(/);
    expect(existsSync(join(d.dir, "storage-pools/z1"))).toBe(false);
    expect(existsSync(join(d.dir, "disks/z1.img"))).toBe(false);
    const env = (await d.api("GET", "/1.0")).body.metadata.environment;
    expect(env.storage_supported_drivers.map((x: any) => x.Name)).not.toContain("zfs");
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

describe("custom volumes", () => {
  it("create, get, update, rename, delete over the API", async () => {
    // The pool's volume.* keys are defaults for new volumes (pool1 has volume.snapshots.schedule=@daily).
    const c = await d.api("POST", "/1.0/storage-pools/pool1/volumes", { name: "v1", type: "custom", config: { size: "10MiB" } });
    expect([c.status, c.body.metadata]).toEqual([200, {}]);
    expect(existsSync(join(d.dir, "storage-pools/pool1/custom/default_v1"))).toBe(true);
    const g = await d.api("GET", "/1.0/storage-pools/pool1/volumes/custom/v1");
    expect(g.body.metadata).toEqual(
      expect.objectContaining({ config: { size: "10MiB", "snapshots.schedule": "@daily" }, description: "", name: "v1", type: "custom", used_by: [], location: "none", content_type: "filesystem", project: "default" }),
    );
    const cases: [string, unknown, number, string][] = [
      ["/1.0/storage-pools/pool1/volumes", { name: "v1", type: "custom" }, 409, "Volume by that name already exists"],
      ["/1.0/storage-pools/pool1/volumes", { name: "v2" }, 400, "You must provide a storage volume type of the storage volume"],
      ["/1.0/storage-pools/pool1/volumes", { name: "", type: "custom" }, 400, "No name provided"],
      ["/1.0/storage-pools/pool1/volumes", { name: "a/b", type: "custom" }, 400, "Storage volume names may not contain slashes"],
      ["/1.0/storage-pools/pool1/volumes", { name: "v2", type: "container" }, 400, 'Currently not allowed to create storage volumes of type "container"'],
      ["/1.0/storage-pools/pool1/volumes", { name: "v2", type: "custom", config: { foo: "x" } }, 500, 'Invalid option for volume "default_v2" option "foo"'],
      ["/1.0/storage-pools/pool1/volumes", { name: "v2", type: "custom", config: { size: "x" } }, 500, 'Invalid value for volume "default_v2" option "size": Invalid value: x'],
    ];
    for (const [path, body, status, error] of cases) {
      const r = await d.api("POST", path, body);
      expect([r.status, r.body.error], JSON.stringify(body)).toEqual([status, error]);
    }
    expect(existsSync(join(d.dir, "storage-pools/pool1/custom/default_v2"))).toBe(false);
    // A copy is an operation (the copies themselves are tested in volume-migration.test.ts).
    const copy = await d.api("POST", "/1.0/storage-pools/pool1/volumes", { name: "v2", type: "custom", source: { type: "copy", name: "v1", pool: "pool1" } });
    expect(copy.status).toBe(202);
    expect((await d.api("GET", `${copy.body.operation}/wait?timeout=60`)).body.metadata.status).toBe("Success");
    expect(existsSync(join(d.dir, "storage-pools/pool1/custom/default_v2"))).toBe(true);
    expect((await d.api("DELETE", "/1.0/storage-pools/pool1/volumes/custom/v2")).status).toBe(200);
    expect(existsSync(join(d.dir, "storage-pools/pool1/custom/default_v2"))).toBe(false);
    expect((await d.api("PATCH", "/1.0/storage-pools/pool1/volumes/custom/v1", { config: { "user.a": "b" } })).status).toBe(200);
    expect((await d.api("GET", "/1.0/storage-pools/pool1/volumes/custom/v1")).body.metadata.config).toEqual({ size: "10MiB", "snapshots.schedule": "@daily", "user.a": "b" });
    expect((await d.api("PUT", "/1.0/storage-pools/pool1/volumes/custom/v1", { description: "dd" })).status).toBe(200);
    const put = (await d.api("GET", "/1.0/storage-pools/pool1/volumes/custom/v1")).body.metadata;
    expect([put.description, put.config]).toEqual(["dd", {}]);
    expect((await d.api("POST", "/1.0/storage-pools/pool1/volumes/custom", { name: "v3" })).status).toBe(200);
    const clash = await d.api("POST", "/1.0/storage-pools/pool1/volumes/custom/v1", { name: "v3" });
    expect([clash.status, clash.body.error]).toEqual([409, "Volume by that name already exists"]);
    const rn = await d.api("POST", "/1.0/storage-pools/pool1/volumes/custom/v1", { name: "v4" });
    expect([rn.status, rn.body.metadata]).toEqual([200, null]);
    expect(existsSync(join(d.dir, "storage-pools/pool1/custom/default_v4"))).toBe(true);
    expect(existsSync(join(d.dir, "storage-pools/pool1/custom/default_v1"))).toBe(false);
    expect((await d.api("GET", "/1.0/storage-pools/pool1/volumes/custom")).body.metadata).toEqual([
      "/1.0/storage-pools/pool1/volumes/custom/v3",
      "/1.0/storage-pools/pool1/volumes/custom/v4",
    ]);
    expect((await d.api("POST", "/1.0/profiles", { name: "usesv3", devices: { data: { type: "disk", pool: "pool1", source: "v3", path: "/data" } } })).status).toBe(201);
    expect((await d.api("GET", "/1.0/storage-pools/pool1/volumes/custom/v3")).body.metadata.used_by).toEqual(["/1.0/profiles/usesv3"]);
    const busy = await d.api("DELETE", "/1.0/storage-pools/pool1/volumes/custom/v3");
    expect([busy.status, busy.body.error]).toEqual([400, "The storage volume is still in use"]);
    expect((await d.api("DELETE", "/1.0/storage-pools/pool1")).body.error).toBe("The storage pool is currently in use");
    await d.api("DELETE", "/1.0/profiles/usesv3");
    for (const v of ["v3", "v4"]) expect((await d.api("DELETE", `/1.0/storage-pools/pool1/volumes/custom/${v}`)).status).toBe(200);
    const gone = await d.api("DELETE", "/1.0/storage-pools/pool1/volumes/custom/v4");
    expect([gone.status, gone.body.error]).toEqual([404, "Storage pool volume not found"]);
    expect((await d.api("GET", "/1.0/storage-pools/pool1/volumes")).body.metadata).toEqual([]);
  });

  it("lxc storage volume create/list/show/set/rename/delete", () => {
    const ok = (...args: string[]) => {
      const r = d.lxc(...args);
      expect(r.code, `lxc ${args.join(" ")}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    ok("storage", "volume", "create", "pool1", "cv1", "size=10MiB");
    const list = JSON.parse(ok("storage", "volume", "list", "pool1", "-f", "json"));
    expect(list.filter((v: any) => v.name === "cv1" && v.type === "custom")).toHaveLength(1);
    expect(ok("storage", "volume", "show", "pool1", "cv1")).toContain("size: 10MiB");
    ok("storage", "volume", "set", "pool1", "cv1", "user.x", "y");
    expect(ok("storage", "volume", "get", "pool1", "cv1", "user.x").trim()).toBe("y");
    // dir can't tell a volume's usage without project quotas: upstream answers "Not supported" too.
    const info = d.lxc("storage", "volume", "info", "pool1", "cv1");
    expect(info.stderr.trim()).toBe("Error: Not supported");
        ok("storage", "volume", "rename", "pool1", "cv1", "cv2");
    ok("storage", "volume", "delete", "pool1", "cv2");
    expect(d.lxc("storage", "volume", "show", "pool1", "cv2").stderr).toContain("Storage pool volume not found");
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

describe("shutdown", () => {
  it("nodelxd shutdown unmounts pools and a restart mounts them again", async () => {
    const src = mkdtempSync("/tmp/nodelxd-test-src-");
    scratch.push(src);
    expect((await d.api("POST", "/1.0/storage-pools", { name: "bound", driver: "dir", config: { source: src } })).status).toBe(201);
    const target = join(d.dir, "storage-pools/bound");
    const mounted = () => fs.readFileSync("/proc/self/mountinfo", "utf8").includes(` ${target} `);
    expect(mounted()).toBe(true);
    const r = d.cli("shutdown");
    expect(r.code, r.stderr).toBe(0);
    await new Promise((res) => (d.proc.exitCode !== null ? res(null) : d.proc.once("exit", res)));
    expect(mounted()).toBe(false);
    await d.restart();
    expect(mounted()).toBe(true);
    expect((await d.api("DELETE", "/1.0/storage-pools/bound")).status).toBe(200);
    expect(mounted()).toBe(false);
  });
});

describe("crash safety", () => {
  it("a pool left half-created by a crash is cleaned up at start", async () => {
    // Simulate the crash window: the record written, the directory made, the daemon killed.
    const Database = (await import("better-sqlite3")).default;
    await d.kill9();
    const db = new Database(join(d.dir, "database/global/db.bin"));
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
