// `lxd recover` bringing back instances and custom volumes whose database records were lost
// (removed with `lxd sql`, as LXD's suite does): the instance from the backup.yaml the daemon
// keeps in its volume, with its snapshots, volume config and attached custom volume; a container
// that kept running while its records were gone is adopted as running; a pool whose record was
// deleted comes back with the config an instance on it recorded.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAIN } from "../helpers/daemon.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
const project = `rc${process.pid.toString(36)}`;

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}
const inProject = (...args: string[]) => ok("--project", project, ...args);

function lxd(args: string[], input = "") {
  const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...process.env, LXD_DIR: d.dir }, input, encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}
const sql = (q: string) => {
  const r = lxd(["sql", "global", `PRAGMA foreign_keys=ON; ${q}`]);
  expect(r.code, r.stderr).toBe(0);
};

beforeAll(async () => {
  d = await startInitialisedDaemon();
  ok("project", "create", project, "-c", "features.images=false", "-c", "features.profiles=true", "-c", "features.storage.volumes=true");
  inProject("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
  inProject("profile", "device", "add", "default", "eth0", "nic", "nictype=p2p");
}, 120_000);

const lostPool = `tbrc${process.pid.toString(36)}`;

afterAll(async () => {
  if (d) {
    d.lxc("delete", "-f", "c1", "--project", project);
    d.lxc("delete", "-f", "c2", "--project", project);
    d.lxc("storage", "volume", "delete", "default", "vol1", "--project", project);
    d.lxc("storage", "volume", "delete", lostPool, "vol2", "--project", project);
    d.lxc("storage", "delete", lostPool);
    d.lxc("project", "delete", project);
    await d.teardown();
  }
}, 120_000);

describe("lxd recover", () => {
  it("recreates an instance with its snapshot and volume config, and a custom volume with its snapshot", async () => {
    inProject("init", "busybox", "c1");
    inProject("storage", "volume", "create", "default", "vol1");
    inProject("storage", "volume", "attach", "default", "vol1", "c1", "/mnt");
    inProject("storage", "volume", "set", "default", "container/c1", "user.foo=bar");
    inProject("start", "c1");
    d.lxc("exec", "c1", "--project", project, "--", "sh", "-c", "echo hello world > /mnt/test.txt");
    inProject("stop", "-f", "c1");
    inProject("snapshot", "c1", "snap0");
    inProject("storage", "volume", "snapshot", "default", "vol1", "snap0");
    const hwaddr = inProject("config", "get", "c1", "volatile.eth0.hwaddr").trim();

    // The volume carries backup.yaml with the instance, its snapshot and its volume config.
    const disk = join(d.dir, "storage-pools", "default", "containers", `${project}_c1`);
    const backup = YAML.parse(readFileSync(join(disk, "backup.yaml"), "utf8"));
    expect(backup.container.name).toBe("c1");
    expect(backup.snapshots.map((s: { name: string }) => s.name)).toEqual(["snap0"]);
    expect(backup.volume.config["user.foo"]).toBe("bar");
    expect(backup.pool.name).toBe("default");

    sql(`DELETE FROM instances WHERE name='c1' AND project='${project}'`);
    sql(`DELETE FROM storage_volumes WHERE name='c1' AND project='${project}'`);
    sql(`DELETE FROM storage_volumes WHERE name='vol1' AND project='${project}'`);
    rmSync(join(d.dir, "containers", `${project}_c1`));
    expect(d.lxc("info", "c1", "--project", project).code).not.toBe(0);
    expect(d.lxc("storage", "volume", "show", "default", "vol1", "--project", project).code).not.toBe(0);

    const r = lxd(["recover"], "no\nyes\nyes\n");
    expect(r.stdout).toContain(` - Container "c1" on pool "default" in project "${project}" (includes 1 snapshots)\n`);
    expect(r.stdout).toContain(` - Custom "vol1" on pool "default" in project "${project}" (includes 1 snapshots)\n`);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);

    expect(existsSync(join(d.dir, "containers", `${project}_c1`))).toBe(true);
    expect(inProject("info", "c1")).toContain("snap0");
    expect(inProject("config", "get", "c1", "volatile.eth0.hwaddr").trim()).toBe(hwaddr);
    expect(inProject("storage", "volume", "get", "default", "container/c1", "user.foo").trim()).toBe("bar");
    inProject("storage", "volume", "show", "default", "container/c1/snap0");
    inProject("storage", "volume", "show", "default", "vol1/snap0");
    inProject("start", "c1");
    expect(inProject("exec", "c1", "--", "cat", "/mnt/test.txt")).toBe("hello world\n");
    inProject("restore", "c1", "snap0");
    expect(inProject("exec", "c1", "--", "hostname").trim()).toBe("c1");
    expect(lxd(["recover"], "no\nyes\n").stdout).toContain("No unknown volumes found. Nothing to do.\n");
  });

  it("brings a custom block volume back as block content, with its snapshot", () => {
    inProject("storage", "volume", "create", "default", "blk1", "--type=block", "size=1MiB");
    inProject("storage", "volume", "snapshot", "default", "blk1", "snap0");
    sql(`DELETE FROM storage_volumes WHERE name IN ('blk1', 'blk1/snap0') AND project='${project}'`);
    expect(d.lxc("storage", "volume", "show", "default", "blk1", "--project", project).code).not.toBe(0);
    const r = lxd(["recover"], "no\nyes\nyes\n");
    expect(r.stdout).toContain(` - Custom "blk1" on pool "default" in project "${project}" (includes 1 snapshots)\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(ok("query", `/1.0/storage-pools/default/volumes/custom/blk1?project=${project}`)).content_type).toBe("block");
    expect(JSON.parse(ok("query", `/1.0/storage-pools/default/volumes/custom/blk1/snapshots/snap0?project=${project}`)).content_type).toBe("block");
    inProject("storage", "volume", "delete", "default", "blk1");
  });

  it("adopts a container that kept running while its records were gone", async () => {
    const pid = JSON.parse(ok("query", `/1.0/instances/c1/state?project=${project}`)).pid;
    expect(pid).toBeGreaterThan(0);
    sql(`DELETE FROM instances WHERE name='c1' AND project='${project}'`);
    sql(`DELETE FROM storage_volumes WHERE name='c1' AND project='${project}'`);
    // A restart (the daemon does not know c1 now, so it leaves it running).
    d.proc.kill("SIGTERM");
    await new Promise<void>((res) => (d.proc.exitCode !== null || d.proc.signalCode !== null ? res() : d.proc.once("exit", () => res())));
    await d.restart();
    const r = lxd(["recover"], "no\nyes\nyes\n");
    expect(r.code, r.stderr).toBe(0);
    expect(inProject("list", "c1", "-c", "s", "-f", "csv").trim()).toBe("RUNNING");
    expect(JSON.parse(ok("query", `/1.0/instances/c1/state?project=${project}`)).pid).toBe(pid);
    expect(inProject("exec", "c1", "--", "hostname").trim()).toBe("c1");
    inProject("stop", "-f", "c1");
  });

  it("brings back a pool whose record was deleted: its config from an instance's backup.yaml, then its volumes", async () => {
    ok("storage", "create", lostPool, "dir");
    ok("storage", "set", lostPool, "user.foo=bah");
    inProject("init", "busybox", "c2", "-s", lostPool);
    inProject("snapshot", "c2", "snap0");
    inProject("storage", "volume", "create", lostPool, "vol2");
    const poolConfig = () => {
      const r = lxd(["sql", "global", `SELECT key,value FROM storage_pools_config JOIN storage_pools ON storage_pools.id = storage_pools_config.storage_pool_id WHERE storage_pools.name = '${lostPool}' ORDER BY key`]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    const before = poolConfig();
    const source = ok("storage", "get", lostPool, "source").trim();
    expect(before).toContain("| user.foo | bah ");
    expect(before).toContain(`| source   | ${source} `);

    sql(`DELETE FROM instances WHERE name='c2' AND project='${project}'`);
    sql(`DELETE FROM storage_volumes WHERE name='c2' AND project='${project}'`);
    sql(`DELETE FROM storage_pools WHERE name='${lostPool}'`);
    expect(d.lxc("storage", "show", lostPool).code).not.toBe(0);
    expect(lxd(["sql", "global", `SELECT count(*) FROM storage_volumes WHERE name = 'vol2'`]).stdout).toContain("| 0        |");

    // A driver this host does not have: LXD's error, nothing recorded.
    const bad = await d.api("POST", "/internal/recover/validate", { pools: [{ name: lostPool, driver: "nope", config: { source } }] });
    expect(bad.status).toBe(500);
    expect(bad.body.error).toBe(`Failed to initialise unknown pool "${lostPool}": Unknown driver`);
    expect(d.lxc("storage", "show", lostPool).code).not.toBe(0);

    const r = lxd(["recover"], `yes\n${lostPool}\ndir\n${source}\n\nno\nyes\nyes\n`);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(` - NEW: "${lostPool}" (backend="dir", source="${source}")\n`);
    expect(r.stdout).toContain(` - Container "c2" on pool "${lostPool}" in project "${project}" (includes 1 snapshots)\n`);
    expect(r.stdout).toContain(` - Custom "vol2" on pool "${lostPool}" in project "${project}" (includes 0 snapshots)\n`);
    expect(poolConfig()).toBe(before);
    expect(ok("storage", "show", lostPool)).toContain("status: Created");
    expect(inProject("info", "c2")).toContain("snap0");
    inProject("storage", "volume", "show", lostPool, "vol2");
    inProject("storage", "volume", "show", lostPool, "container/c2/snap0");
    inProject("start", "c2");
    expect(inProject("exec", "c2", "--", "hostname").trim()).toBe("c2");
    inProject("restore", "c2", "snap0");
    inProject("delete", "-f", "c2");
    inProject("storage", "volume", "delete", lostPool, "vol2");
    ok("storage", "delete", lostPool);
  }, 180_000);

  it("a lost pool without volumes gets no record (as LXD: nothing to recover)", () => {
    const dir = join(d.dir, "tb-empty-pool");
    mkdirSync(dir);
    const r = lxd(["recover"], `yes\n${lostPool}x\ndir\n${dir}\n\nno\nyes\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("No unknown volumes found. Nothing to do.\n");
    expect(d.lxc("storage", "show", `${lostPool}x`).code).not.toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });
});
