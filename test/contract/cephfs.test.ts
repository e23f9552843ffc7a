// The cephfs driver against a real single-node Ceph cluster (its CephFS "cephfs"), mounted with
// ceph-fuse where the kernel has no ceph module: the whole shared contract, and CephFS snapshots.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cephfsDriver } from "../../src/storage/drivers/cephfs.js";
import type { Driver } from "../../src/storage/drivers/types.js";
import { mountTable } from "../../src/storage/host.js";
import { cephUnavailable, startCeph, type CephCluster } from "../helpers/ceph.js";
import { testDriver } from "./storage-driver.js";

const unavailable = cephUnavailable();
const cluster: CephCluster | undefined = unavailable ? undefined : startCeph();
if (cluster) process.env.CEPH_CONF = cluster.conf;
afterAll(() => cluster?.release());

testDriver({ definition: cephfsDriver, poolConfig: { source: `cephfs/nlxd-ct-${process.pid}` }, skip: unavailable });

describe.skipIf(!!unavailable)("cephfs driver", () => {
  let lxdDir: string;
  let driver: Driver;
  let config: Record<string, string>;
  const env = () => ({ lxdDir, log: pino({ level: "silent" }) });
  const path = `nlxd-fs-${process.pid}`;

  beforeAll(() => {
    lxdDir = mkdtempSync("/tmp/nodelxd-test-cephfs-");
    mkdirSync(join(lxdDir, "storage-pools"));
    config = cephfsDriver.fillDefaults({ name: "fs", config: { source: `cephfs/${path}` } }, env());
    driver = cephfsDriver.load({ name: "fs", config }, env());
  });
  afterAll(async () => {
    await driver?.deletePool().catch(() => {});
    for (const m of mountTable().filter((m) => m.mountPoint.startsWith(lxdDir + "/"))) (await import("node:child_process")).spawnSync("umount", ["-l", m.mountPoint]);
    rmSync(lxdDir, { recursive: true, force: true });
  });

  it("fills defaults as upstream and refuses a missing filesystem", async () => {
    expect(config).toMatchObject({ source: `cephfs/${path}`, "cephfs.path": `cephfs/${path}`, "cephfs.cluster_name": "ceph", "cephfs.user.name": "admin" });
    expect(() => cephfsDriver.fillDefaults({ name: "x", config: {} }, env())).toThrow("Missing required source name/path");
    const missing = cephfsDriver.load({ name: "x", config: cephfsDriver.fillDefaults({ name: "x", config: { source: "nosuchfs/x" } }, env()) }, env());
    await expect(missing.createPool()).rejects.toThrow("The requested 'nosuchfs' CEPHFS doesn't exist");
  });

  it("mounts with the kernel client or ceph-fuse and says which", async () => {
    const learnt = (await driver.createPool()) as Record<string, string>;
    const kernel = readFileSync("/proc/filesystems", "utf8").includes("\tceph\n");
    expect(learnt).toEqual({ "volatile.cephfs.client": kernel ? "kernel" : "fuse" });
    const m = mountTable().find((x) => x.mountPoint === driver.mountPath);
    expect(m?.fsType).toBe(kernel ? "ceph" : "fuse.ceph-fuse");
  });

  it("keeps snapshots as CephFS snapshots reached through links, visible to another client", async () => {
    const v = { type: "custom" as const, name: "default_v", config: {} };
    await driver.createVolume(v, async (p) => writeFileSync(join(p, "f"), "one"));
    await driver.createSnapshot!(v, "s0");
    const link = driver.volumePath({ ...v, name: "default_v/s0" });
    expect(readlinkSync(link)).toBe(join(driver.volumePath(v), ".snap", "s0"));
    // A second, independent ceph-fuse mount sees the volume and its snapshot.
    const second = mkdtempSync(join(lxdDir, "second-"));
    expect(cluster!.tool("ceph-fuse", "--id", "admin", "-r", `/${path}`, second).code).toBe(0);
    try {
      expect(readFileSync(join(second, "custom/default_v/.snap/s0/f"), "utf8")).toBe("one");
      writeFileSync(join(second, "custom/default_v/f"), "from-second");
      expect(readFileSync(join(driver.volumePath(v), "f"), "utf8")).toBe("from-second");
    } finally {
      (await import("node:child_process")).spawnSync("umount", [second]);
    }
    await driver.deleteVolume(v);
    expect(existsSync(driver.volumePath(v))).toBe(false);
    expect(existsSync(link)).toBe(false);
  });

  it("deletes the pool's directory in the filesystem", async () => {
    await driver.deletePool();
    expect(existsSync(driver.mountPath)).toBe(false);
    const root = mkdtempSync(join(lxdDir, "root-"));
    expect(cluster!.tool("ceph-fuse", "--id", "admin", root).code).toBe(0);
    try {
      expect(existsSync(join(root, path))).toBe(false);
    } finally {
      (await import("node:child_process")).spawnSync("umount", [root]);
    }
  });
});
