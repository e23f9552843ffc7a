// The ceph (rbd) driver against a real single-node Ceph cluster: the shared contract as far as
// this kernel allows (volume content needs `rbd map`), and the rbd-level behaviour upstream has
// (image names, the pool placeholder, protected image snapshots cloned per instance, zombies).
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cephDriver } from "../../src/storage/drivers/ceph.js";
import type { Driver, Volume } from "../../src/storage/drivers/types.js";
import { cephUnavailable, kernelHasRbd, rbdList, startCeph, type CephCluster } from "../helpers/ceph.js";
import { testDriver } from "./storage-driver.js";

const unavailable = cephUnavailable();
const cluster: CephCluster | undefined = unavailable ? undefined : startCeph();
if (cluster) process.env.CEPH_CONF = cluster.conf;
afterAll(() => cluster?.release());
const noRbd = kernelHasRbd() ? undefined : "kernel has no rbd module: rbd map fails";

testDriver({ definition: cephDriver, poolConfig: { source: `nlxd-ct-${process.pid}`, "volume.size": "64MiB" }, skip: unavailable, contentSkip: noRbd, boundaryError: /Failed to map RBD volume/ });

describe.skipIf(!!unavailable)("ceph driver on rbd", () => {
  let lxdDir: string;
  let driver: Driver;
  const osdPool = `nlxd-rbd-${process.pid}`;
  const env = () => ({ lxdDir, log: pino({ level: "silent" }) });
  const vol = (name: string, type: Volume["type"] = "custom", config: Record<string, string> = {}): Volume => ({ type, name, config });
  const ls = () => rbdList(cluster!, osdPool);
  /** The filesystem an rbd image holds, from an exported copy. */
  const fsType = (spec: string) => {
    const out = join(lxdDir, "export.img");
    expect(cluster!.tool("rbd", "export", "--no-progress", spec, out).code).toBe(0);
    const type = spawnSync("blkid", ["-o", "value", "-s", "TYPE", out], { encoding: "utf8" }).stdout.trim();
    rmSync(out);
    return type;
  };

  beforeAll(async () => {
    lxdDir = mkdtempSync("/tmp/nodelxd-test-ceph-");
    mkdirSync(join(lxdDir, "storage-pools"));
    const config = cephDriver.fillDefaults({ name: "rbdpool", config: { source: osdPool, "ceph.osd.pg_num": "8", "volume.size": "32MiB" } }, env());
    expect(config).toMatchObject({ "ceph.cluster_name": "ceph", "ceph.user.name": "admin", "ceph.osd.pool_name": osdPool, source: osdPool, "ceph.osd.pg_num": "8" });
    driver = cephDriver.load({ name: "rbdpool", config }, env());
    expect(await driver.createPool()).toEqual({ "volatile.pool.pristine": "true" });
    driver = cephDriver.load({ name: "rbdpool", config: { ...config, "volatile.pool.pristine": "true" } }, env());
  });
  afterAll(async () => {
    await driver?.deletePool().catch(() => {});
    cluster?.tool("ceph", "osd", "pool", "delete", osdPool, osdPool, "--yes-i-really-really-mean-it");
    rmSync(lxdDir, { recursive: true, force: true });
  });

  it("marks the OSD pool with a placeholder and refuses a second LXD without force_reuse", async () => {
    expect(ls()).toEqual([`lxd_${osdPool}`]);
    const other = cephDriver.load({ name: "other", config: cephDriver.fillDefaults({ name: "other", config: { source: osdPool } }, env()) }, env());
    await expect(other.createPool()).rejects.toThrow(`Pool '${osdPool}' in cluster 'ceph' seems to be in use by another LXD instance. Use 'ceph.osd.force_reuse=true' to force`);
    const forced = cephDriver.load({ name: "other", config: { ...cephDriver.fillDefaults({ name: "other", config: { source: osdPool } }, env()), "ceph.osd.force_reuse": "true" } }, env());
    expect(await forced.createPool()).toEqual({ "volatile.pool.pristine": "false", "ceph.osd.pg_num": "8" });
    // Deleting a pool that took an existing OSD pool over keeps the OSD pool.
    await cephDriver.load({ name: "other", config: { source: osdPool, "volatile.pool.pristine": "false" } }, env()).deletePool();
    expect(cluster!.tool("ceph", "osd", "pool", "get", osdPool, "size").code).toBe(0);
  });

  it("creates an empty formatted custom volume, snapshots, renames and deletes it as rbd images", async () => {
    await driver.createVolume(vol("default_v1"));
    expect(ls()).toContain("custom_default_v1");
    const info = JSON.parse(cluster!.tool("rbd", "info", "--format", "json", `${osdPool}/custom_default_v1`).stdout);
    expect(info.size).toBe(32 * 2 ** 20);
    expect(info.features).toEqual(["layering"]);
    // The image holds an ext4 filesystem, made without the kernel.
    expect(fsType(`${osdPool}/custom_default_v1`)).toBe("ext4");
    await driver.createSnapshot!(vol("default_v1"), "s0");
    expect(ls()).toContain("custom_default_v1@snapshot_s0");
    await expect(driver.createSnapshot!(vol("default_v1"), "s0")).rejects.toThrow("already exists");
    await driver.renameVolume(vol("default_v1/s0"), "default_v1/s1");
    await driver.renameVolume(vol("default_v1"), "default_v2");
    expect(ls().filter((n) => n.startsWith("custom_"))).toEqual(["custom_default_v2", "custom_default_v2@snapshot_s1"]);
    await driver.restoreSnapshot!(vol("default_v2"), "s1");
    expect(await driver.volumeUsage!(vol("default_v2"))).toBeGreaterThan(0);
    await driver.deleteVolume(vol("default_v2/s1"));
    expect(ls()).not.toContain("custom_default_v2@snapshot_s1");
    await driver.deleteVolume(vol("default_v2"));
    expect(ls()).toEqual([`lxd_${osdPool}`]);
  });

  it("keeps a custom block volume as a bare rbd image \"<name>.block\" (no filesystem), exported without the kernel", async () => {
    const v: Volume = { type: "custom", name: "default_blk", config: { size: "4MiB" }, contentType: "block" };
    await driver.createVolume(v);
    expect(ls()).toContain("custom_default_blk.block");
    await driver.setVolumeQuota!(v, "8MiB");
    await expect(driver.setVolumeQuota!(v, "2MiB")).rejects.toThrow("Block volumes cannot be shrunk: Cannot be shrunk");
    await driver.createSnapshot!(v, "s0");
    const out = join(lxdDir, "blk.img");
    await driver.exportVolume(v, out);
    expect(statSync(out).size).toBe(8 * 2 ** 20);
    expect(spawnSync("blkid", ["-o", "value", "-s", "TYPE", out], { encoding: "utf8" }).stdout.trim()).toBe("");
    rmSync(out);
    await driver.renameVolume(v, "default_blk2");
    expect(ls()).toContain("custom_default_blk2.block");
    const moved = { ...v, name: "default_blk2" };
    expect(await driver.hasVolume({ ...moved, name: "default_blk2/s0" })).toBe(true);
    await driver.deleteVolume({ ...moved, name: "default_blk2/s0" });
    await driver.deleteVolume(moved);
    expect(ls().filter((n) => n.includes("blk"))).toEqual([]);
  });

  it("honours volume.block.filesystem and ceph.rbd.features", async () => {
    const d = cephDriver.load({ name: "rbdpool", config: { source: osdPool, "volume.size": "300MiB", "volume.block.filesystem": "xfs", "ceph.rbd.features": "layering,exclusive-lock" } }, env());
    await d.createVolume(vol("default_x"));
    const info = JSON.parse(cluster!.tool("rbd", "info", "--format", "json", `${osdPool}/custom_default_x`).stdout);
    expect(info.features.sort()).toEqual(["exclusive-lock", "layering"]);
    expect(fsType(`${osdPool}/custom_default_x`)).toBe("xfs");
    await d.deleteVolume(vol("default_x"));
  });

  it.skipIf(!!noRbd)("maps volumes where the kernel can", () => {});

  it("fails a volume that must be filled exactly at rbd map, with the kernel's answer, leaving nothing", async () => {
    const fill = async () => {};
    const err = await driver.createVolume(vol("c1", "container"), fill).catch((e: Error) => e);
    if (!noRbd) return void (await driver.deleteVolume(vol("c1", "container")));
    expect(String(err)).toMatch(new RegExp(`Failed to map RBD volume "${osdPool}/container_c1": .*rbd: map failed: \\(2\\) No such file or directory`));
    expect(ls()).toEqual([`lxd_${osdPool}`]);
  });

  it("refuses a resize that needs the kernel, changing nothing", async () => {
    await driver.createVolume(vol("default_r"));
    const err = await driver.setVolumeQuota!(vol("default_r"), "64MiB").catch((e: Error) => e);
    if (noRbd) {
      expect(String(err)).toContain("rbd: map failed");
      expect(JSON.parse(cluster!.tool("rbd", "info", "--format", "json", `${osdPool}/custom_default_r`).stdout).size).toBe(32 * 2 ** 20);
    }
    await driver.deleteVolume(vol("default_r"));
  });

  it("clones instances from an image's protected snapshot and keeps a deleted image as a zombie until its last clone goes", async () => {
    // The image volume's content would need rbd map; its rbd shape is built the way the driver leaves it.
    const fp = "a".repeat(64);
    const image = `image_${fp}_ext4`;
    expect(cluster!.tool("rbd", "create", "--size", "16M", "--image-feature", "layering", `${osdPool}/${image}`).code).toBe(0);
    expect(cluster!.tool("rbd", "snap", "create", `${osdPool}/${image}@readonly`).code).toBe(0);
    expect(cluster!.tool("rbd", "snap", "protect", `${osdPool}/${image}@readonly`).code).toBe(0);
    expect(await driver.hasVolume(vol(fp, "image"))).toBe(true);
    await driver.createVolumeFromCopy!(vol("c1", "container"), vol(fp, "image"));
    const info = JSON.parse(cluster!.tool("rbd", "info", "--format", "json", `${osdPool}/container_c1`).stdout);
    expect(info.parent).toMatchObject({ pool: osdPool, image, snapshot: "readonly" });
    // The image is deleted while c1 still depends on it: it becomes a zombie.
    await driver.deleteVolume(vol(fp, "image"));
    expect(ls()).toEqual([`lxd_${osdPool}`, "container_c1", `zombie_${image}`, `zombie_${image}@readonly`].sort());
    expect(await driver.hasVolume(vol(fp, "image"))).toBe(false);
    // Re-creating the image brings the zombie back instead of a new image.
    await driver.createVolume(vol(fp, "image"), async () => {});
    expect(ls()).toContain(`${image}@readonly`);
    await driver.deleteVolume(vol(fp, "image"));
    // A snapshot of c1 with a clone of its own becomes a zombie snapshot when deleted.
    await driver.createSnapshot!(vol("c1", "container"), "snap0");
    cluster!.tool("rbd", "snap", "protect", `${osdPool}/container_c1@snapshot_snap0`);
    expect(cluster!.tool("rbd", "clone", `${osdPool}/container_c1@snapshot_snap0`, `${osdPool}/container_c2`).code).toBe(0);
    await driver.deleteVolume(vol("c1/snap0", "container"));
    expect(ls().some((n) => /^container_c1@zombie_snapshot_[0-9a-f]{32}$/.test(n))).toBe(true);
    // c1 goes: it still has a cloned (zombie) snapshot, so it becomes a zombie itself.
    await driver.deleteVolume(vol("c1", "container"));
    expect(ls().some((n) => n.startsWith("zombie_container_c1"))).toBe(true);
    // c1's zombie still holds the zombie image; the last clone going takes both zombies with it.
    expect(ls()).toContain(`zombie_${image}@readonly`);
    await driver.deleteVolume(vol("c2", "container"));
    expect(ls()).toEqual([`lxd_${osdPool}`]);
  });

  it("reports usage from ceph df", async () => {
    const u = await driver.usage();
    expect(u.space.total).toBeGreaterThan(2 ** 30);
    expect(u.space.used).toBeGreaterThanOrEqual(0);
  });

  it("deletes the OSD pool it created", async () => {
    await driver.deletePool();
    expect(cluster!.tool("ceph", "osd", "pool", "get", osdPool, "size").code).not.toBe(0);
  });
});
