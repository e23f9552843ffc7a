// The contract every storage driver keeps, run over each driver on the real host
// (test/contract/<driver>.test.ts calls testDriver). Areas a driver doesn't claim in its
// `info` (optimized images) are skipped.
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, closeSync, existsSync, linkSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync, writeSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Driver, DriverDefinition, DriverEnv, Volume } from "../../src/storage/drivers/types.js";
import { mountTable } from "../../src/storage/host.js";
import { diskSize } from "../../src/storage/block-disk.js";

export interface DriverTestOptions {
  definition: DriverDefinition;
  /** Pool config for the test pool (e.g. a small loop size). */
  poolConfig?: Record<string, string>;
  /** Skip the whole suite (tools or kernel support missing) with this reason. */
  skip?: string;
  /**
   * Why volume content can't be reached on this host (ceph without the kernel's rbd module, lvm
   * without device-mapper):
   * the tests that fill, read or mount volumes are skipped with this reason.
   */
  contentSkip?: string;
  /**
   * What the host answers where volume content stops (e.g. lvm without device-mapper): with it,
   * the boundary tests run (empty volumes held without a mount; a fill failing with this answer
   * and leaving nothing behind).
   */
  boundaryError?: RegExp;
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
    const snapshotOf = (v: Volume, snap: string): Volume => ({ ...v, name: `${v.name}/${snap}` });
    /** A test that reaches volume content: skipped, with the reason in its title, where the host can't. */
    const content =
      (title: string, skip = false) =>
      (fn: () => Promise<void>) =>
        it.skipIf(skip || !!opts.contentSkip)(opts.contentSkip ? `${title} (${opts.contentSkip})` : title, fn);
    /** Where content stops with a known answer, the tests of that boundary (not registered elsewhere). */
    const boundary = (title: string, fn: () => Promise<void>) => {
      if (opts.contentSkip && opts.boundaryError) it(title, fn);
    };

