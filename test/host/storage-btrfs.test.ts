// btrfs pools on real loop files, driven through the API, the lxc client and the StoragePort.
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Daemon } from "../../src/daemon/daemon.js";
import type { StoragePort } from "../../src/ports.js";
import { mountTable } from "../../src/storage/host.js";
import { cleanupHost } from "../contract/storage-driver.js";
import { rawRequest } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

const supported = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");

let dir: string;
let daemon: Daemon;
let storage: StoragePort;
let fingerprint: string;
const api = (method: string, path: string, body?: unknown) => rawRequest(join(dir, "unix.socket"), method, path, body);
// The daemon runs in this process: the client must run asynchronously.
const lxc = (...args: string[]) =>
  promisify(execFile)("lxc", args, { env: { ...process.env, LXD_DIR: dir, LXD_CONF: join(dir, ".lxdconf") }, encoding: "utf8" }).then(
    (r) => ({ status: 0, stdout: r.stdout, stderr: r.stderr }),
    (e) => ({ status: e.code ?? 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" }),
  );

async function startDaemon(): Promise<void> {
  daemon = new Daemon({ lxdDir: dir, logfile: join(dir, "daemon.log") });
  await daemon.start();
  storage = daemon.ports!.storage;
}

/** Import the busybox test image through the images API, as a user would. */
async function importImage(tarball: string): Promise<void> {
  const r = await rawRequest(join(dir, "unix.socket"), "POST", "/1.0/images", readFileSync(tarball), { "content-type": "application/octet-stream" });
  expect(r.status, r.text).toBe(202);
  const done = await api("GET", `${r.body.operation}/wait?timeout=120`);
  expect(done.body.metadata.status, done.text).toBe("Success");
}

const poolMounted = (pool: string) => mountTable().find((m) => m.mountPoint === join(dir, "storage-pools", pool));

describe.skipIf(!supported)("btrfs pools", () => {
  beforeAll(async () => {
    dir = mkdtempSync("/tmp/nodelxd-test-btrfs-");
    const tarball = busyboxImage();
    fingerprint = createHash("sha256").update(readFileSync(tarball)).digest("hex");
    await startDaemon();
    await importImage(tarball);
  });
  afterAll(async () => {
    await daemon?.stop({ stopInstances: false });
    if (dir) {
      cleanupHost(dir);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("creates a loop-backed pool with LXD's config", async () => {
    const r = await api("POST", "/1.0/storage-pools", { name: "bt", driver: "btrfs", config: { size: "512MiB" } });
    expect(r.status, r.text).toBe(201);
    const g = await api("GET", "/1.0/storage-pools/bt");
    expect(g.body.metadata.config).toEqual({ size: "512MiB", source: join(dir, "disks/bt.img") });
    expect(poolMounted("bt")?.fsType).toBe("btrfs");
    expect(poolMounted("bt")?.source).toMatch(/^\/dev\/loop\d+$/);
    const res = await api("GET", "/1.0/storage-pools/bt/resources");
    expect(res.body.metadata.space.total).toBeGreaterThan(400 * 2 ** 20);
    expect(res.body.metadata.space.total).toBeLessThanOrEqual(512 * 2 ** 20);
    const env = (await api("GET", "/1.0")).body.metadata.environment;
    expect(env.storage).toBe("btrfs");
    // ceph and cephfs join where the Ceph tools are installed, lvm wherever its tool is (as upstream), zfs nowhere here.
    expect(env.storage_supported_drivers.map((d: any) => d.Name).filter((n: string) => !n.startsWith("ceph"))).toEqual(["dir", "btrfs", ...(existsSync("/sbin/lvm") ? ["lvm"] : [])]);
  });

  it("validates btrfs keys", async () => {
    const cases: [unknown, string][] = [
      [{ foo: "x" }, 'Invalid option "foo"'],
      [{ size: "abc" }, 'Invalid value for option "size": Invalid value: abc'],
      [{ size: "-1" }, 'Invalid value for option "size": Invalid value: -1'],
      [{ "volume.block.filesystem": "ext4" }, 'Invalid option "volume.block.filesystem"'],
    ];
    for (const [config, error] of cases) {
      const r = await api("POST", "/1.0/storage-pools", { name: "btbad", driver: "btrfs", config });
      expect([r.status, r.body.error]).toEqual([500, error]);
    }
    expect(existsSync(join(dir, "disks/btbad.img"))).toBe(false);
  });

  it("unpacks an image once and snapshots it per instance", async () => {
    const p1 = await storage.createInstanceVolume("default", "bt", "c1", { image: fingerprint });
    const p2 = await storage.createInstanceVolume("default", "bt", "c2", { image: fingerprint });
    expect(existsSync(join(p1, "rootfs/bin/busybox"))).toBe(true);
    expect(existsSync(join(p2, "metadata.yaml"))).toBe(true);
    const imagePath = join(dir, "storage-pools/bt/images", fingerprint);
    expect(execFileSync("btrfs", ["property", "get", "-ts", imagePath, "ro"], { encoding: "utf8" }).trim()).toBe("ro=true");
    const show = execFileSync("btrfs", ["subvolume", "show", p1], { encoding: "utf8" });
    const imageUuid = /^\s*UUID:\s*(\S+)/m.exec(execFileSync("btrfs", ["subvolume", "show", imagePath], { encoding: "utf8" }))![1];
    expect(show).toMatch(new RegExp(`Parent UUID:\\s*${imageUuid}`));
    writeFileSync(join(p1, "rootfs/only-c1"), "x");
    expect(existsSync(join(p2, "rootfs/only-c1"))).toBe(false);
    const vols = (await api("GET", "/1.0/storage-pools/bt/volumes?recursion=1")).body.metadata;
    expect(vols.map((v: any) => `${v.type}/${v.name}`).sort()).toEqual(["container/c1", "container/c2", `image/${fingerprint}`]);
    expect((await api("GET", `/1.0/storage-pools/bt/volumes/image/${fingerprint}`)).body.metadata.used_by).toEqual([`/1.0/images/${fingerprint}`]);
  });

  it("deletes instance volumes with nested subvolumes", async () => {
    const p1 = await storage.mountInstanceVolume("default", "bt", "c1");
    execFileSync("btrfs", ["subvolume", "create", join(p1, "rootfs/nested")]);
    execFileSync("btrfs", ["subvolume", "create", join(p1, "rootfs/nested/deeper")]);
    await storage.deleteInstanceVolume("default", "bt", "c1");
    expect(existsSync(p1)).toBe(false);
  });

  it("remounts pools at start", async () => {
    await daemon.stop({ stopInstances: false });
    execFileSync("umount", [join(dir, "storage-pools/bt")]);
    expect(poolMounted("bt")).toBeUndefined();
    await startDaemon();
    expect(poolMounted("bt")?.fsType).toBe("btrfs");
    expect(existsSync(join(await storage.mountInstanceVolume("default", "bt", "c2"), "rootfs/bin/busybox"))).toBe(true);
  });

  it("finishes off a volume a crash left half-created", async () => {
    await daemon.stop({ stopInstances: false });
    const Database = (await import("better-sqlite3")).default;
    const db = new Database(join(dir, "database/global/db.bin"));
    db.prepare("INSERT INTO storage_volumes (pool_id, project, type, name, state, created_at) SELECT id, 'default', 'container', 'half', 'creating', '' FROM storage_pools WHERE name = 'bt'").run();
    db.close();
    execFileSync("btrfs", ["subvolume", "create", join(dir, "storage-pools/bt/containers/half")]);
    await startDaemon();
    expect(existsSync(join(dir, "storage-pools/bt/containers/half"))).toBe(false);
    expect((await api("GET", "/1.0/storage-pools/bt/volumes/container/half")).status).toBe(404);
  });

  it("grows the pool and changes mount options", async () => {
    const before = (await api("GET", "/1.0/storage-pools/bt/resources")).body.metadata.space.total;
    const r = await api("PATCH", "/1.0/storage-pools/bt", { config: { size: "768MiB" } });
    expect(r.status, r.text).toBe(200);
    const after = (await api("GET", "/1.0/storage-pools/bt/resources")).body.metadata.space.total;
    expect(after).toBeGreaterThan(before);
    const shrink = await api("PATCH", "/1.0/storage-pools/bt", { config: { size: "300MiB" } });
    expect(shrink.body.error).toBe("Pool cannot be shrunk");
    expect((await api("GET", "/1.0/storage-pools/bt")).body.metadata.config.size).toBe("768MiB");
    expect((await api("PATCH", "/1.0/storage-pools/bt", { config: { "btrfs.mount_options": "user_subvol_rm_allowed,noatime" } })).status).toBe(200);
    const opts = readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.includes(` ${join(dir, "storage-pools/bt")} `))!;
    expect(opts).toContain("noatime");
  });

  it("deleting the image drops its unpacked copy from the pool; instances made from it keep their files", async () => {
    const imagePath = join(dir, "storage-pools/bt/images", fingerprint);
    expect(existsSync(imagePath)).toBe(true);
    const r = await api("DELETE", `/1.0/images/${fingerprint}`);
    expect(r.status, r.text).toBe(202);
    expect((await api("GET", `${r.body.operation}/wait?timeout=60`)).body.metadata.status).toBe("Success");
    expect((await api("GET", `/1.0/storage-pools/bt/volumes/image/${fingerprint}`)).status).toBe(404);
    expect(existsSync(imagePath)).toBe(false);
    expect(existsSync(join(await storage.mountInstanceVolume("default", "bt", "c2"), "rootfs/bin/busybox"))).toBe(true);
  });

  it("deleting the pool removes its image volumes, the mount, the loop device and the file", async () => {
    const busy = await api("DELETE", "/1.0/storage-pools/bt");
    expect(busy.body.error).toBe("The storage pool is currently in use");
    await storage.deleteInstanceVolume("default", "bt", "c2");
    const r = await api("DELETE", "/1.0/storage-pools/bt");
    expect(r.status, r.text).toBe(200);
    expect(poolMounted("bt")).toBeUndefined();
    expect(existsSync(join(dir, "disks/bt.img"))).toBe(false);
    expect(existsSync(join(dir, "storage-pools/bt"))).toBe(false);
    expect(execFileSync("losetup", ["-a"], { encoding: "utf8" })).not.toContain(dir);
  });

  it("lxc storage create/info/set/delete with a default-sized loop file", async () => {
    const c = await lxc("storage", "create", "bt2", "btrfs");
    expect(c.status, c.stderr).toBe(0);
    const show = (await lxc("storage", "show", "bt2")).stdout;
    expect(show).toMatch(/size: \d+GiB/);
    expect(show).toContain(`source: ${join(dir, "disks/bt2.img")}`);
    expect((await lxc("storage", "info", "bt2")).stdout).toContain("driver: btrfs");
    expect((await lxc("storage", "set", "bt2", "user.note", "hi")).status).toBe(0);
    const d = await lxc("storage", "delete", "bt2");
    expect(d.status, d.stderr).toBe(0);
    expect(existsSync(join(dir, "disks/bt2.img"))).toBe(false);
  });

  it("a pool on an existing btrfs path is a subvolume bind-mounted into place", async () => {
    expect((await api("POST", "/1.0/storage-pools", { name: "host", driver: "btrfs", config: { size: "256MiB" } })).status).toBe(201);
    const source = join(dir, "storage-pools/host/custom/nested-pool");
    const r = await api("POST", "/1.0/storage-pools", { name: "onpath", driver: "btrfs", config: { source } });
    expect(r.status, r.text).toBe(201);
    expect(poolMounted("onpath")).toBeDefined();
    expect(existsSync(join(source, "containers"))).toBe(true);
    expect((await api("DELETE", "/1.0/storage-pools/onpath")).status).toBe(200);
    expect(existsSync(source)).toBe(false);
    expect((await api("DELETE", "/1.0/storage-pools/host")).status).toBe(200);
  });
});
