import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasDeviceMapper, lvmDriver, lvName, NO_DM_REASON } from "../../src/storage/drivers/lvm.js";
import type { DriverEnv } from "../../src/storage/drivers/types.js";
import { cleanupHost, testDriver } from "./storage-driver.js";

// lvm2 keeps its metadata backups in a private LVM_SYSTEM_DIR, never the host's /etc/lvm; the
// driver itself limits scanning to each pool's own loop device.
const lvmDir = mkdtempSync("/tmp/nlxdlvm-conf-");
writeFileSync(join(lvmDir, "lvm.conf"), `backup {\n  backup_dir = "${lvmDir}/backup"\n  archive_dir = "${lvmDir}/archive"\n}\n`);
process.env.LVM_SYSTEM_DIR = lvmDir;
afterAll(() => rmSync(lvmDir, { recursive: true, force: true }));

const version = await lvmDriver.probe();
const dm = hasDeviceMapper();
const noTools = version ? undefined : "no lvm2 tools on this host";

// Thin pools need the kernel's dm-thin-pool target; thick pools run to the activation boundary without device-mapper.
testDriver({ definition: lvmDriver, poolConfig: { size: "256MiB", "volume.size": "32MiB" }, skip: noTools ?? (dm ? undefined : `${NO_DM_REASON} (thin pools need dm-thin-pool)`) });
testDriver({
  definition: lvmDriver,
  poolConfig: { size: "256MiB", "lvm.use_thinpool": "false", "volume.size": "32MiB" },
  skip: noTools,
  contentSkip: dm ? undefined : NO_DM_REASON,
  boundaryError: /Failed to activate LVM logical volume ".*": Failed to run: lvchange --activate y --ignoreactivationskip .*Failure to communicate with kernel device-mapper driver/s,
});

/** What lvm2 shows, read with a filter on the pool's own loop device. */
function lvs(loop: string, vg: string): string[] {
  const filter = `devices { filter=["a|^${loop}$|","r|.*|"] global_filter=["a|^${loop}$|","r|.*|"] }`;
  const out = execFileSync("lvm", ["lvs", "--config", filter, "--noheadings", "-o", "lv_name,lv_size,lv_tags", "--units", "b", "--nosuffix", "--separator", ",", vg], { encoding: "utf8", env: { ...process.env, LVM_SUPPRESS_FD_WARNINGS: "1" } });
  return out.split("\n").map((l) => l.trim()).filter(Boolean);
}