    it("probe reports a version", async () => {
      expect(await opts.definition.probe()).toMatch(/^\d+(\.\d+)*/);
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

    // Filesystem quotas: a driver that enforces them also reports usage (dir has setVolumeQuota for block volumes only).
    const probeDriver = opts.definition.load({ name: "probe", config: {} }, { lxdDir: "/nonexistent", log: pino({ level: "silent" }) });
    const quotas = !!probeDriver.setVolumeQuota && !!probeDriver.volumeUsage;

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

    content("exports a volume out of the pool (ownership and modes kept; linked or copied, never the volume itself)")(async () => {
      const v = vol("c-export", "container");
      await driver.createVolume(v, async (path) => {
        writeFileSync(join(path, "f"), "one");
        chownSync(join(path, "f"), 100123, 100456);
        chmodSync(join(path, "f"), 0o640);
      });
      for (const link of [true, false]) {
        const out = join(mkdtempSync(join(lxdDir, "export-")), "tree");
        await driver.exportVolume(v, out, { link });
        const st = statSync(join(out, "f"));
        expect([readFileSync(join(out, "f"), "utf8"), st.uid, st.gid, st.mode & 0o7777]).toEqual(["one", 100123, 100456, 0o640]);
        if (!link) {
          writeFileSync(join(out, "f"), "changed");
          expect(readFileSync(join(await driver.mountVolume(v), "f"), "utf8")).toBe("one");
        }
        rmSync(out, { recursive: true, force: true });
      }
      await driver.deleteVolume(v);
    });

    content("deletes volumes")(async () => {
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

    boundary("holds, renames and deletes an empty volume without mounting it", async () => {
      const v = vol("default_empty");
      await driver.createVolume(v);
      expect(await driver.hasVolume(v)).toBe(true);
      await expect(driver.createVolume(v)).rejects.toThrow("already exists");
      await driver.renameVolume(v, "default_empty2");
      expect(await driver.hasVolume(v)).toBe(false);
      expect(await driver.hasVolume(vol("default_empty2"))).toBe(true);
      await driver.deleteVolume(vol("default_empty2"));
      expect(await driver.hasVolume(vol("default_empty2"))).toBe(false);
    });

    boundary("fails to fill a volume with the host's answer and leaves nothing behind", async () => {
      const v = vol("c-boundary", "container");
      let filled = false;
      await expect(driver.createVolume(v, async () => void (filled = true))).rejects.toThrow(opts.boundaryError);
      expect(filled).toBe(false);
      expect(await driver.hasVolume(v)).toBe(false);
      expect(existsSync(driver.volumePath(v))).toBe(false);
      await expect(driver.mountVolume(v)).rejects.toThrow();
    });

    // ---- custom block volumes (drivers with diskPath) ----

    const blocks = !!opts.definition.load({ name: "probe", config: {} }, { lxdDir: "/nonexistent", log: pino({ level: "silent" }) }).diskPath;
    const MiB = 2 ** 20;
    const blockVol = (name: string, size = "4MiB"): Volume => ({ type: "custom", name, config: { size }, contentType: "block" });
    /** Write or read a few bytes of a raw disk (file or device) at `offset`. */
    const poke = (path: string, offset: number, text: string) => {
      const fd = openSync(path, "r+");
      writeSync(fd, Buffer.from(text), 0, text.length, offset);
      closeSync(fd);
    };
    const peek = (path: string, offset: number, length: number) => {
      const fd = openSync(path, "r");
      const buf = Buffer.alloc(length);
      readSync(fd, buf, 0, length, offset);
      closeSync(fd);
      return buf.toString();
    };

    content("keeps a block volume as a raw disk of its size: grown, never shrunk", !blocks)(async () => {
      const v = blockVol("default_blk", "100000");
      await driver.createVolume(v);
      expect(await driver.hasVolume(v)).toBe(true);
      const disk = await driver.diskPath!(v);
      // LXD's 8KiB boundary (lvm rounds further up to whole extents).
      const size = await diskSize(disk);
      expect(size).toBeGreaterThanOrEqual(106496);
      expect(size % 8192).toBe(0);
      await driver.setVolumeQuota!(v, "8MiB");
      expect(await diskSize(await driver.diskPath!(v))).toBe(8 * MiB);
      await expect(driver.setVolumeQuota!(v, "2MiB")).rejects.toThrow("Block volumes cannot be shrunk: Cannot be shrunk");
      await driver.setVolumeQuota!(v, "");
      expect(await diskSize(await driver.diskPath!(v))).toBe(8 * MiB);
      await expect(driver.createVolume(v)).rejects.toThrow("already exists");
      await driver.unmountVolume(v);
    });

    content("snapshots a block volume's disk, restores it, renames and deletes them", !blocks || !snapshots)(async () => {
      const v = { ...blockVol("default_blk"), config: { size: "8MiB" } };
      poke(await driver.diskPath!(v), 5 * MiB, "one");
      await driver.createSnapshot!(v, "s0");
      poke(await driver.diskPath!(v), 5 * MiB, "two");
      const s0 = snapshotOf(v, "s0");
      expect(peek(await driver.diskPath!(s0), 5 * MiB, 3)).toBe("one");
      await driver.unmountVolume(s0);
      await driver.restoreSnapshot!(v, "s0");
      expect(peek(await driver.diskPath!(v), 5 * MiB, 3)).toBe("one");
      await driver.unmountVolume(v);
      await driver.renameVolume(v, "default_blk2");
      const moved = { ...v, name: "default_blk2" };
      expect(await driver.hasVolume(v)).toBe(false);
      expect(peek(await driver.diskPath!(snapshotOf(moved, "s0")), 5 * MiB, 3)).toBe("one");
      await driver.unmountVolume(snapshotOf(moved, "s0"));
      await driver.deleteVolume(snapshotOf(moved, "s0"));
      expect(await driver.hasVolume(snapshotOf(moved, "s0"))).toBe(false);
    });

    content("syncs a raw disk into a block volume and exports its disk", !blocks)(async () => {
      const v = { ...blockVol("default_blk2"), config: { size: "8MiB" } };
      const src = join(mkdtempSync(join(lxdDir, "blk-src-")), "disk.img");
      writeFileSync(src, "");
      truncateSync(src, 8 * MiB);
      poke(src, 3 * MiB, "synced");
      await driver.syncVolume(v, src);
      const disk = await driver.diskPath!(v);
      expect(peek(disk, 3 * MiB, 6)).toBe("synced");
      expect(peek(disk, 5 * MiB, 3)).toBe("\0\0\0");
      await driver.unmountVolume(v);
      const out = join(mkdtempSync(join(lxdDir, "blk-out-")), "volume.img");
      await driver.exportVolume(v, out);
      expect([statSync(out).size, peek(out, 3 * MiB, 6)]).toEqual([8 * MiB, "synced"]);
      // The export is a copy: writing it leaves the volume alone.
      poke(out, 3 * MiB, "change");
      expect(peek(await driver.diskPath!(v), 3 * MiB, 6)).toBe("synced");
      await driver.unmountVolume(v);
      await driver.deleteVolume(v);
      expect(await driver.hasVolume(v)).toBe(false);
      expect(readdirSync(join(driver.mountPath, "custom"))).toEqual([]);
    });

    boundary("holds, grows, renames and deletes an empty block volume without activating it", async () => {
      if (!blocks) return;
      const v = blockVol("default_blkb");
      await driver.createVolume(v);
      expect(await driver.hasVolume(v)).toBe(true);
      await driver.setVolumeQuota!(v, "8MiB");
      await expect(driver.setVolumeQuota!(v, "4MiB")).rejects.toThrow("Block volumes cannot be shrunk: Cannot be shrunk");
      await expect(driver.diskPath!(v)).rejects.toThrow(opts.boundaryError);
      await driver.renameVolume(v, "default_blkb2");
      expect(await driver.hasVolume(v)).toBe(false);
      await driver.deleteVolume({ ...v, name: "default_blkb2" });
      expect(await driver.hasVolume({ ...v, name: "default_blkb2" })).toBe(false);
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
