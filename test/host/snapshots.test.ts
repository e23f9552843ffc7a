// Instance snapshots end to end with the stock client, on dir and btrfs pools: create, list,
// restore, rename, copy to a new instance, delete, expiry, and crash recovery.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

let d: TestDaemon;
const tag = Math.random().toString(36).slice(2, 7);
const created = new Set<string>();
const name = (what: string) => {
  const n = `sn${tag}-${what}`;
  created.add(n);
  return n;
};
const btrfsOk = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

async function wait(res: { status: number; body: any; text: string }) {
  expect(res.status, res.text).toBe(202);
  return (await d.api("GET", `${res.body.operation}/wait?timeout=60`)).body.metadata;
}

const snapDir = (pool: string, inst: string, snap?: string) => join(d.dir, "storage-pools", pool, "containers-snapshots", inst, ...(snap ? [snap] : []));

beforeAll(async () => {
  const image = busyboxImage();
  d = await startDaemon();
  ok("storage", "create", "default", "dir");
  ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
  ok("image", "import", image, "--alias", "busybox");
  if (btrfsOk) ok("storage", "create", "bt", "btrfs", "size=512MiB");
});

afterAll(async () => {
  if (!d) return;
  for (const n of created) spawnSync("lxc-stop", ["-k", "-n", n, "-P", join(d.dir, "containers")]);
  for (const n of created) d.lxc("delete", "-f", n);
  await d.stop().catch(() => {});
});

function lifecycle(pool: string) {
  it(`snapshots, restores, renames, copies and deletes on ${pool}`, async () => {
    const c1 = name(`${pool}-a`);
    const c2 = name(`${pool}-b`);
    ok("launch", "busybox", c1, "-s", pool, "-q");
    ok("exec", c1, "--", "sh", "-c", "echo original > /root/f");
    ok("snapshot", c1, "s0");
    expect(existsSync(snapDir(pool, c1, "s0"))).toBe(true);
    if (pool === "bt") {
      const ro = spawnSync("btrfs", ["property", "get", "-ts", snapDir(pool, c1, "s0"), "ro"], { encoding: "utf8" });
      expect(ro.stdout.trim()).toBe("ro=true");
    }
    expect(ok("info", c1)).toMatch(/Snapshots:[\s\S]*\| s0 +\|/);
    const list = await d.api("GET", `/1.0/instances/${c1}/snapshots`);
    expect(list.body.metadata).toEqual([`/1.0/instances/${c1}/snapshots/s0`]);
    const snap = (await d.api("GET", `/1.0/instances/${c1}/snapshots/s0`)).body.metadata;
    expect(snap).toMatchObject({ name: "s0", stateful: false, expires_at: "0001-01-01T00:00:00Z", size: -1, ephemeral: false, profiles: ["default"] });
    expect(snap.config["image.os"]).toBe("busybox");
    expect(snap.expanded_devices.root).toEqual({ type: "disk", path: "/", pool });

    // The restore brings back the content and keeps the instance running.
    ok("exec", c1, "--", "sh", "-c", "echo changed > /root/f; touch /root/new");
    ok("config", "set", c1, "user.after", "1");
    ok("restore", c1, "s0");
    const inst = (await d.api("GET", `/1.0/instances/${c1}`)).body.metadata;
    expect(inst.status).toBe("Running");
    expect(inst.config["user.after"]).toBeUndefined();
    expect(ok("exec", c1, "--", "cat", "/root/f").trim()).toBe("original");
    expect(d.lxc("exec", c1, "--", "test", "-e", "/root/new").code).toBe(1);
    expect(d.lxc("restore", c1, "nope").stderr).toContain(`Snapshot ${c1}/nope does not exist`);

    ok("rename", `${c1}/s0`, `${c1}/s1`);
    expect((await d.api("GET", `/1.0/instances/${c1}/snapshots/s0`)).status).toBe(404);
    expect(existsSync(snapDir(pool, c1, "s1"))).toBe(true);

    ok("exec", c1, "--", "sh", "-c", "echo after > /root/f");
    ok("copy", `${c1}/s1`, c2);
    expect((await d.api("GET", `/1.0/instances/${c2}`)).body.metadata.status).toBe("Stopped");
    ok("start", c2);
    expect(ok("exec", c2, "--", "cat", "/root/f").trim()).toBe("original");
    expect((await d.api("GET", `/1.0/instances/${c2}/snapshots`)).body.metadata).toEqual([]);

    ok("delete", `${c1}/s1`);
    expect(existsSync(snapDir(pool, c1))).toBe(false);
    expect((await d.api("GET", `/1.0/instances/${c1}/snapshots`)).body.metadata).toEqual([]);
  });
}

