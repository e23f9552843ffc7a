// The StoragePort other features use, driven in-process against a real daemon and real pools.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Daemon } from "../../src/daemon/daemon.js";
import type { StoragePort } from "../../src/ports.js";
import { rawRequest } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

let dir: string;
let daemon: Daemon;
let storage: StoragePort;

async function restart(): Promise<void> {
  await daemon.stop({ stopInstances: false });
  daemon = new Daemon({ lxdDir: dir, logfile: join(dir, "daemon.log") });
  await daemon.start();
  storage = daemon.ports!.storage;
}
const api = (method: string, path: string, body?: unknown) => rawRequest(join(dir, "unix.socket"), method, path, body);

beforeAll(async () => {
  dir = mkdtempSync("/tmp/nodelxd-test-port-");
  daemon = new Daemon({ lxdDir: dir, logfile: join(dir, "daemon.log") });
  await daemon.start();
  storage = daemon.ports!.storage;
  expect((await api("POST", "/1.0/storage-pools", { name: "p", driver: "dir" })).status).toBe(201);
});
afterAll(async () => {
  await daemon?.stop({ stopInstances: false });
  rmSync(dir, { recursive: true, force: true });
});

describe("StoragePort on dir", () => {
  it("assertPool throws LXD's NotFound", () => {
    expect(() => storage.assertPool("p")).not.toThrow();
    expect(() => storage.assertPool("nope")).toThrow("Storage pool not found");
  });

  it("creates, lists, renames and deletes an instance volume", async () => {
    const path = await storage.createInstanceVolume("default", "p", "c1", {});
    expect(path).toBe(join(dir, "storage-pools/p/containers/c1"));
    expect(existsSync(path)).toBe(true);
    expect(readlinkSync(join(dir, "containers/c1"))).toBe(path);
    await expect(storage.createInstanceVolume("default", "p", "c1", {})).rejects.toThrow("Volume by that name already exists");
    const list = await api("GET", "/1.0/storage-pools/p/volumes?recursion=1");
    expect(list.body.metadata).toEqual([
      expect.objectContaining({ name: "c1", type: "container", used_by: ["/1.0/instances/c1"], location: "none", content_type: "filesystem", project: "default", config: {} }),
    ]);
    expect((await api("GET", "/1.0/storage-pools/p/volumes")).body.metadata).toEqual(["/1.0/storage-pools/p/volumes/container/c1"]);
    expect((await api("GET", "/1.0/storage-pools/p/volumes/container/c1")).body.metadata.name).toBe("c1");
    expect((await api("GET", "/1.0/storage-pools/p")).body.metadata.used_by).toEqual(["/1.0/instances/c1"]);
    const busy = await api("DELETE", "/1.0/storage-pools/p");
    expect(busy.body.error).toBe("The storage pool is currently in use");

    writeFileSync(join(path, "marker"), "x");
    expect(await storage.mountInstanceVolume("default", "p", "c1")).toBe(path);
    await storage.renameInstanceVolume("default", "p", "c1", "c2");
    const renamed = join(dir, "storage-pools/p/containers/c2");
    expect(existsSync(join(renamed, "marker"))).toBe(true);
    expect(existsSync(path)).toBe(false);
    expect(readlinkSync(join(dir, "containers/c2"))).toBe(renamed);
    expect(() => lstatSync(join(dir, "containers/c1"))).toThrow();
    expect(await storage.instanceVolumeUsage("default", "p", "c2")).toBeUndefined();
    await storage.deleteInstanceVolume("default", "p", "c2");
    expect(existsSync(renamed)).toBe(false);
    expect(() => lstatSync(join(dir, "containers/c2"))).toThrow();
    expect((await api("GET", "/1.0/storage-pools/p/volumes")).body.metadata).toEqual([]);
    await expect(storage.deleteInstanceVolume("default", "p", "c2")).rejects.toThrow("Storage pool volume not found");
  });

  it("names volumes of other projects <project>_<name>", async () => {
    const path = await storage.createInstanceVolume("proj1", "p", "c1", {});
    expect(path).toBe(join(dir, "storage-pools/p/containers/proj1_c1"));
    expect((await api("GET", "/1.0/storage-pools/p/volumes?project=proj1")).body.metadata).toEqual(["/1.0/storage-pools/p/volumes/container/c1?project=proj1"]);
    expect((await api("GET", "/1.0/storage-pools/p/volumes")).body.metadata).toEqual([]);
    await storage.deleteInstanceVolume("proj1", "p", "c1");
  });

  it("a failed image unpack leaves nothing behind", async () => {
    // The images port the storage service was wired with: its unpack fails half-way.
    const images = daemon.ports!.images;
    const saved = images.unpackInto;
    images.unpackInto = async (_fp, target) => {
      writeFileSync(join(target, "partial"), "x");
      throw new Error("unpack failed");
    };
    try {
      await expect(storage.createInstanceVolume("default", "p", "bad", { image: "abc" })).rejects.toThrow("unpack failed");
    } finally {
      images.unpackInto = saved;
    }
    expect(readdirSync(join(dir, "storage-pools/p/containers"))).toEqual([]);
    expect(existsSync(join(dir, "containers/bad"))).toBe(false);
    expect((await api("GET", "/1.0/storage-pools/p/volumes")).body.metadata).toEqual([]);
  });

  it("unpacks an image into the volume when images are available", async () => {
    const images = daemon.ports!.images;
    // The daemon runs in this process: the client must run asynchronously.
    await promisify(execFile)("lxc", ["image", "import", busyboxImage(), "--alias", "bb"], { env: { ...process.env, LXD_DIR: dir, LXD_CONF: join(dir, ".lxdconf") } });
    const { fingerprint } = images.resolve("default", { alias: "bb" });
    const path = await storage.createInstanceVolume("default", "p", "img1", { image: fingerprint });
    expect(existsSync(join(path, "rootfs/bin/busybox"))).toBe(true);
    expect(existsSync(join(path, "metadata.yaml"))).toBe(true);
    await storage.deleteInstanceVolume("default", "p", "img1");
  });

  it("a rename a crash interrupted ends with the name the disk has", async () => {
    await storage.createInstanceVolume("default", "p", "r1", {});
    await storage.createInstanceVolume("default", "p", "r3", {});
    await daemon.stop({ stopInstances: false });
    const Database = (await import("better-sqlite3")).default;
    const db = new Database(join(dir, "database/global/db.bin"));
    db.prepare("UPDATE storage_volumes SET renaming_to = 'r2' WHERE name = 'r1'").run();
    db.prepare("UPDATE storage_volumes SET renaming_to = 'r4' WHERE name = 'r3'").run();
    db.close();
    // r1 → r2 reached the disk before the crash; r3 → r4 did not.
    const { renameSync } = await import("node:fs");
    renameSync(join(dir, "storage-pools/p/containers/r1"), join(dir, "storage-pools/p/containers/r2"));
    await restart();
    const names = (await api("GET", "/1.0/storage-pools/p/volumes")).body.metadata;
    expect(names).toEqual(["/1.0/storage-pools/p/volumes/container/r2", "/1.0/storage-pools/p/volumes/container/r3"]);
    expect(readlinkSync(join(dir, "containers/r2"))).toBe(join(dir, "storage-pools/p/containers/r2"));
    expect(() => lstatSync(join(dir, "containers/r1"))).toThrow();
    expect(readlinkSync(join(dir, "containers/r3"))).toBe(join(dir, "storage-pools/p/containers/r3"));
    await storage.deleteInstanceVolume("default", "p", "r2");
    await storage.deleteInstanceVolume("default", "p", "r3");
  });
});
