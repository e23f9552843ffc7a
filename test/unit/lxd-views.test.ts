// LXD's per-object tables (storage_pools_config, instances_config, profiles_devices_config, ...)
// as views over our JSON columns: LXD's columns, LXD's rows, and writes through them landing in
// the one JSON column they show.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { closeDatabase, openDatabase, type Db } from "../../src/db/database.js";

let dir: string;
let db: Db;
beforeEach(() => {
  dir = mkdtempSync("/tmp/nodelxd-unit-views-");
  db = openDatabase(join(dir, "db.bin"));
  db.prepare("INSERT INTO storage_pools (name, driver, config, state) VALUES ('p1', 'dir', ?, 'created')").run(JSON.stringify({ source: "/srv/p1", "user.foo": "bah", "rsync.bwlimit": "" }));
  db.prepare("INSERT INTO storage_pools (name, driver, config, state) VALUES ('p2', 'zfs', ?, 'creating')").run(JSON.stringify({ source: "tank", "zfs.pool_name": "tank", "volume.size": "1GiB" }));
  db.prepare("INSERT INTO profiles (project, name, config, devices) VALUES ('default', 'default', ?, ?)").run(
    JSON.stringify({ "limits.cpu": "1" }),
    JSON.stringify({ root: { type: "disk", path: "/", pool: "p1" }, eth0: { type: "nic", nictype: "p2p" } }),
  );
});
afterEach(() => {
  closeDatabase(db);
  rmSync(dir, { recursive: true, force: true });
});

const all = (sql: string, ...args: unknown[]) => db.prepare(sql).all(...args);
const poolConfig = (name: string) => JSON.parse((db.prepare("SELECT config FROM storage_pools WHERE name = ?").get(name) as { config: string }).config);

describe("storage_pools_config", () => {
  it("has LXD's columns; member keys carry the member id, empty values are not rows (as LXD stores them)", () => {
    expect(db.prepare("SELECT * FROM storage_pools_config").columns().map((c) => c.name)).toEqual(["id", "storage_pool_id", "node_id", "key", "value"]);
    expect(all("SELECT storage_pool_id, node_id, key, value FROM storage_pools_config ORDER BY storage_pool_id, key")).toEqual([
      { storage_pool_id: 1, node_id: 1, key: "source", value: "/srv/p1" },
      { storage_pool_id: 1, node_id: null, key: "user.foo", value: "bah" },
      { storage_pool_id: 2, node_id: 1, key: "source", value: "tank" },
      { storage_pool_id: 2, node_id: null, key: "volume.size", value: "1GiB" },
      { storage_pool_id: 2, node_id: 1, key: "zfs.pool_name", value: "tank" },
    ]);
    const ids = (all("SELECT id FROM storage_pools_config") as { id: number }[]).map((r) => r.id);
    expect(new Set(ids).size).toBe(5);
  });

  it("answers container_recover's query (joined with storage_pools by id, ordered by key)", () => {
    expect(all("SELECT key,value FROM storage_pools_config JOIN storage_pools ON storage_pools.id = storage_pools_config.storage_pool_id WHERE storage_pools.name = 'p1' ORDER BY key")).toEqual([
      { key: "source", value: "/srv/p1" },
      { key: "user.foo", value: "bah" },
    ]);
  });

  it("INSERT, UPDATE and DELETE through it edit the pool's config; a second row for a key is refused", () => {
    // Each statement changes one row of storage_pools (what `lxd sql` reports as "Rows affected: 1").
    const changed = (sql: string) => {
      const before = db.prepare("SELECT total_changes()").pluck().get() as number;
      db.prepare(sql).run();
      return (db.prepare("SELECT total_changes()").pluck().get() as number) - before;
    };
    expect(changed("INSERT INTO storage_pools_config (storage_pool_id, node_id, key, value) VALUES (1, NULL, 'user.new', 'x')")).toBe(1);
    expect(changed("UPDATE storage_pools_config SET value = 'baz' WHERE key = 'user.foo'")).toBe(1);
    expect(changed("UPDATE storage_pools_config SET key = 'user.renamed' WHERE key = 'user.new'")).toBe(1);
    expect(changed("DELETE FROM storage_pools_config WHERE storage_pool_id = 2 AND key = 'volume.size'")).toBe(1);
    expect(poolConfig("p1")).toEqual({ source: "/srv/p1", "user.foo": "baz", "rsync.bwlimit": "", "user.renamed": "x" });
    expect(poolConfig("p2")).toEqual({ source: "tank", "zfs.pool_name": "tank" });
    expect(() => db.prepare("INSERT INTO storage_pools_config (storage_pool_id, key, value) VALUES (1, 'source', '/elsewhere')").run()).toThrow("UNIQUE constraint failed: storage_pools_config.key");
    expect(poolConfig("p1").source).toBe("/srv/p1");
  });

  it("a key that cannot be a JSON path segment is never written", () => {
    db.prepare(`INSERT INTO storage_pools_config (storage_pool_id, key, value) VALUES (1, 'user."x', 'y')`).run();
    db.prepare(`UPDATE storage_pools_config SET key = 'user."z' WHERE key = 'user.foo'`).run();
    expect(poolConfig("p1")).toEqual({ source: "/srv/p1", "user.foo": "bah", "rsync.bwlimit": "" });
  });

  it("rows go with their pool (LXD's ON DELETE CASCADE), and storage_pools_nodes follows the pool's state", () => {
    expect(all("SELECT * FROM storage_pools_nodes")).toEqual([
      { id: 1, storage_pool_id: 1, node_id: 1, state: 1 },
      { id: 2, storage_pool_id: 2, node_id: 1, state: 0 },
    ]);
    db.exec("PRAGMA foreign_keys=ON; DELETE FROM storage_pools WHERE name = 'p1'");
    expect(all("SELECT DISTINCT storage_pool_id FROM storage_pools_config")).toEqual([{ storage_pool_id: 2 }]);
    expect(all("SELECT storage_pool_id FROM storage_pools_nodes")).toEqual([{ storage_pool_id: 2 }]);
  });
});

