// The contract every storage driver keeps, run over each driver on the real host
// (test/contract/<driver>.test.ts calls testDriver). Areas a driver doesn't claim in its
// `info` (optimized images) are skipped.
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, linkSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Driver, DriverDefinition, DriverEnv, Volume } from "../../src/storage/drivers/types.js";
import { mountTable } from "../../src/storage/host.js";

export interface DriverTestOptions {
  definition: DriverDefinition;
  /** Pool config for the test pool (e.g. a small loop size). */
  poolConfig?: Record<string, string>;
  /** Skip the whole suite (tools or kernel support missing) with this reason. */
  skip?: string;
  /**
   * Why volume content can't be reached on this host (ceph without the kernel's rbd module):
   * the tests that fill, read or mount volumes are skipped with this reason.
   */
  contentSkip?: string;
}

/** Unmount everything under `dir` and detach loop devices backed by files under it. */
export function cleanupHost(dir: string): void {
  for (const m of mountTable().filter((m) => m.mountPoint.startsWith(dir + "/")).reverse()) {
    try {
      execFileSync("umount", ["-l", m.mountPoint]);
    } catch {
      /* already gone */
    }
  }
  try {
    const loops = execFileSync("losetup", ["-a", "-O", "NAME,BACK-FILE", "-n", "--raw"], { encoding: "utf8" });
    for (const line of loops.split("\n")) {
      const [dev, file] = line.split(" ");
      if (file?.startsWith(dir + "/")) execFileSync("losetup", ["-d", dev]);
    }
  } catch {
    /* losetup unavailable */
  }
}

export function loopDevicesFor(file: string): string[] {
  const out = execFileSync("losetup", ["-j", file], { encoding: "utf8" });
  return out.split("\n").filter(Boolean);
}

