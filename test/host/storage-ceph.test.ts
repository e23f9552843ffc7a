// ceph and cephfs pools driven with the stock client against a real single-node Ceph cluster
// (test/helpers/ceph.ts). The kernel here has no rbd module: volumes are made, snapshotted and
// deleted as rbd images, and launching an instance fails exactly at `rbd map`, leaving nothing.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cephUnavailable, kernelHasRbd, rbdList, startCeph, type CephCluster } from "../helpers/ceph.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

const unavailable = cephUnavailable();
const noRbd = !kernelHasRbd();

describe.skipIf(!!unavailable)("ceph and cephfs pools with the stock client", () => {
  let ceph: CephCluster;
  let d: InitialisedDaemon;
  const osdPool = `nlxd-host-${process.pid}`;
  const fsPath = `nlxd-host-${process.pid}`;
  const ls = () => rbdList(ceph, osdPool);

  beforeAll(async () => {
    ceph = startCeph();
    process.env.CEPH_CONF = ceph.conf;
    d = await startInitialisedDaemon();
  });
  afterAll(async () => {
    await d?.teardown();
    ceph?.tool("ceph", "osd", "pool", "delete", osdPool, osdPool, "--yes-i-really-really-mean-it");
    ceph?.release();
  });

  it("lists ceph and cephfs as remote drivers with the cluster tools' version", async () => {
    const r = await d.api("GET", "/1.0");
    const drivers = r.body.metadata.environment.storage_supported_drivers as { Name: string; Version: string; Remote: boolean }[];
    const version = /version (\d+\.\d+\.\d+)/.exec(spawnSync("ceph", ["--version"], { encoding: "utf8" }).stdout)![1];
    expect(drivers).toContainEqual({ Name: "ceph", Version: version, Remote: true });
    expect(drivers).toContainEqual({ Name: "cephfs", Version: version, Remote: true });
    expect(drivers.find((x) => x.Name === "dir")?.Remote).toBe(false);
  });

  it("creates a pool on a new OSD pool; volume create, snapshot and delete change rbd ls -l", () => {
    const c = d.lxc("storage", "create", "c", "ceph", `source=${osdPool}`, "ceph.osd.pg_num=8", "volume.size=64MiB");
    expect(c.code, c.stderr).toBe(0);
    expect(ls()).toEqual([`lxd_${osdPool}`]);
    const show = d.lxc("storage", "get", "c", "volatile.pool.pristine");
    expect(show.stdout.trim()).toBe("true");
    expect(d.lxc("storage", "volume", "create", "c", "v1").code).toBe(0);
    expect(ls()).toEqual(["custom_default_v1", `lxd_${osdPool}`]);
    const snap = d.lxc("storage", "volume", "snapshot", "c", "v1");
    expect(snap.code, snap.stderr).toBe(0);
    expect(ls()).toEqual(["custom_default_v1", "custom_default_v1@snapshot_snap0", `lxd_${osdPool}`]);
    const rename = d.lxc("storage", "volume", "rename", "c", "v1", "v2");
    expect(rename.code, rename.stderr).toBe(0);
    expect(ls()).toEqual(["custom_default_v2", "custom_default_v2@snapshot_snap0", `lxd_${osdPool}`]);
    const info = d.lxc("storage", "info", "c");
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/total space: \d+(\.\d+)?GiB/);
    const del = d.lxc("storage", "volume", "delete", "c", "v2");
    expect(del.code, del.stderr).toBe(0);
    expect(ls()).toEqual([`lxd_${osdPool}`]);
  });

  it.skipIf(!noRbd)("fails a launch exactly at rbd map with the kernel's answer and leaves nothing behind", async () => {
    const name = d.instanceName("x");
    const r = d.lxc("launch", "busybox", name, "-s", "c");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Failed to map RBD volume "[^"]+\/image_[0-9a-f]{64}_ext4": .*rbd: map failed: \(2\) No such file or directory/);
    expect(ls()).toEqual([`lxd_${osdPool}`]);
    expect((await d.api("GET", `/1.0/instances/${name}`)).status).toBe(404);
    expect(JSON.parse(d.lxc("storage", "volume", "list", "c", "--format", "json").stdout)).toEqual([]);
    expect(d.lxc("storage", "delete", "c").code).toBe(0);
    expect(ceph.tool("ceph", "osd", "pool", "get", osdPool, "size").code).not.toBe(0);
  });

  it("puts a custom volume on CephFS, attached to a running container; what it writes shows through a second ceph-fuse mount", () => {
    const c = d.lxc("storage", "create", "fs", "cephfs", `source=cephfs/${fsPath}`);
    expect(c.code, c.stderr).toBe(0);
    const kernel = readFileSync("/proc/filesystems", "utf8").includes("\tceph\n");
    expect(d.lxc("storage", "get", "fs", "volatile.cephfs.client").stdout.trim()).toBe(kernel ? "kernel" : "fuse");
    expect(d.lxc("storage", "volume", "create", "fs", "shared").code).toBe(0);
    const ct = d.launch("fsuser");
    const second = mkdtempSync("/tmp/nodelxd-ceph-second-");
    try {
      const att = d.lxc("storage", "volume", "attach", "fs", "shared", ct, "/data");
      expect(att.code, att.stderr).toBe(0);
      const w = d.lxc("exec", ct, "--", "sh", "-c", "echo from-container > /data/f");
      expect(w.code, w.stderr).toBe(0);
      const m = ceph.tool("ceph-fuse", "--id", "admin", "-r", `/${fsPath}`, second);
      expect(m.code, m.stderr).toBe(0);
      expect(readFileSync(join(second, "custom/default_shared/f"), "utf8")).toBe("from-container\n");
      // A snapshot is a CephFS snapshot, seen by the other client too.
      expect(d.lxc("storage", "volume", "snapshot", "fs", "shared", "s0").code).toBe(0);
      expect(readFileSync(join(second, "custom/default_shared/.snap/s0/f"), "utf8")).toBe("from-container\n");
    } finally {
      spawnSync("umount", [second]);
      rmSync(second, { recursive: true, force: true });
      d.lxc("delete", "-f", ct);
      d.lxc("storage", "volume", "delete", "fs", "shared");
    }
    const del = d.lxc("storage", "delete", "fs");
    expect(del.code, del.stderr).toBe(0);
  });
});