describe("object config, device and profile tables", () => {
  it("profiles_config, profiles_devices and profiles_devices_config join as LXD's do (device type codes, `type` among the keys)", () => {
    expect(all("SELECT * FROM profiles_config")).toEqual([{ id: 1, profile_id: 1, key: "limits.cpu", value: "1" }]);
    expect(all("SELECT * FROM profiles_devices ORDER BY name")).toEqual([
      { id: 1, profile_id: 1, name: "eth0", type: 1 },
      { id: 2, profile_id: 1, name: "root", type: 2 },
    ]);
    expect(all("SELECT d.name, c.key, c.value FROM profiles_devices_config c JOIN profiles_devices d ON d.id = c.profile_device_id ORDER BY d.name, c.key")).toEqual([
      { name: "eth0", key: "nictype", value: "p2p" },
      { name: "eth0", key: "type", value: "nic" },
      { name: "root", key: "path", value: "/" },
      { name: "root", key: "pool", value: "p1" },
      { name: "root", key: "type", value: "disk" },
    ]);
  });

  it("instances_config is writable; instances_devices and instances_profiles (apply order from 1) follow the instance", () => {
    db.prepare(
      "INSERT INTO instances (project, name, architecture, config, devices, profiles, created_at, last_used_at) VALUES ('default', 'c1', 'x86_64', ?, ?, '[\"default\"]', '', '')",
    ).run(JSON.stringify({ "volatile.eth0.hwaddr": "00:16:3e:00:00:01" }), JSON.stringify({ data: { type: "disk", source: "/srv", path: "/mnt" } }));
    expect(all("SELECT instance_id, key, value FROM instances_config")).toEqual([{ instance_id: 1, key: "volatile.eth0.hwaddr", value: "00:16:3e:00:00:01" }]);
    db.prepare("UPDATE instances_config SET value = '00:16:3e:00:00:02' WHERE key = 'volatile.eth0.hwaddr'").run();
    db.prepare("INSERT INTO instances_config (instance_id, key, value) VALUES (1, 'user.x', 'y')").run();
    expect(JSON.parse((db.prepare("SELECT config FROM instances WHERE id = 1").get() as { config: string }).config)).toEqual({ "volatile.eth0.hwaddr": "00:16:3e:00:00:02", "user.x": "y" });
    expect(all("SELECT instance_id, name, type FROM instances_devices")).toEqual([{ instance_id: 1, name: "data", type: 2 }]);
    expect(all("SELECT instance_id, profile_id, apply_order FROM instances_profiles")).toEqual([{ instance_id: 1, profile_id: 1, apply_order: 1 }]);
    db.prepare("DELETE FROM instances WHERE name = 'c1'").run();
    for (const t of ["instances_config", "instances_devices", "instances_profiles"]) expect(all(`SELECT * FROM ${t}`)).toEqual([]);
  });

  it("storage_volumes_config shows volumes (snapshots are LXD's storage_volumes_snapshots), projects_config the project keys", () => {
    db.prepare("INSERT INTO storage_volumes (pool_id, project, type, name, config, state, created_at) VALUES (1, 'default', 'custom', 'v1', '{\"size\":\"1GiB\"}', 'created', '')").run();
    db.prepare("INSERT INTO storage_volumes (pool_id, project, type, name, config, state, created_at) VALUES (1, 'default', 'custom', 'v1/snap0', '{\"size\":\"1GiB\"}', 'created', '')").run();
    expect(all("SELECT storage_volume_id, key, value FROM storage_volumes_config")).toEqual([{ storage_volume_id: 1, key: "size", value: "1GiB" }]);
    expect(all("SELECT key FROM projects_config ORDER BY key").map((r) => (r as { key: string }).key)).toEqual(["features.images", "features.networks", "features.profiles", "features.storage.volumes"]);
  });

  it("images_properties, images_source (LXD's protocol codes), images_nodes and images_profiles follow the image", () => {
    db.prepare(
      "INSERT INTO images (project, fingerprint, type, size, architecture, created_at, expires_at, uploaded_at, last_use_date, properties) VALUES ('default', 'abc', 'container', 1, 'x86_64', '', '', '', '', '{\"os\":\"busybox\"}')",
    ).run();
    db.prepare("INSERT INTO image_sources (project, fingerprint, server, protocol, alias) VALUES ('default', 'abc', 'https://images.example', 'simplestreams', 'busybox')").run();
    expect(all("SELECT image_id, type, key, value FROM images_properties")).toEqual([{ image_id: 1, type: 0, key: "os", value: "busybox" }]);
    expect(all("SELECT image_id, server, protocol, certificate, alias FROM images_source")).toEqual([{ image_id: 1, server: "https://images.example", protocol: 2, certificate: "", alias: "busybox" }]);
    expect(all("SELECT image_id, node_id FROM images_nodes")).toEqual([{ image_id: 1, node_id: 1 }]);
    expect(all("SELECT * FROM images_profiles")).toEqual([{ image_id: 1, profile_id: 1 }]);
    db.prepare("DELETE FROM images WHERE fingerprint = 'abc'").run();
    for (const t of ["images_properties", "images_source", "images_nodes", "images_profiles"]) expect(all(`SELECT * FROM ${t}`)).toEqual([]);
  });

  it("the stock sqlite3 reads every view from the file alone (the suite's leftover checks)", () => {
    const views = ["storage_pools_config", "storage_pools_nodes", "instances_config", "instances_devices", "instances_profiles", "profiles_config", "profiles_devices", "profiles_devices_config", "storage_volumes_config", "networks_config", "projects_config", "images_properties", "images_source", "images_nodes", "images_profiles"];
    db.pragma("main.wal_checkpoint(TRUNCATE)");
    for (const v of views) {
      const r = spawnSync("sqlite3", [join(dir, "db.bin"), `SELECT count(*) FROM ${v};`], { encoding: "utf8" });
      expect(r.stderr, v).toBe("");
      expect(r.status, v).toBe(0);
    }
    const r = spawnSync("sqlite3", [join(dir, "db.bin"), "SELECT key, value FROM storage_pools_config ORDER BY key;"], { encoding: "utf8" });
    expect(r.stdout).toBe("source|/srv/p1\nsource|tank\nuser.foo|bah\nvolume.size|1GiB\nzfs.pool_name|tank\n");
  });
});