export function testDriver(opts: DriverTestOptions): void {
  const name = opts.definition.info.name;
  describe.skipIf(!!opts.skip)(`storage driver contract: ${name}`, () => {
    let lxdDir: string;
    let env: DriverEnv;
    let driver: Driver;
    let poolConfig: Record<string, string>;
    const poolName = `ct${process.pid}${Math.floor(Math.random() * 1e6)}`;

    beforeAll(async () => {
      lxdDir = mkdtempSync(`/tmp/nodelxd-test-${name}-`);
      mkdirSync(join(lxdDir, "storage-pools"));
      env = { lxdDir, log: pino({ level: "silent" }) };
      poolConfig = opts.definition.fillDefaults({ name: poolName, config: opts.poolConfig ?? {} }, env);
      driver = opts.definition.load({ name: poolName, config: poolConfig }, env);
    });
    afterAll(() => {
      if (!lxdDir) return;
      cleanupHost(lxdDir);
      rmSync(lxdDir, { recursive: true, force: true });
    });

    const vol = (name: string, type: Volume["type"] = "custom"): Volume => ({ type, name, config: {} });
    /** A test that reaches volume content: skipped, with the reason in its title, where the host can't. */
    const content =
      (title: string, skip = false) =>
      (fn: () => Promise<void>) =>
        it.skipIf(skip || !!opts.contentSkip)(opts.contentSkip ? `${title} (${opts.contentSkip})` : title, fn);

    it("probe reports a version", async () => {
      expect(await opts.definition.probe()).toMatch(/^\d+(\.\d+)*$/);
    });

    it("creates a pool with upstream's directories", async () => {
      await driver.createPool();
      expect(driver.mountPath).toBe(join(lxdDir, "storage-pools", poolName));
      for (const d of ["containers", "containers-snapshots", "custom", "custom-snapshots", "images", "virtual-machines", "virtual-machines-snapshots"]) {
        expect(existsSync(join(driver.mountPath, d)), d).toBe(true);
      }
      expect(await driver.mountPool()).toBe(false);
    });

    it("reports usage", async () => {
      const u = await driver.usage();
      expect(u.space.total).toBeGreaterThan(0);
      expect(u.space.used).toBeGreaterThanOrEqual(0);
      expect(u.space.used).toBeLessThanOrEqual(u.space.total);
    });

    content("creates a volume and fills it")(async () => {
      const v = vol("default_v1");
      await driver.createVolume(v, async (path) => writeFileSync(join(path, "hello"), "world"));
      expect(driver.volumePath(v)).toBe(join(driver.mountPath, "custom/default_v1"));
      expect(await driver.hasVolume(v)).toBe(true);
      expect(readFileSync(join(await driver.mountVolume(v), "hello"), "utf8")).toBe("world");
      await expect(driver.createVolume(v)).rejects.toThrow();
    });

    content("removes a volume whose fill failed")(async () => {
      const v = vol("c-fail", "container");
      await expect(
        driver.createVolume(v, async (path) => {
          writeFileSync(join(path, "partial"), "x");
          throw new Error("fill failed");
        }),
      ).rejects.toThrow("fill failed");
      expect(await driver.hasVolume(v)).toBe(false);
      expect(existsSync(driver.volumePath(v))).toBe(false);
    });

    content("renames a volume")(async () => {
      await driver.renameVolume(vol("default_v1"), "default_v2");
      expect(await driver.hasVolume(vol("default_v1"))).toBe(false);
      expect(readFileSync(join(driver.volumePath(vol("default_v2")), "hello"), "utf8")).toBe("world");
    });

    content("keeps data across unmount and mount of the pool")(async () => {
      await driver.unmountPool();
      await driver.mountPool();
      expect(readFileSync(join(driver.volumePath(vol("default_v2")), "hello"), "utf8")).toBe("world");
    });

    content("copies image volumes cheaply and independently", !opts.definition.info.optimizedImages)(async () => {
      const image = vol("f".repeat(64), "image");
      await driver.createVolume(image, async (path) => {
        mkdirSync(join(path, "rootfs"));
        writeFileSync(join(path, "rootfs/file"), "from-image");
      });
      expect(() => writeFileSync(join(driver.volumePath(image), "rootfs/other"), "x")).toThrow();
      const c1 = vol("c1", "container");
      await driver.createVolumeFromCopy!(c1, image);
      const p = await driver.mountVolume(c1);
      expect(readFileSync(join(p, "rootfs/file"), "utf8")).toBe("from-image");
      writeFileSync(join(p, "rootfs/file"), "changed");
      expect(readFileSync(join(driver.volumePath(image), "rootfs/file"), "utf8")).toBe("from-image");
      await driver.deleteVolume(c1);
      await driver.deleteVolume(image);
      expect(existsSync(driver.volumePath(image))).toBe(false);
    });

    const snapshots = !!opts.definition.load({ name: "probe", config: {} }, { lxdDir: "/nonexistent", log: pino({ level: "silent" }) }).createSnapshot;

    content("snapshots a volume read-only, restores it, renames and deletes snapshots", !snapshots)(async () => {
      const v = vol("default_snap");
      const p = async () => driver.mountVolume(v);
      await driver.createVolume(v, async (path) => writeFileSync(join(path, "f"), "one"));
      await driver.createSnapshot!(v, "s0");
      const s0 = vol("default_snap/s0");
      expect(await driver.hasVolume(s0)).toBe(true);
      expect(driver.volumePath(s0)).toBe(join(driver.mountPath, "custom-snapshots/default_snap/s0"));
      await expect(driver.createSnapshot!(v, "s0")).rejects.toThrow("already exists");
      writeFileSync(join(await p(), "f"), "two");
      writeFileSync(join(await p(), "extra"), "x");
      const snapPath = await driver.mountVolume(s0);
      expect(readFileSync(join(snapPath, "f"), "utf8")).toBe("one");
      if (opts.definition.info.name !== "dir") expect(() => writeFileSync(join(snapPath, "w"), "x")).toThrow();
      await driver.restoreSnapshot!(v, "s0");
      expect(readFileSync(join(await p(), "f"), "utf8")).toBe("one");
      expect(existsSync(join(await p(), "extra"))).toBe(false);
      // The restored volume is writable and the snapshot unchanged by writes to it.
      writeFileSync(join(await p(), "f"), "three");
      expect(readFileSync(join(await driver.mountVolume(s0), "f"), "utf8")).toBe("one");
      expect(readdirSync(join(driver.mountPath, "custom")).filter((n) => n.startsWith("."))).toEqual([]);
      await driver.unmountVolume(s0);
      await driver.renameVolume(s0, "default_snap/s1");
      expect(await driver.hasVolume(s0)).toBe(false);
      expect(readFileSync(join(await driver.mountVolume(vol("default_snap/s1")), "f"), "utf8")).toBe("one");
      await driver.unmountVolume(vol("default_snap/s1"));
      // Renaming the parent takes its snapshots along.
      await driver.renameVolume(v, "default_snap2");
      expect(readFileSync(join(await driver.mountVolume(vol("default_snap2/s1")), "f"), "utf8")).toBe("one");
      await driver.unmountVolume(vol("default_snap2/s1"));
      await driver.deleteVolume(vol("default_snap2/s1"));
      expect(await driver.hasVolume(vol("default_snap2/s1"))).toBe(false);
      expect(readdirSync(join(driver.mountPath, "custom-snapshots"))).toEqual([]);
      await driver.deleteVolume(vol("default_snap2"));
    });

    content("recovers a restore a crash interrupted", !snapshots)(async () => {
      const v = vol("default_rec");
      await driver.createVolume(v, async (path) => writeFileSync(join(path, "f"), "kept"));
      if (!driver.recoverVolume) return void (await driver.deleteVolume(v));
      // A staged tree left behind by a crash before the swap is dropped; the volume stays.
      const path = driver.volumePath(v);
      mkdirSync(join(driver.mountPath, "custom", ".default_rec.restore"));
      await driver.recoverVolume(v);
      expect(readFileSync(join(path, "f"), "utf8")).toBe("kept");
      expect(readdirSync(join(driver.mountPath, "custom")).filter((n) => n.startsWith("."))).toEqual([]);
      await driver.deleteVolume(v);
    });

    const quotas = !!opts.definition.load({ name: "probe", config: {} }, { lxdDir: "/nonexistent", log: pino({ level: "silent" }) }).setVolumeQuota;

    content("limits a volume to its size and reports usage", !quotas)(async () => {
      const v = vol("default_quota");
      await driver.createVolume(v);
      await driver.setVolumeQuota!(v, "8MiB");
      const path = await driver.mountVolume(v);
      execFileSync("dd", ["if=/dev/zero", `of=${join(path, "a")}`, "bs=1M", "count=4", "conv=fsync"], { stdio: "ignore" });
      expect(() => execFileSync("dd", ["if=/dev/zero", `of=${join(path, "b")}`, "bs=1M", "count=8", "conv=fsync"], { stdio: "ignore" })).toThrow();
      const used = await driver.volumeUsage!(v);
      expect(used).toBeGreaterThanOrEqual(4 * 2 ** 20);
      expect(used).toBeLessThanOrEqual(9 * 2 ** 20);
      await driver.setVolumeQuota!(v, "");
      execFileSync("dd", ["if=/dev/zero", `of=${join(path, "b")}`, "bs=1M", "count=8", "conv=fsync"], { stdio: "ignore" });
      await driver.deleteVolume(v);
    });

    content("syncs a volume to an exact copy of a tree (ownership, modes, links; extra entries removed)")(async () => {
      const src = mkdtempSync(join(lxdDir, "sync-src-"));
      mkdirSync(join(src, "d"));
      writeFileSync(join(src, "d/f"), "one");
      chownSync(join(src, "d/f"), 100123, 100456);
      chmodSync(join(src, "d/f"), 0o640);
      linkSync(join(src, "d/f"), join(src, "hard"));
      symlinkSync("/etc/passwd", join(src, "abs-link"));
      const v = vol("c-sync", "container");
      await driver.createVolume(v, async (path) => writeFileSync(join(path, "stale"), "x"));
      await driver.syncVolume(v, src);
      const p = await driver.mountVolume(v);
      expect(existsSync(join(p, "stale"))).toBe(false);
      const st = statSync(join(p, "d/f"));
      expect([st.uid, st.gid, st.mode & 0o7777, st.nlink]).toEqual([100123, 100456, 0o640, 2]);
      expect(statSync(join(p, "hard")).ino).toBe(st.ino);
      // A symlink is copied as a link, never followed.
      expect(readlinkSync(join(p, "abs-link"))).toBe("/etc/passwd");
      writeFileSync(join(src, "d/f"), "two");
      await driver.syncVolume(v, src);
      expect(readFileSync(join(p, "d/f"), "utf8")).toBe("two");
      await driver.deleteVolume(v);
      rmSync(src, { recursive: true, force: true });
    });

    it("deletes volumes", async () => {
      await driver.deleteVolume(vol("default_v2"));
      expect(await driver.hasVolume(vol("default_v2"))).toBe(false);
      expect(readdirSync(join(driver.mountPath, "custom"))).toEqual([]);
    });

    content("refuses to delete a volume with something mounted inside it")(async () => {
      const v = vol("default_mnt");
      await driver.createVolume(v, async (path) => mkdirSync(join(path, "m")));
      const outside = mkdtempSync(join(lxdDir, "outside-"));
      writeFileSync(join(outside, "precious"), "x");
      execFileSync("mount", ["--bind", outside, join(driver.volumePath(v), "m")]);
      try {
        await expect(driver.deleteVolume(v)).rejects.toThrow("is mounted inside it");
      } finally {
        execFileSync("umount", [join(driver.volumePath(v), "m")]);
      }
      expect(existsSync(join(outside, "precious"))).toBe(true);
      await driver.deleteVolume(v);
    });

    it("deletes the pool and leaves nothing behind", async () => {
      await driver.deletePool();
      expect(existsSync(driver.mountPath)).toBe(false);
      expect(mountTable().some((m) => m.mountPoint.startsWith(lxdDir + "/"))).toBe(false);
      if (poolConfig.source?.endsWith(".img")) {
        expect(existsSync(poolConfig.source)).toBe(false);
      }
      const loops = execFileSync("losetup", ["-a"], { encoding: "utf8" });
      expect(loops).not.toContain(lxdDir);
    });
  });
}
