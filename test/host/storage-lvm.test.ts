// lvm pools on real loop files, driven with the real lxc client; what lvm2 shows (vgs/lvs)
// is the oracle. Without device-mapper in the kernel, activation is the boundary: the
// kernel's answer reaches the client and nothing is left behind.
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Daemon } from "../../src/daemon/daemon.js";
import { hasDeviceMapper, lvmDriver, NO_DM_REASON } from "../../src/storage/drivers/lvm.js";
import { cleanupHost } from "../contract/storage-driver.js";
import { rawRequest } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

const version = await lvmDriver.probe();
const dm = hasDeviceMapper();

let dir: string;
let lvmDir: string;
let daemon: Daemon;
let fingerprint: string;
const api = (method: string, path: string, body?: unknown) => rawRequest(join(dir, "unix.socket"), method, path, body);
/** The real client; stdin is closed at once (`lxc launch` reads a config from a non-terminal stdin). */
const lxc = (...args: string[]) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
    const child = execFile("lxc", args, { env: { ...process.env, LXD_DIR: dir, LXD_CONF: join(dir, ".lxdconf") }, encoding: "utf8" }, (e, stdout, stderr) =>
      resolve({ status: e ? (typeof e.code === "number" ? e.code : 1) : 0, stdout, stderr }),
    );
    child.stdin?.end();
  });

const loopOf = (file: string) => execFileSync("losetup", ["-n", "-O", "NAME", "-j", file], { encoding: "utf8" }).trim();

/** lvm2's own report, scanning only the pool's loop device. */
function lvm(cmd: "vgs" | "lvs", vg: string, fields: string, loop: string): { status: number; rows: string[] } {
  const filter = `devices { filter=["a|^${loop}$|","r|.*|"] global_filter=["a|^${loop}$|","r|.*|"] }`;
  try {
    const out = execFileSync("lvm", [cmd, "--config", filter, "--noheadings", "--units", "b", "--nosuffix", "--separator", ",", "-o", fields, vg], { encoding: "utf8", stdio: "pipe", env: { ...process.env, LVM_SUPPRESS_FD_WARNINGS: "1" } });
    return { status: 0, rows: out.split("\n").map((l) => l.trim()).filter(Boolean) };
  } catch (e) {
    return { status: (e as { status: number }).status, rows: [] };
  }
}

