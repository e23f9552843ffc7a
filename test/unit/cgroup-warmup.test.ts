// Which cgroup.procs file the exec warm-up writes: the daemon's own cgroup, found from
// /proc/self/cgroup and /proc/self/mountinfo.
import { expect, test } from "vitest";
import { ownCgroupProcsFile } from "../../src/os/cgroup-warmup.js";

const hybridMounts = [
  "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
  "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
  "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd",
  "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
].join("\n");

test("the unified hierarchy is preferred, joined under its mount point", () => {
  const cg = "9:name=systemd:/system.slice/nodelxd.service\n1:cpu:/system.slice\n0::/system.slice/nodelxd.service\n";
  expect(ownCgroupProcsFile(cg, hybridMounts)).toBe("/sys/fs/cgroup/unified/system.slice/nodelxd.service/cgroup.procs");
});

test("cgroup v1 only: the first hierarchy that is mounted, matched by its controllers", () => {
  const cg = "3:memory:/x\n1:cpu:/daemon\n";
  expect(ownCgroupProcsFile(cg, hybridMounts)).toBe("/sys/fs/cgroup/cpu/daemon/cgroup.procs");
  expect(ownCgroupProcsFile("9:name=systemd:/\n", hybridMounts)).toBe("/sys/fs/cgroup/systemd/cgroup.procs");
});

test("a mount of a sub-tree (inside a container) is joined relative to its root", () => {
  const mounts = "50 1 0:40 /lxc.payload.c1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
  expect(ownCgroupProcsFile("0::/lxc.payload.c1/init.scope\n", mounts)).toBe("/sys/fs/cgroup/init.scope/cgroup.procs");
  expect(ownCgroupProcsFile("0::/elsewhere\n", mounts)).toBeUndefined();
});

test("nothing mounted, nothing written", () => {
  expect(ownCgroupProcsFile("0::/\n", "31 23 0:28 / /sys rw - sysfs sysfs rw")).toBeUndefined();
  expect(ownCgroupProcsFile("", hybridMounts)).toBeUndefined();
});
