// Custom block volumes (content type "block") with the stock client and raw HTTP on dir and
// btrfs pools: a raw disk file root.img of the volume's size (10GiB sparse by default), grown
// by `size` and never shrunk; snapshots, restore, rename; copies and moves in a pool and across
// pools and drivers (with snapshots, --volume-only, from a snapshot, --refresh), the data
// checked byte for byte; LXD's refusals (filesystem-only keys, attaching to a container).
import { existsSync, openSync, readFileSync, readSync, closeSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

const btrfsOk = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");
const MiB = 1 << 20;

let d: InitialisedDaemon;
beforeAll(async () => {
  d = await startInitialisedDaemon();
  if (btrfsOk) {
    const r = d.lxc("storage", "create", "bvbt", "btrfs", "size=300MiB");
    if (r.code !== 0) throw new Error(r.stderr);
  }
});
afterAll(async () => {
  if (!d) return;
  for (const pool of ["default", "bvbt"]) {
    const list = await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom`);
    for (const url of (list.body?.metadata ?? []) as string[]) if (!url.includes("/snapshots/")) await d.api("DELETE", url);
  }
  d.lxc("storage", "delete", "bvbt");
  await d.teardown();
});

const ok = (...args: string[]) => {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r.stdout;
};
const fails = (...args: string[]) => {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")} should fail`).not.toBe(0);
  return r.stderr;
};

const disk = (pool: string, vol: string, snap?: string) =>
  snap ? join(d.dir, "storage-pools", pool, "custom-snapshots", `default_${vol}`, snap, "root.img") : join(d.dir, "storage-pools", pool, "custom", `default_${vol}`, "root.img");

/** Write `text` at `offset` of a volume's disk (as a VM would). */
function poke(path: string, offset: number, text: string): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, Buffer.from(text), 0, text.length, offset);
  } finally {
    closeSync(fd);
  }
}

function peek(path: string, offset: number, length: number): string {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf.toString();
  } finally {
    closeSync(fd);
  }
}

const pools: [string, string][] = [["default", "dir"], ...(btrfsOk ? ([["bvbt", "btrfs"]] as [string, string][]) : [])];