describe("snapshots with the stock client", () => {
  lifecycle("default");
  if (btrfsOk) lifecycle("bt");

  it("keeps ownership, modes and hard links in a dir snapshot", async () => {
    const c = name("own");
    ok("init", "busybox", c, "-q");
    const rootfs = join(d.dir, "storage-pools/default/containers", c, "rootfs");
    spawnSync("sh", ["-c", `mkdir -p ${rootfs}/data && echo x > ${rootfs}/data/a && ln ${rootfs}/data/a ${rootfs}/data/b && chown 1234:4321 ${rootfs}/data/a && chmod 4750 ${rootfs}/data/a`]);
    ok("snapshot", c, "s");
    const a = statSync(join(snapDir("default", c, "s"), "rootfs/data/a"));
    const b = statSync(join(snapDir("default", c, "s"), "rootfs/data/b"));
    expect([a.uid, a.gid, a.mode & 0o7777, a.nlink]).toEqual([1234, 4321, 0o4750, 2]);
    expect(b.ino).toBe(a.ino);
  });

  it("publishes a snapshot as an image (host-neutral ownership) and launches from it", async () => {
    const c = name("pub");
    ok("launch", "busybox", c, "-q");
    ok("exec", c, "--", "sh", "-c", "echo in-snap > /root/m; chown 1000:1000 /root/m");
    ok("snapshot", c, "s");
    ok("exec", c, "--", "sh", "-c", "echo later > /root/m");
    const alias = `sn${tag}-img`;
    ok("publish", `${c}/s`, "--alias", alias);
    const m = name("pub2");
    ok("launch", alias, m, "-q");
    expect(ok("exec", m, "--", "cat", "/root/m").trim()).toBe("in-snap");
    expect(ok("exec", m, "--", "stat", "-c", "%u:%g", "/root/m").trim()).toBe("1000:1000");
    expect(ok("exec", c, "--", "cat", "/root/m").trim()).toBe("later");
    expect(readdirSync(join(d.dir, "images")).filter((f) => f.startsWith(".build-"))).toEqual([]);
    ok("delete", "-f", m);
    created.delete(m);
    ok("image", "delete", alias);
  });

  it("copies an instance with its snapshots (unless --instance-only)", async () => {
    const c = name("cpa");
    const c2 = name("cpb");
    const c3 = name("cpc");
    ok("init", "busybox", c, "-q");
    const rootfs = (n: string) => join(d.dir, "storage-pools/default/containers", n, "rootfs");
    spawnSync("sh", ["-c", `echo one > ${rootfs(c)}/v`]);
    ok("snapshot", c, "s0");
    spawnSync("sh", ["-c", `echo two > ${rootfs(c)}/v`]);
    ok("snapshot", c, "s1");
    spawnSync("sh", ["-c", `echo three > ${rootfs(c)}/v`]);
    ok("copy", c, c2);
    const snaps = (await d.api("GET", `/1.0/instances/${c2}/snapshots?recursion=1`)).body.metadata;
    const orig = (await d.api("GET", `/1.0/instances/${c}/snapshots?recursion=1`)).body.metadata;
    expect(snaps.map((s: any) => [s.name, s.created_at])).toEqual(orig.map((s: any) => [s.name, s.created_at]));
    expect(readFileSync(join(rootfs(c2), "v"), "utf8")).toBe("three\n");
    expect(readFileSync(join(snapDir("default", c2, "s0"), "rootfs/v"), "utf8")).toBe("one\n");
    expect(readFileSync(join(snapDir("default", c2, "s1"), "rootfs/v"), "utf8")).toBe("two\n");
    ok("restore", c2, "s0");
    expect(readFileSync(join(rootfs(c2), "v"), "utf8")).toBe("one\n");
    ok("copy", c, c3, "--instance-only");
    expect((await d.api("GET", `/1.0/instances/${c3}/snapshots`)).body.metadata).toEqual([]);
    expect(readFileSync(join(rootfs(c3), "v"), "utf8")).toBe("three\n");
  });

  it("names snapshots from snapshots.pattern and applies snapshots.expiry", async () => {
    const c = name("auto");
    ok("init", "busybox", c, "-q");
    ok("snapshot", c);
    ok("snapshot", c);
    ok("config", "set", c, "snapshots.pattern", "auto%d-x");
    ok("config", "set", c, "snapshots.expiry", "2d");
    ok("snapshot", c);
    const snaps = (await d.api("GET", `/1.0/instances/${c}/snapshots?recursion=1`)).body.metadata;
    expect(snaps.map((s: any) => s.name)).toEqual(["snap0", "snap1", "auto0-x"]);
    const days = (new Date(snaps[2].expires_at).getTime() - new Date(snaps[2].created_at).getTime()) / 86400_000;
    expect(days).toBeCloseTo(2, 3);
    expect(snaps[0].expires_at).toBe("0001-01-01T00:00:00Z");
    const bad = d.lxc("config", "set", c, "snapshots.expiry", "1x");
    expect(bad.stderr).toContain("Invalid config: Invalid expiry expression");
    const sched = d.lxc("config", "set", c, "snapshots.schedule", "bad");
    expect(sched.stderr).toContain("Schedule must be of the form");
    ok("config", "set", c, "snapshots.schedule", "@daily, 0 6 * * *");

    // expires_at given at creation, then changed with PUT (only expires_at is writable).
    const r = await d.api("POST", `/1.0/instances/${c}/snapshots`, { name: "exp", expires_at: "2031-05-06T07:08:09Z" });
    expect((await wait(r)).status).toBe("Success");
    expect((await d.api("GET", `/1.0/instances/${c}/snapshots/exp`)).body.metadata.expires_at).toBe("2031-05-06T07:08:09Z");
    const put = await d.api("PUT", `/1.0/instances/${c}/snapshots/exp`, { expires_at: "2032-01-01T00:00:00Z" });
    expect((await wait(put)).status).toBe("Success");
    expect((await d.api("GET", `/1.0/instances/${c}/snapshots/exp`)).body.metadata.expires_at).toBe("2032-01-01T00:00:00Z");
  });

  it("answers errors as LXD", async () => {
    const c = name("err");
    ok("init", "busybox", c, "-q");
    ok("snapshot", c, "s1");
    ok("snapshot", c, "s2");
    const slash = await d.api("POST", `/1.0/instances/${c}/snapshots`, { name: "a/b" });
    expect([slash.status, slash.body.error]).toEqual([400, 'Invalid snapshot name: Cannot contain "/"']);
    const dots = await d.api("POST", `/1.0/instances/${c}/snapshots`, { name: ".." });
    expect(dots.status).toBe(400);
    const dup = await d.api("POST", `/1.0/instances/${c}/snapshots`, { name: "s1" });
    expect((await wait(dup)).err).toContain('This "instances_snapshots" entry already exists');
    const missing = await d.api("GET", `/1.0/instances/${c}/snapshots/nope`);
    expect([missing.status, missing.body.error]).toEqual([404, `Failed to fetch snapshot "nope" of instance "${c}" in project "default": InstanceSnapshot not found`]);
    const taken = await d.api("POST", `/1.0/instances/${c}/snapshots/s1`, { name: "s2" });
    expect([taken.status, taken.body.error]).toEqual([409, `Name '${c}/s2' already in use`]);
    const stateful = await d.api("POST", `/1.0/instances/${c}/snapshots`, { name: "st", stateful: true });
    expect((await wait(stateful)).err).toBe("Unable to create a stateful snapshot. The instance isn't running");
    // The /1.0/containers alias, and DELETE through the API.
    expect((await d.api("GET", `/1.0/containers/${c}/snapshots`)).body.metadata).toEqual([`/1.0/containers/${c}/snapshots/s1`, `/1.0/containers/${c}/snapshots/s2`]);
    expect((await wait(await d.api("DELETE", `/1.0/instances/${c}/snapshots/s2`))).status).toBe("Success");
    expect((await d.api("GET", `/1.0/instances/${c}/snapshots/s2`)).status).toBe(404);
  });

  it("edits a container volume's and its snapshot's description through the storage API; restore brings the snapshot volume's config back", async () => {
    const c = name("vol");
    ok("init", "busybox", c, "-q");
    ok("storage", "volume", "set", "default", `container/${c}`, "user.foo=snap0");
    ok("snapshot", c, "s1");
    ok("storage", "volume", "set", "default", `container/${c}`, "user.foo=later");
    // `lxc storage volume edit` of the snapshot: GET (with its ETag) then PUT; only the description changes.
    const url = `/1.0/storage-pools/default/volumes/container/${c}/snapshots/s1`;
    const got = await d.api("GET", url);
    expect(got.body.metadata.description).toBe("");
    const stale = await d.api("PUT", url, { description: "x" }, { "If-Match": '"0000"' });
    expect(stale.status).toBe(412);
    const r = d.lxc("storage", "volume", "show", "default", `container/${c}/s1`);
    const edited = spawnSync("lxc", ["storage", "volume", "edit", "default", `container/${c}/s1`], { input: r.stdout.replace(/^description:.*$/m, "description: baz"), env: { ...process.env, LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf" }, encoding: "utf8" });
    expect(edited.status, edited.stderr).toBe(0);
    expect(ok("storage", "volume", "show", "default", `container/${c}/s1`)).toContain("description: baz");
    expect(ok("storage", "volume", "get", "default", `container/${c}/s1`, "user.foo").trim()).toBe("snap0");
    // PATCH without a description keeps it.
    expect((await d.api("PATCH", url, {})).status).toBe(200);
    expect((await d.api("GET", url)).body.metadata.description).toBe("baz");
    ok("restore", c, "s1");
    expect(ok("storage", "volume", "get", "default", `container/${c}`, "user.foo").trim()).toBe("snap0");
  });

  it("lists snapshots in recursion=2 and in the storage API, and deletes them with the instance", async () => {
    const c = name("del");
    ok("init", "busybox", c, "-q");
    ok("snapshot", c, "s1");
    const full = (await d.api("GET", "/1.0/instances?recursion=2")).body.metadata.find((i: any) => i.name === c);
    expect(full.snapshots.map((s: any) => s.name)).toEqual(["s1"]);
    expect(ok("list", "-c", "nS", "-f", "csv", c).trim()).toBe(`${c},1`);
    const vols = (await d.api("GET", "/1.0/storage-pools/default/volumes/container/" + c + "/snapshots")).body.metadata;
    expect(vols).toEqual([`/1.0/storage-pools/default/volumes/container/${c}/snapshots/s1`]);
    expect((await d.api("GET", "/1.0/storage-pools/default")).body.metadata.used_by).toContain(`/1.0/instances/${c}/snapshots/s1`);
    expect(existsSync(join(d.dir, "snapshots", c))).toBe(true);
    ok("delete", c);
    created.delete(c);
    expect(existsSync(snapDir("default", c))).toBe(false);
    expect(existsSync(join(d.dir, "snapshots", c))).toBe(false);
    expect((await d.api("GET", "/1.0/storage-pools/default/volumes")).body.metadata.filter((u: string) => u.includes(c))).toEqual([]);
  });

  it("renaming an instance takes its snapshots along", async () => {
    const c = name("ren");
    const c2 = name("ren2");
    ok("init", "busybox", c, "-q");
    ok("snapshot", c, "s1");
    ok("rename", c, c2);
    expect(existsSync(snapDir("default", c2, "s1"))).toBe(true);
    expect(existsSync(snapDir("default", c))).toBe(false);
    expect((await d.api("GET", `/1.0/instances/${c2}/snapshots/s1`)).status).toBe(200);
    ok("copy", `${c2}/s1`, name("ren3"));
  });

  it("removes a snapshot a crash left half-created", async () => {
    const c = name("crash");
    ok("init", "busybox", c, "-q");
    ok("snapshot", c, "s1");
    ok("snapshot", c, "s2");
    await d.kill9();
    // As if the daemon died while s2 was being made: both records still 'creating'.
    const db = new Database(join(d.dir, "database", "global", "db.bin"));
    db.prepare("UPDATE instance_snapshots SET state = 'creating' WHERE name = 's2'").run();
    db.prepare("UPDATE storage_volumes SET state = 'creating' WHERE name = ?").run(`${c}/s2`);
    db.close();
    await d.restart();
    expect((await d.api("GET", `/1.0/instances/${c}/snapshots`)).body.metadata).toEqual([`/1.0/instances/${c}/snapshots/s1`]);
    expect(existsSync(snapDir("default", c, "s2"))).toBe(false);
    expect(existsSync(snapDir("default", c, "s1"))).toBe(true);
    ok("snapshot", c, "s2");
  });

  it("recovers an interrupted restore swap", async () => {
    const c = name("swap");
    ok("init", "busybox", c, "-q");
    await d.kill9();
    // The volume was renamed away and the staged copy never moved in.
    const vol = join(d.dir, "storage-pools/default/containers", c);
    const old = join(d.dir, "storage-pools/default/containers", `.${c}.old`);
    spawnSync("mv", [vol, old]);
    spawnSync("mkdir", [join(d.dir, "storage-pools/default/containers", `.${c}.restore`)]);
    await d.restart();
    expect(existsSync(join(vol, "rootfs"))).toBe(true);
    expect(existsSync(old)).toBe(false);
    expect(existsSync(join(d.dir, "storage-pools/default/containers", `.${c}.restore`))).toBe(false);
    ok("start", c);
  });
});