describe.skipIf(!version)("lvm pools with the lxc client", () => {
  beforeAll(async () => {
    dir = mkdtempSync("/tmp/nlxdlvm-host-");
    // lvm2's metadata backups go to a private LVM_SYSTEM_DIR, not the host's /etc/lvm.
    lvmDir = mkdtempSync("/tmp/nlxdlvm-conf-");
    writeFileSync(join(lvmDir, "lvm.conf"), `backup {\n  backup_dir = "${lvmDir}/backup"\n  archive_dir = "${lvmDir}/archive"\n}\n`);
    process.env.LVM_SYSTEM_DIR = lvmDir;
    const tarball = busyboxImage();
    fingerprint = createHash("sha256").update(readFileSync(tarball)).digest("hex");
    daemon = new Daemon({ lxdDir: dir, logfile: join(dir, "daemon.log") });
    await daemon.start();
    const r = await rawRequest(join(dir, "unix.socket"), "POST", "/1.0/images", readFileSync(tarball), { "content-type": "application/octet-stream" });
    expect(r.status, r.text).toBe(202);
    expect((await api("GET", `${r.body.operation}/wait?timeout=120`)).body.metadata.status).toBe("Success");
    expect((await lxc("image", "alias", "create", "busybox", fingerprint)).status).toBe(0);
  });
  afterAll(async () => {
    // Whatever a failed test left: the pools go through the daemon first, then the host is swept.
    for (const p of ["l", "lk"]) await lxc("storage", "delete", p);
    await daemon?.stop({ stopInstances: false });
    if (dir) {
      cleanupHost(dir);
      rmSync(dir, { recursive: true, force: true });
    }
    if (lvmDir) rmSync(lvmDir, { recursive: true, force: true });
  });

  it("lists lvm in storage_supported_drivers with lvm's own version lines", async () => {
    const env = (await api("GET", "/1.0")).body.metadata.environment;
    const entry = env.storage_supported_drivers.find((d: { Name: string }) => d.Name === "lvm");
    expect(entry).toEqual({ Name: "lvm", Version: version, Remote: false });
    const out = execFileSync("lvm", ["version"], { encoding: "utf8", stdio: "pipe", env: { ...process.env, LVM_SUPPRESS_FD_WARNINGS: "1" } });
    expect(version).toContain(/LVM version:\s*(\S+ \S+)/.exec(out)![1]);
    // The kernel driver's version is part of it exactly when the kernel has device-mapper.
    expect(version!.split(" / ").length).toBe(dm ? 3 : 2);
  });

  it(dm ? "creates the VG and its thin pool" : `refuses the default thin pool with the kernel's answer and leaves nothing behind (${NO_DM_REASON})`, async () => {
    const r = await lxc("storage", "create", "l", "lvm", "size=2GiB");
    const img = join(dir, "disks/l.img");
    if (dm) {
      expect(r.status, r.stderr).toBe(0);
      const loop = loopOf(img);
      expect(lvm("vgs", "l", "vg_name,vg_tags", loop).rows).toEqual(["l,lxd_pool"]);
      expect(lvm("lvs", "l", "lv_name,lv_attr", loop).rows[0]).toMatch(/^LXDThinPool,t/);
      expect((await lxc("storage", "delete", "l")).status).toBe(0);
      return;
    }
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Error: Error creating LVM thin pool named "LXDThinPool": Failed to run: lvcreate .*thin-pool: Required device-mapper target\(s\) not detected in your kernel/s);
    expect((await lxc("storage", "list", "--format", "csv")).stdout).not.toMatch(/^l,/m);
    expect(existsSync(img)).toBe(false);
    expect(existsSync(join(dir, "storage-pools/l"))).toBe(false);
    expect(execFileSync("losetup", ["-a"], { encoding: "utf8" })).not.toContain(dir);
  });

  let loop = "";
  it("creates a thick pool: the VG holds the loop file's PV, tagged as LXD's", async () => {
    const r = await lxc("storage", "create", "lk", "lvm", "size=2GiB", "lvm.use_thinpool=false", "volume.size=64MiB");
    expect(r.status, r.stderr).toBe(0);
    loop = loopOf(join(dir, "disks/lk.img"));
    expect(loop).toMatch(/^\/dev\/loop\d+$/);
    expect(lvm("vgs", "lk", "vg_name,vg_tags,pv_count", loop).rows).toEqual(["lk,lxd_pool,1"]);
    const show = await api("GET", "/1.0/storage-pools/lk");
    expect(show.body.metadata.config).toEqual({ size: "2GiB", source: join(dir, "disks/lk.img"), "lvm.vg_name": "lk", "lvm.use_thinpool": "false", "volume.size": "64MiB" });
    const info = await lxc("storage", "info", "lk");
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/space used: 0B/);
  });

  it("volume create, resize, rename and delete change what lvs shows; a snapshot fails with the kernel's answer", async () => {
    const lvs = () => lvm("lvs", "lk", "lv_name,lv_size", loop).rows;
    expect((await lxc("storage", "volume", "create", "lk", "v1")).status).toBe(0);
    expect(lvs()).toEqual([`custom_default_v1,${64 * 2 ** 20}`]);
    // Upstream's FillVolumeConfig: the pool's volume.size, the filesystem and its mount options.
    const show = await api("GET", "/1.0/storage-pools/lk/volumes/custom/v1");
    expect(show.body.metadata.config).toEqual({ size: "64MiB", "block.filesystem": "ext4", "block.mount_options": "discard" });
    expect((await lxc("storage", "volume", "set", "lk", "v1", "size=128MiB")).status).toBe(0);
    expect(lvs()).toEqual([`custom_default_v1,${128 * 2 ** 20}`]);
    const snap = await lxc("storage", "volume", "snapshot", "lk", "v1");
    if (dm) expect(snap.status, snap.stderr).toBe(0);
    else {
      expect(snap.stderr).toMatch(/snapshot: Required device-mapper target\(s\) not detected in your kernel/);
      expect((await lxc("storage", "volume", "list", "lk", "--format", "csv")).stdout.trim().split("\n")).toEqual(["custom,v1,,filesystem,0"]);
      expect(lvs()).toEqual([`custom_default_v1,${128 * 2 ** 20}`]);
    }
    expect((await lxc("storage", "volume", "rename", "lk", "v1", "v2")).status).toBe(0);
    expect(lvs().map((l) => l.split(",")[0])[0]).toBe("custom_default_v2");
    expect((await lxc("storage", "volume", "delete", "lk", "v2")).status).toBe(0);
    expect(lvs()).toEqual([]);
  });

  it(`launch fails at activation with the kernel's answer and leaves nothing behind${dm ? "" : ` (${NO_DM_REASON})`}`, async () => {
    const r = await lxc("launch", "busybox", "x", "-s", "lk");
    if (dm) {
      expect(r.status, r.stderr).toBe(0);
      await lxc("delete", "-f", "x");
      return;
    }
    expect(r.stderr).toMatch(/Failed to activate LVM logical volume "\/dev\/lk\/containers_x": Failed to run: lvchange --activate y --ignoreactivationskip lk\/containers_x: exit status 5 \(.*Failure to communicate with kernel device-mapper driver/s);
    expect((await lxc("list", "--format", "csv", "-c", "n")).stdout.trim()).toBe("");
    expect(lvm("lvs", "lk", "lv_name", loop).rows).toEqual([]);
    expect(readdirSync(join(dir, "storage-pools/lk/containers"))).toEqual([]);
    expect(existsSync(join(dir, "containers/x"))).toBe(false);
    expect((await lxc("storage", "volume", "list", "lk", "--format", "csv")).stdout.trim()).toBe("");
  });

  it("releases the loop device at shutdown and finds the VG again at start", async () => {
    expect((await lxc("storage", "volume", "create", "lk", "kept")).status).toBe(0);
    await daemon.stop({ stopInstances: true });
    expect(execFileSync("losetup", ["-a"], { encoding: "utf8" })).not.toContain(join(dir, "disks/lk.img"));
    daemon = new Daemon({ lxdDir: dir, logfile: join(dir, "daemon.log") });
    await daemon.start();
    loop = loopOf(join(dir, "disks/lk.img"));
    expect(loop).toMatch(/^\/dev\/loop\d+$/);
    expect(lvm("lvs", "lk", "lv_name", loop).rows).toEqual(["custom_default_kept"]);
    expect((await lxc("storage", "volume", "list", "lk", "--format", "csv")).stdout.trim()).toBe("custom,kept,,filesystem,0");
  });

  it("renames the volume group with lvm.vg_name (storage_lvm_vg_rename)", async () => {
    const r = await lxc("storage", "set", "lk", "lvm.vg_name", "nlxdlvmr");
    expect(r.status, r.stderr).toBe(0);
    expect(lvm("vgs", "lk", "vg_name", loop).status).not.toBe(0);
    expect(lvm("lvs", "nlxdlvmr", "lv_name", loop).rows).toEqual(["custom_default_kept"]);
    expect((await lxc("storage", "volume", "delete", "lk", "kept")).status).toBe(0);
    expect(lvm("lvs", "nlxdlvmr", "lv_name", loop).rows).toEqual([]);
  });

  it("deletes the pool: VG, PV, loop device and file gone", async () => {
    expect((await lxc("storage", "delete", "lk")).status).toBe(0);
    expect(lvm("vgs", "nlxdlvmr", "vg_name", loop).status).not.toBe(0);
    expect(existsSync(join(dir, "disks/lk.img"))).toBe(false);
    expect(execFileSync("losetup", ["-a"], { encoding: "utf8" })).not.toContain(dir);
    expect(existsSync(join(dir, "storage-pools/lk"))).toBe(false);
  });
});