describe.each(pools)("custom block volumes on %s (%s)", (pool, driver) => {
  const other = pools.find(([p]) => p !== pool)?.[0];

  it("advertises custom_block_volumes", async () => {
    expect((await d.api("GET", "/1.0")).body.metadata.api_extensions).toContain("custom_block_volumes");
  });

  it("creates a raw disk of the volume's size (10GiB sparse without one) and shows content_type block", async () => {
    ok("storage", "volume", "create", pool, "bvsized", "--type=block", "size=4MiB");
    expect(statSync(disk(pool, "bvsized")).size).toBe(4 * MiB);
    const v = (await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom/bvsized`)).body.metadata;
    expect([v.content_type, v.config]).toEqual(["block", { size: "4MiB" }]);
    expect(ok("storage", "volume", "show", pool, "bvsized")).toContain("content_type: block");
    // A size that is not a multiple of 8KiB is rounded up, as LXD's block boundary.
    ok("storage", "volume", "create", pool, "bvodd", "--type=block", "size=100000");
    expect(statSync(disk(pool, "bvodd")).size).toBe(106496);
    ok("storage", "volume", "delete", pool, "bvodd");
    ok("storage", "volume", "create", pool, "bvdefault", "--type=block");
    const st = statSync(disk(pool, "bvdefault"));
    expect(st.size).toBe(10 * 1024 * MiB);
    expect(st.blocks * 512).toBeLessThan(MiB);
    expect((await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom/bvdefault`)).body.metadata.config).toEqual({});
    if (driver === "btrfs") {
      // nodatacow on the subvolume, inherited by the disk file (as LXD).
      const { spawnSync } = await import("node:child_process");
      expect(spawnSync("lsattr", ["-d", join(d.dir, "storage-pools", pool, "custom", "default_bvdefault")]).stdout.toString()).toMatch(/C/);
    }
    ok("storage", "volume", "delete", pool, "bvdefault");
    expect(existsSync(join(d.dir, "storage-pools", pool, "custom", "default_bvdefault"))).toBe(false);
  });

  it("grows with size and refuses to shrink, as LXD", async () => {
    ok("storage", "volume", "set", pool, "bvsized", "size=8MiB");
    expect(statSync(disk(pool, "bvsized")).size).toBe(8 * MiB);
    const err = fails("storage", "volume", "set", pool, "bvsized", "size=2MiB");
    expect(err).toContain("Block volumes cannot be shrunk: Cannot be shrunk");
    expect(statSync(disk(pool, "bvsized")).size).toBe(8 * MiB);
    expect((await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom/bvsized`)).body.metadata.config.size).toBe("8MiB");
  });

  it("refuses filesystem-only keys, unknown content types and attaching to a container with LXD's messages", async () => {
    const shifted = await d.api("POST", `/1.0/storage-pools/${pool}/volumes/custom`, { name: "bvx", type: "custom", content_type: "block", config: { "security.shifted": "true" } });
    expect([shifted.status, shifted.body.error]).toEqual([500, 'Invalid option for volume "default_bvx" option "security.shifted"']);
    const bad = await d.api("POST", `/1.0/storage-pools/${pool}/volumes/custom`, { name: "bvx", type: "custom", content_type: "iso" });
    expect([bad.status, bad.body.error]).toEqual([400, "Invalid volume content type name"]);
    const upd = await d.api("PATCH", `/1.0/storage-pools/${pool}/volumes/custom/bvsized`, { config: { "security.unmapped": "true" } });
    expect([upd.status, upd.body.error]).toEqual([500, 'Invalid option for volume "default_bvsized" option "security.unmapped"']);
    expect((await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom/bvx`)).status).toBe(404);
    // The pool's filesystem defaults stay off block volumes.
    ok("storage", "set", pool, "volume.security.shifted", "true");
    try {
      ok("storage", "volume", "create", pool, "bvx", "--type=block", "size=1MiB");
      expect((await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom/bvx`)).body.metadata.config).toEqual({ size: "1MiB" });
      ok("storage", "volume", "delete", pool, "bvx");
    } finally {
      ok("storage", "unset", pool, "volume.security.shifted");
    }
    const c = d.launch(`bvc${driver}`, { start: false });
    const att = d.lxc("storage", "volume", "attach", pool, "bvsized", c, "/data");
    expect(att.code).not.toBe(0);
    expect(att.stderr).toContain(`Error: Failed add validation for device "bvsized": Custom block volumes cannot be used on containers`);
    ok("delete", "-f", c);
  });

  it("snapshots, restores and renames", async () => {
    poke(disk(pool, "bvsized"), 5 * MiB, "first");
    ok("storage", "volume", "snapshot", pool, "bvsized");
    expect(ok("storage", "volume", "show", pool, "bvsized/snap0")).toContain("content_type: block");
    expect(peek(disk(pool, "bvsized", "snap0"), 5 * MiB, 5)).toBe("first");
    poke(disk(pool, "bvsized"), 5 * MiB, "later");
    ok("storage", "volume", "restore", pool, "bvsized", "snap0");
    expect(peek(disk(pool, "bvsized"), 5 * MiB, 5)).toBe("first");
    expect(ok("storage", "volume", "show", pool, "bvsized")).toContain("content_type: block");
    ok("storage", "volume", "rename", pool, "bvsized/snap0", "bvsized/first");
    ok("storage", "volume", "rename", pool, "bvsized", "bvdata");
    expect(peek(disk(pool, "bvdata", "first"), 5 * MiB, 5)).toBe("first");
    expect(peek(disk(pool, "bvdata"), 5 * MiB, 5)).toBe("first");
  });

  it("copies in the pool with snapshots, and from a snapshot", async () => {
    poke(disk(pool, "bvdata"), 6 * MiB, "current");
    ok("storage", "volume", "copy", `${pool}/bvdata`, `${pool}/bvsame`);
    expect(peek(disk(pool, "bvsame"), 6 * MiB, 7)).toBe("current");
    expect(peek(disk(pool, "bvsame", "first"), 5 * MiB, 5)).toBe("first");
    expect(ok("storage", "volume", "show", pool, "bvsame/first")).toContain("content_type: block");
    ok("storage", "volume", "copy", `${pool}/bvdata/first`, `${pool}/bvfromsnap`);
    expect(ok("storage", "volume", "show", pool, "bvfromsnap")).toContain("content_type: block");
    expect(peek(disk(pool, "bvfromsnap"), 6 * MiB, 7)).not.toBe("current");
    expect(peek(disk(pool, "bvfromsnap"), 5 * MiB, 5)).toBe("first");
    ok("storage", "volume", "delete", pool, "bvsame");
    ok("storage", "volume", "delete", pool, "bvfromsnap");
  });

  it.skipIf(!btrfsOk)("copies, refreshes and moves to the other driver's pool (test host has no btrfs otherwise)", async () => {
    const to = other!;
    ok("storage", "volume", "copy", `${pool}/bvdata`, `${to}/bvdata`);
    const copied = (await d.api("GET", `/1.0/storage-pools/${to}/volumes/custom/bvdata`)).body.metadata;
    // Across pools the target's size is the source disk's, in bytes (LXD's VolumeSize override).
    expect([copied.content_type, copied.config.size]).toEqual(["block", String(8 * MiB)]);
    expect(statSync(disk(to, "bvdata")).size).toBe(8 * MiB);
    expect(peek(disk(to, "bvdata"), 6 * MiB, 7)).toBe("current");
    expect(peek(disk(to, "bvdata", "first"), 5 * MiB, 5)).toBe("first");
    ok("storage", "volume", "copy", "--volume-only", `${pool}/bvdata`, `${to}/bvonly`);
    expect(d.lxc("storage", "volume", "show", to, "bvonly/first").code).not.toBe(0);
    expect(peek(disk(to, "bvonly"), 6 * MiB, 7)).toBe("current");
    // --refresh: new snapshots and the current content come over; the target's extra ones go.
    poke(disk(pool, "bvdata"), 6 * MiB, "refresh");
    ok("storage", "volume", "snapshot", pool, "bvdata", "second");
    ok("storage", "volume", "snapshot", to, "bvdata", "extra");
    ok("storage", "volume", "copy", "--refresh", `${pool}/bvdata`, `${to}/bvdata`);
    expect(peek(disk(to, "bvdata"), 6 * MiB, 7)).toBe("refresh");
    expect(peek(disk(to, "bvdata", "second"), 6 * MiB, 7)).toBe("refresh");
    expect(d.lxc("storage", "volume", "show", to, "bvdata/extra").code).not.toBe(0);
    ok("storage", "volume", "delete", to, "bvdata");
    ok("storage", "volume", "delete", to, "bvonly");
    // A move takes the snapshots along and leaves nothing behind.
    ok("storage", "volume", "move", `${pool}/bvdata`, `${to}/bvmoved`);
    expect(d.lxc("storage", "volume", "show", pool, "bvdata").code).not.toBe(0);
    expect(existsSync(join(d.dir, "storage-pools", pool, "custom", "default_bvdata"))).toBe(false);
    expect(ok("storage", "volume", "show", to, "bvmoved/first")).toContain("content_type: block");
    expect(peek(disk(to, "bvmoved"), 6 * MiB, 7)).toBe("refresh");
    ok("storage", "volume", "move", `${to}/bvmoved`, `${pool}/bvdata`);
    expect(peek(disk(pool, "bvdata", "first"), 5 * MiB, 5)).toBe("first");
  });

  it("exports and imports a backup with LXD's layout (backup/volume.img, volume-snapshots/<name>.img)", async () => {
    const { spawnSync } = await import("node:child_process");
    const { mkdtempSync, rmSync } = await import("node:fs");
    const tmp = mkdtempSync("/tmp/bv-backup-");
    try {
      const file = join(tmp, "b.tar.gz");
      ok("storage", "volume", "export", pool, "bvdata", file);
      const members = spawnSync("tar", ["-tzf", file]).stdout.toString().split("\n").filter(Boolean).sort();
      expect(members).toEqual(expect.arrayContaining(["backup/index.yaml", "backup/volume.img", "backup/volume-snapshots/first.img"]));
      ok("storage", "volume", "import", pool, file, "bvrestored");
      const v = (await d.api("GET", `/1.0/storage-pools/${pool}/volumes/custom/bvrestored`)).body.metadata;
      expect(v.content_type).toBe("block");
      expect(peek(disk(pool, "bvrestored"), 6 * MiB, 7)).toBe(peek(disk(pool, "bvdata"), 6 * MiB, 7));
      expect(peek(disk(pool, "bvrestored", "first"), 5 * MiB, 5)).toBe("first");
      expect(ok("storage", "volume", "show", pool, "bvrestored/first")).toContain("content_type: block");
      ok("storage", "volume", "delete", pool, "bvrestored");
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("deletes the volume with its snapshots", () => {
    ok("storage", "volume", "delete", pool, "bvdata");
    expect(existsSync(join(d.dir, "storage-pools", pool, "custom", "default_bvdata"))).toBe(false);
    expect(existsSync(join(d.dir, "storage-pools", pool, "custom-snapshots", "default_bvdata"))).toBe(false);
  });
});
