// `size` on custom volumes: a btrfs qgroup limit that a container's writer runs into, usage
// and total from the qgroup in /state and `lxc storage volume info`; dir stores it unenforced.
import { existsSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

const btrfsOk = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");
const MiB = 2 ** 20;

let d: InitialisedDaemon;
beforeAll(async () => {
  d = await startInitialisedDaemon();
  if (btrfsOk) {
    const r = d.lxc("storage", "create", "qt", "btrfs", "size=400MiB");
    if (r.code !== 0) throw new Error(r.stderr);
  }
});
afterAll(async () => {
  if (!d) return;
  for (const c of ["qc"]) d.lxc("delete", "-f", d.instanceName(c));
  for (const [pool, vol] of [["qt", "q"], ["default", "dq"]]) await d.api("DELETE", `/1.0/storage-pools/${pool}/volumes/custom/${vol}`);
  d.lxc("storage", "delete", "qt");
  await d.teardown();
});

const ok = (...args: string[]) => {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r.stdout;
};

describe("volume quotas", () => {
  it.skipIf(!btrfsOk)("a 50MiB btrfs volume refuses the 51st MiB inside a container, and the daemon keeps working", { timeout: 120_000 }, async () => {
    const state = async () => (await d.api("GET", "/1.0/storage-pools/qt/volumes/custom/q/state")).body;
    expect((await d.api("GET", "/1.0")).body.metadata.api_extensions).toContain("storage_volume_state_total");
    ok("storage", "volume", "create", "qt", "q");
    // No quota yet: the driver can't tell usage, as upstream.
    expect((await state()).error).toBe("Not supported");
    ok("storage", "volume", "set", "qt", "q", "size=50MiB");
    expect((await state()).metadata.usage.total).toBe(50 * MiB);
    const c = d.launch("qc");
    ok("storage", "volume", "attach", "qt", "q", c, "/data");
    ok("exec", c, "--", "dd", "if=/dev/zero", "of=/data/a", "bs=1M", "count=40", "conv=fsync");
    const full = d.lxc("exec", c, "--", "dd", "if=/dev/zero", "of=/data/b", "bs=1M", "count=20", "conv=fsync");
    expect(full.code).not.toBe(0);
    // btrfs reports the qgroup limit as EDQUOT ("Disk quota exceeded").
    expect(full.stderr).toMatch(/Disk quota exceeded|No space left on device/);
    const sizes = ok("exec", c, "--", "sh", "-c", "sync; du -sk /data/a /data/b");
    const kib = sizes.trim().split("\n").reduce((n, l) => n + Number(l.split(/\s+/)[0]), 0);
    expect(kib).toBeLessThanOrEqual(51 * 1024);
    // The daemon answers and reports the qgroup's usage.
    expect((await d.api("GET", "/1.0")).status).toBe(200);
    const used = (await state()).metadata.usage.used;
    expect(used).toBeGreaterThan(40 * MiB);
    expect(used).toBeLessThanOrEqual(51 * MiB);
    const info = ok("storage", "volume", "info", "qt", "q");
    expect(info).toContain("Total: 50.00MiB");
    expect(info).toMatch(/Usage: \d+\.\d\dMiB/);
    // Raising the limit lets the writer go on; lifting it keeps the data.
    ok("storage", "volume", "set", "qt", "q", "size=100MiB");
    ok("exec", c, "--", "dd", "if=/dev/zero", "of=/data/b", "bs=1M", "count=20", "conv=fsync");
    ok("storage", "volume", "unset", "qt", "q", "size");
    expect((await state()).metadata.usage.total).toBe(0);
    ok("storage", "volume", "detach", "qt", "q", c);
  });

  it("a created btrfs volume with size is limited from the start; a bad size changes nothing", { timeout: 60_000 }, async () => {
    if (!btrfsOk) return;
    ok("storage", "volume", "create", "qt", "q2", "size=20MiB");
    expect((await d.api("GET", "/1.0/storage-pools/qt/volumes/custom/q2/state")).body.metadata.usage.total).toBe(20 * MiB);
    const bad = d.lxc("storage", "volume", "set", "qt", "q2", "size=abc");
    expect(bad.stderr).toContain('Invalid value for volume "default_q2" option "size": Invalid value: abc');
    expect((await d.api("GET", "/1.0/storage-pools/qt/volumes/custom/q2")).body.metadata.config).toEqual({ size: "20MiB" });
    ok("storage", "volume", "delete", "qt", "q2");
  });

  it.skipIf(!btrfsOk)("an instance root on btrfs takes the root disk's size as its quota, at launch and when changed", { timeout: 120_000 }, async () => {
    const c = d.instanceName("qroot");
    ok("launch", "busybox", c, "-q", "-s", "qt", "-d", "root,size=30MiB");
    const full = d.lxc("exec", c, "--", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=40", "conv=fsync");
    expect(full.code).not.toBe(0);
    expect(full.stderr).toMatch(/Disk quota exceeded|No space left on device/);
    ok("exec", c, "--", "rm", "/big");
    // /state reads the root's usage from its qgroup.
    const disk = (await d.api("GET", `/1.0/instances/${c}/state`)).body.metadata.disk;
    expect(Object.keys(disk)).toEqual(["root"]);
    expect(disk.root.usage).toBeGreaterThan(0);
    expect(disk.root.usage).toBeLessThanOrEqual(31 * MiB);
    ok("config", "device", "set", c, "root", "size=100MiB");
    ok("exec", c, "--", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=40", "conv=fsync");
    expect((await d.api("GET", "/1.0")).status).toBe(200);
    ok("delete", "-f", c);
  });

  it("dir pools store size unenforced and answer 'Not supported' for usage, as LXD without project quotas", async () => {
    ok("storage", "volume", "create", "default", "dq", "size=10MiB");
    expect((await d.api("GET", "/1.0/storage-pools/default/volumes/custom/dq")).body.metadata.config).toEqual({ size: "10MiB" });
    const info = d.lxc("storage", "volume", "info", "default", "dq");
    expect(info.stderr.trim()).toBe("Error: Not supported");
  });
});