describe.skipIf(!!noTools)("lvm driver on this host", () => {
  let lxdDir: string;
  let env: DriverEnv;
  beforeAll(() => {
    lxdDir = mkdtempSync("/tmp/nlxdlvm-");
    mkdirSync(join(lxdDir, "storage-pools"));
    env = { lxdDir, log: pino({ level: "silent" }) };
  });
  afterAll(() => {
    cleanupHost(lxdDir);
    rmSync(lxdDir, { recursive: true, force: true });
  });

  it("names logical volumes as upstream", () => {
    expect(lvName({ type: "container", name: "c1", config: {} })).toBe("containers_c1");
    expect(lvName({ type: "custom", name: "default_my-vol", config: {} })).toBe("custom_default_my--vol");
    expect(lvName({ type: "container", name: "c-1/snap-0", config: {} })).toBe("containers_c--1-snap--0");
    expect(() => lvName({ type: "custom", name: "default_a b", config: {} })).toThrow("Invalid logical volume name");
    // Block volumes and their snapshots carry LXD's ".block" suffix.
    expect(lvName({ type: "custom", name: "default_my-vol", config: {}, contentType: "block" })).toBe("custom_default_my--vol.block");
    expect(lvName({ type: "custom", name: "default_v/snap0", config: {}, contentType: "block" })).toBe("custom_default_v-snap0.block");
  });

  it("fills pool defaults as upstream", () => {
    const loop = lvmDriver.fillDefaults({ name: "nlxdlvmd", config: { size: "1GiB" } }, env);
    expect(loop).toEqual({ size: "1GiB", source: join(lxdDir, "disks/nlxdlvmd.img"), "lvm.vg_name": "nlxdlvmd", "lvm.thinpool_name": "LXDThinPool" });
    const vg = lvmDriver.fillDefaults({ name: "p", config: { source: "myvg", "lvm.use_thinpool": "false" } }, env);
    expect(vg).toEqual({ source: "myvg", "lvm.vg_name": "myvg", "lvm.use_thinpool": "false", "volatile.initial_source": "myvg" });
    expect(() => lvmDriver.fillDefaults({ name: "p", config: { source: "a", "lvm.vg_name": "b" } }, env)).toThrow("Invalid combination of source and lvm.vg_name properties");
    expect(() => lvmDriver.fillDefaults({ name: "p", config: { "lvm.use_thinpool": "false", "lvm.thinpool_name": "x" } }, env)).toThrow("lvm.use_thinpool cannot be set to false");
    expect(() => lvmDriver.fillDefaults({ name: "p", config: { source: "/tmp/x.img" } }, env)).toThrow("Custom loop file locations are not supported");
  });

  it.skipIf(dm)(`refuses a thin pool with the kernel's answer and leaves nothing behind (${NO_DM_REASON})`, async () => {
    const config = lvmDriver.fillDefaults({ name: "nlxdlvmt", config: { size: "128MiB" } }, env);
    const driver = lvmDriver.load({ name: "nlxdlvmt", config }, env);
    await expect(driver.createPool()).rejects.toThrow(/Error creating LVM thin pool named "LXDThinPool": Failed to run: lvcreate .*thin-pool: Required device-mapper target\(s\) not detected in your kernel/s);
    expect(existsSync(config.source)).toBe(false);
    expect(existsSync(driver.mountPath)).toBe(false);
    expect(execFileSync("losetup", ["-a"], { encoding: "utf8" })).not.toContain(lxdDir);
  });

  it("keeps thick volumes as LVs: create, resize, rename, snapshot at the boundary, delete", async () => {
    const config = lvmDriver.fillDefaults({ name: "nlxdlvmk", config: { size: "256MiB", "lvm.use_thinpool": "false", "volume.size": "16MiB" } }, env);
    const driver = lvmDriver.load({ name: "nlxdlvmk", config }, env);
    await driver.createPool();
    try {
      const loop = execFileSync("losetup", ["-n", "-O", "NAME", "-j", config.source], { encoding: "utf8" }).trim();
      expect(loop).toMatch(/^\/dev\/loop\d+$/);
      expect(lvs(loop, "nlxdlvmk")).toEqual([]);
      const v = { type: "custom" as const, name: "default_v1", config: {} };
      await driver.createVolume(v);
      expect(lvs(loop, "nlxdlvmk")).toEqual([`custom_default_v1,${16 * 2 ** 20},${dm ? "" : "nodelxd_unformatted"}`]);
      // The VG's usage counts the new LV.
      const usage = await driver.usage();
      expect(usage.space.used).toBe(16 * 2 ** 20);
      await driver.setVolumeQuota!(v, "32MiB");
      expect(lvs(loop, "nlxdlvmk")[0]).toMatch(new RegExp(`^custom_default_v1,${32 * 2 ** 20},`));
      await driver.renameVolume(v, "default_v2");
      expect(lvs(loop, "nlxdlvmk").map((l) => l.split(",")[0])).toEqual(["custom_default_v2"]);
      const v2 = { ...v, name: "default_v2" };
      if (!dm) {
        await expect(driver.createSnapshot!(v2, "s0")).rejects.toThrow(/snapshot: Required device-mapper target\(s\) not detected in your kernel/);
        expect(existsSync(join(driver.mountPath, "custom-snapshots/default_v2"))).toBe(false);
        await expect(driver.mountVolume(v2)).rejects.toThrow(/Failure to communicate with kernel device-mapper driver/);
        expect(existsSync(driver.volumePath(v2))).toBe(false);
      }
      await driver.deleteVolume(v2);
      expect(lvs(loop, "nlxdlvmk")).toEqual([]);
    } finally {
      await driver.deletePool();
    }
    expect(existsSync(config.source)).toBe(false);
    expect(execFileSync("losetup", ["-a"], { encoding: "utf8" })).not.toContain(lxdDir);
  });

  /** A loop device on a new file under the test dir (detached by cleanupHost). */
  const newLoop = (name: string, size = "128M") => {
    const file = join(lxdDir, `${name}.raw`);
    execFileSync("truncate", ["-s", size, file]);
    return execFileSync("losetup", ["--find", "--show", file], { encoding: "utf8" }).trim();
  };
  const lvmTool = (...args: string[]) => execFileSync("lvm", args, { encoding: "utf8", stdio: "pipe", env: { ...process.env, LVM_SUPPRESS_FD_WARNINGS: "1" } });

  it("uses a block device: PV and VG made on it, the pool's source becomes the VG", async () => {
    const dev = newLoop("dev");
    const config = lvmDriver.fillDefaults({ name: "nlxdlvmb", config: { source: dev, "lvm.use_thinpool": "false" } }, env);
    expect(config).toEqual({ source: "nlxdlvmb", "lvm.vg_name": "nlxdlvmb", "lvm.use_thinpool": "false", "volatile.initial_source": dev });
    const driver = lvmDriver.load({ name: "nlxdlvmb", config }, env);
    await driver.createPool();
    expect(lvs(dev, "nlxdlvmb")).toEqual([]);
    await driver.createVolume({ type: "custom", name: "default_b", config: { size: "8MiB" } });
    expect(lvs(dev, "nlxdlvmb")[0]).toMatch(/^custom_default_b,/);
    await driver.deleteVolume({ type: "custom", name: "default_b", config: {} });
    await driver.deletePool();
    // The VG is gone; the PV label stays on a device the pool didn't create the file of, as upstream.
    expect(() => lvmTool("vgs", "--config", `devices { filter=["a|^${dev}$|","r|.*|"] }`, "nlxdlvmb")).toThrow();
    execFileSync("losetup", ["-d", dev]);
  });

  it("uses an existing volume group: refuses a non-empty or LXD-marked one unless lvm.vg.force_reuse, keeps it at delete", async () => {
    const dev = newLoop("vg");
    const only = `devices { filter=["a|^${dev}$|","r|.*|"] global_filter=["a|^${dev}$|","r|.*|"] }`;
    // A pool on an existing VG uses the host's lvm.conf: ours admits only this test's loop device.
    const conf = join(lvmDir, "lvm.conf");
    const base = readFileSync(conf, "utf8");
    writeFileSync(conf, `${base}${only}\n`);
    try {
      lvmTool("pvcreate", "--config", only, dev);
      lvmTool("vgcreate", "--config", only, "nlxdlvme", dev);
      lvmTool("lvcreate", "--config", `${only} global { activation=0 }`, "-n", "other", "-L", "8m", "-Zn", "-Wn", "nlxdlvme");
      const config = lvmDriver.fillDefaults({ name: "pe", config: { source: "nlxdlvme", "lvm.use_thinpool": "false" } }, env);
      await expect(lvmDriver.load({ name: "pe", config }, env).createPool()).rejects.toThrow('Volume group "nlxdlvme" is not empty');
      const reuse = lvmDriver.load({ name: "pe", config: { ...config, "lvm.vg.force_reuse": "true" } }, env);
      await reuse.createPool();
      expect(lvmTool("vgs", "--config", only, "--noheadings", "-o", "vg_tags", "nlxdlvme").trim()).toBe("lxd_pool");
      await reuse.createVolume({ type: "custom", name: "default_e", config: { size: "8MiB" } });
      expect(lvs(dev, "nlxdlvme").map((l) => l.split(",")[0])).toEqual(["custom_default_e", "other"]);
      await reuse.deleteVolume({ type: "custom", name: "default_e", config: {} });
      await reuse.deletePool();
      // Someone else's LV and the VG stay.
      expect(lvs(dev, "nlxdlvme").map((l) => l.split(",")[0])).toEqual(["other"]);
    } finally {
      writeFileSync(conf, base);
      try {
        lvmTool("vgremove", "--config", `${only} global { activation=0 }`, "-f", "nlxdlvme");
      } catch {
        /* not made */
      }
      execFileSync("losetup", ["-d", dev]);
    }
  });
});
