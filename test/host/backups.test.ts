// Instance backups with the stock client: `lxc export` / `lxc import` round trip with a
// snapshot, the backups API (list, rename, delete, export), and hostile backup tarballs.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { entry, tarball } from "../helpers/tar-writer.js";

let d: InitialisedDaemon;
const btrfsOk = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");
let work: string;

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

async function wait(res: { status: number; body: any; text: string }) {
  expect(res.status, res.text).toBe(202);
  return (await d.api("GET", `${res.body.operation}/wait?timeout=60`)).body.metadata;
}

beforeAll(async () => {
  d = await startInitialisedDaemon();
  work = mkdtempSync("/tmp/nodelxd-test-backup-");
}, 120_000);

afterAll(async () => {
  if (work) rmSync(work, { recursive: true, force: true });
  if (d) await d.teardown();
});

describe("lxc export / lxc import", () => {
  it("round-trips an instance with its snapshot, config and data", () => {
    const n = d.launch("bak", { config: { "user.backup": "kept" } });
    ok("exec", n, "--", "sh", "-c", "echo precious > /root/data");
    ok("snapshot", n, "s1");
    const file = join(work, "b.tar.gz");
    ok("export", n, file);
    const members = execFileSync("tar", ["tzf", file], { encoding: "utf8" }).split("\n");
    expect(members).toContain("backup/index.yaml");
    expect(members.some((m) => m.startsWith("backup/container/rootfs/"))).toBe(true);
    expect(members.some((m) => m.startsWith("backup/snapshots/s1/rootfs/"))).toBe(true);
    // --instance-only: the volume alone, and no backup/snapshots/ directory at all (as LXD).
    const only = join(work, "only.tar.gz");
    ok("export", n, only, "--instance-only");
    const onlyMembers = execFileSync("tar", ["tzf", only], { encoding: "utf8" }).split("\n");
    expect(onlyMembers).toContain("backup/index.yaml");
    expect(onlyMembers.some((m) => m.startsWith("backup/snapshots"))).toBe(false);
    // lxc export removes the backup it made.
    expect(JSON.parse(ok("query", `/1.0/instances/${n}/backups`))).toEqual([]);
    expect(readdirSync(join(d.dir, "backups", "instances", n))).toEqual([]);

    ok("delete", "-f", n);
    ok("import", file);
    expect(JSON.parse(ok("query", `/1.0/instances/${n}`)).status).toBe("Stopped");
    expect(ok("config", "get", n, "user.backup").trim()).toBe("kept");
    expect(JSON.parse(ok("query", `/1.0/instances/${n}/snapshots`))).toEqual([`/1.0/instances/${n}/snapshots/s1`]);
    const r = d.lxc("import", file);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Create instance from backup: Cannot restore volume, already exists on target");
    ok("start", n);
    expect(ok("exec", n, "--", "cat", "/root/data").trim()).toBe("precious");
    ok("restore", n, "s1");
    expect(ok("exec", n, "--", "cat", "/root/data").trim()).toBe("precious");
  }, 180_000);

  it("round-trips sparse files: the backup holds plain members, which the import gate admits (as LXD's tar writer)", () => {
    const n = d.launch("sparse", { init: true });
    const sparse = join(d.dir, "storage-pools", "default", "containers", n, "rootfs", "root", "sparse");
    writeFileSync(sparse, "head");
    truncateSync(sparse, 8 << 20);
    const file = join(work, "sparse.tar.gz");
    ok("export", n, file);
    ok("delete", n);
    ok("import", file);
    const back = join(d.dir, "storage-pools", "default", "containers", n, "rootfs", "root", "sparse");
    expect(statSync(back).size).toBe(8 << 20);
    expect(readFileSync(back).subarray(0, 4).toString()).toBe("head");
    // A tarball that does hold a GNU sparse member is refused by the gate, and that is what the
    // client is told (not the decompressor's broken pipe).
    const unpacked = mkdtempSync(join(work, "sparse-"));
    execFileSync("tar", ["-xzf", file, "-C", unpacked]);
    const holey = join(unpacked, "backup", "container", "rootfs", "root", "sparse");
    rmSync(holey);
    writeFileSync(holey, "head");
    truncateSync(holey, 8 << 20);
    const gnuSparse = join(work, "gnu-sparse.tar.gz");
    execFileSync("tar", ["--sparse", "-czf", gnuSparse, "-C", unpacked, "backup"]);
    ok("delete", n);
    const r = d.lxc("import", gnuSparse);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toBe("Error: Refusing unsafe backup tarball: Unsupported tar member type 'S'");
    expect(r.stderr).not.toContain("decompress");
    expect(d.lxc("info", n).code).not.toBe(0);
  }, 180_000);

  it.runIf(btrfsOk)("round-trips an instance on a btrfs pool (staged by copy, not hard links)", () => {
    ok("storage", "create", "bkbt", "btrfs", "size=512MiB");
    const n = d.instanceName("bt");
    ok("launch", "busybox", n, "-q", "-s", "bkbt");
    ok("exec", n, "--", "sh", "-c", "echo on-btrfs > /root/data");
    ok("snapshot", n, "s1");
    const file = join(work, "bt.tar.gz");
    ok("export", n, file, "--compression", "xz");
    ok("delete", "-f", n);
    ok("import", file, "--storage", "bkbt");
    expect(JSON.parse(ok("query", `/1.0/instances/${n}`)).expanded_devices.root.pool).toBe("bkbt");
    expect(JSON.parse(ok("query", `/1.0/instances/${n}/snapshots`))).toEqual([`/1.0/instances/${n}/snapshots/s1`]);
    ok("start", n);
    expect(ok("exec", n, "--", "cat", "/root/data").trim()).toBe("on-btrfs");
    ok("delete", "-f", n);
    ok("storage", "delete", "bkbt");
  }, 180_000);

  it("lists, renames, exports and deletes backups through the API", async () => {
    const n = d.launch("api", { init: true });
    await wait(await d.api("POST", `/1.0/instances/${n}/backups`, { instance_only: true, compression_algorithm: "none" }));
    expect((await d.api("GET", `/1.0/instances/${n}/backups`)).body.metadata).toEqual([`/1.0/instances/${n}/backups/backup0`]);
    const list = (await d.api("GET", `/1.0/instances/${n}/backups?recursion=1`)).body.metadata;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ name: "backup0", instance_only: true, container_only: true, optimized_storage: false, expires_at: "0001-01-01T00:00:00Z" });
    await wait(await d.api("POST", `/1.0/instances/${n}/backups/backup0`, { name: "b2" }));
    expect((await d.api("GET", `/1.0/instances/${n}/backups/backup0`)).status).toBe(404);
    const exp = await d.api("GET", `/1.0/instances/${n}/backups/b2/export`);
    expect(exp.status).toBe(200);
    expect(Buffer.from(exp.text, "latin1").toString("latin1", 257, 262)).toBe("ustar");
    await wait(await d.api("DELETE", `/1.0/instances/${n}/backups/b2`));
    expect((await d.api("GET", `/1.0/instances/${n}/backups/b2`)).body.error).toBe("Load backup from database: Instance backup not found");
    expect((await d.api("POST", `/1.0/instances/${n}/backups`, { name: "a/b" })).body.error).toBe("Backup names may not contain slashes");
    expect((await d.api("POST", `/1.0/instances/${n}/backups`, { compression_algorithm: "bogus" })).body.error).toBe('Invalid compression algorithm "bogus"');
    await wait(await d.api("POST", `/1.0/instances/${n}/backups`, { name: "same" }));
    const dup = await wait(await d.api("POST", `/1.0/instances/${n}/backups`, { name: "same" }));
    expect(dup.err).toBe(`Create backup: Backup "${n}/same" already exists`);
    // The first one is intact: a gzip tarball with the index.
    const again = await d.api("GET", `/1.0/instances/${n}/backups/same/export`);
    expect(Buffer.from(again.text, "latin1")[0]).toBe(0x1f);
    await wait(await d.api("DELETE", `/1.0/instances/${n}/backups/same`));
  }, 120_000);
});

describe("hostile backup tarballs", () => {
  const index = (name: string) => `name: ${name}\npool: default\nsnapshots: []\nconfig:\n  container:\n    architecture: x86_64\n    config: {}\n    devices: {}\n    profiles: [default]\n`;
  const post = (body: Buffer, name: string) => d.api("POST", "/1.0/instances", body, { "Content-Type": "application/octet-stream", "X-LXD-name": name });
  const leftovers = () => readdirSync(join(d.dir, "backups")).filter((f) => f.startsWith(".import-"));

  it("refuses ../ members and members through a symlink; nothing is written outside", async () => {
    const outside = join(work, "outside");
    mkdirSync(outside);
    const escape = join(work, "escaped");
    const n1 = d.instanceName("evil1");
    const dotdot = tarball(
      entry({ name: "backup/", type: "5" }),
      entry({ name: "backup/index.yaml", data: index(n1) }),
      entry({ name: "backup/container/", type: "5" }),
      entry({ name: "backup/container/rootfs/", type: "5" }),
      entry({ name: `backup/container/rootfs/../../../../../../../..${escape}`, data: "x" }),
    );
    const r1 = await post(dotdot, n1);
    expect(r1.status, r1.text).toBe(400);
    expect(r1.body.error).toContain("..");

    const n2 = d.instanceName("evil2");
    const through = tarball(
      entry({ name: "backup/", type: "5" }),
      entry({ name: "backup/index.yaml", data: index(n2) }),
      entry({ name: "backup/container/", type: "5" }),
      entry({ name: "backup/container/rootfs/", type: "5" }),
      entry({ name: "backup/container/rootfs/link", type: "2", linkname: outside }),
      entry({ name: "backup/container/rootfs/link/pwned", data: "x" }),
    );
    const r2 = await post(through, n2);
    expect(r2.status, r2.text).toBe(400);
    expect(r2.body.error).toContain("symbolic link");

    const n3 = d.instanceName("evil3");
    const stray = tarball(entry({ name: "backup/index.yaml", data: index(n3) }), entry({ name: "etc/passwd", data: "x" }));
    const r3 = await post(stray, n3);
    expect(r3.status, r3.text).toBe(400);

    expect(existsSync(escape)).toBe(false);
    expect(readdirSync(outside)).toEqual([]);
    for (const n of [n1, n2, n3]) expect((await d.api("GET", `/1.0/instances/${n}`)).status).toBe(404);
    expect(leftovers()).toEqual([]);
  }, 60_000);
});

describe("backup index checks (issue 19)", () => {
  const post = (body: Buffer, name?: string) => d.api("POST", "/1.0/instances", body, { "Content-Type": "application/octet-stream", ...(name ? { "X-LXD-name": name } : {}) });
  const leftovers = () => readdirSync(join(d.dir, "backups")).filter((f) => f.startsWith(".import-"));
  /** A well-formed index of LXD 5.0.2's shape, then altered by `edit`. */
  const doc = (name: string, snaps: string[] = []) => ({
    name,
    backend: "dir",
    pool: "default",
    snapshots: snaps,
    optimized: false,
    optimized_header: false,
    type: "container",
    config: {
      container: { name, architecture: "x86_64", config: {}, devices: {}, profiles: ["default"], ephemeral: false, description: "" },
      snapshots: snaps.map((s) => ({ name: s, architecture: "x86_64", config: {}, devices: {}, profiles: ["default"] })),
      pool: { name: "default", driver: "dir", config: {} },
      volume: { name, type: "container", config: {}, content_type: "filesystem" },
      volume_snapshots: snaps.map((s) => ({ name: s, config: {}, content_type: "filesystem" })),
    },
  });
  const tarOf = (index: string, extra: Buffer[] = [], snaps: string[] = []) =>
    tarball(
      entry({ name: "backup/", type: "5" }),
      entry({ name: "backup/index.yaml", data: index }),
      entry({ name: "backup/container/", type: "5" }),
      entry({ name: "backup/container/rootfs/", type: "5" }),
      entry({ name: "backup/container/rootfs/hello", data: "hi" }),
      ...snaps.flatMap((s) => [entry({ name: `backup/snapshots/${s}/`, type: "5" }), entry({ name: `backup/snapshots/${s}/rootfs/`, type: "5" })]),
      ...extra,
    );
  const refused = async (body: Buffer, name: string, message: string | RegExp, header?: string) => {
    const r = await post(body, header);
    expect(r.status, r.text).toBe(400);
    expect(r.body.type).toBe("error");
    if (typeof message === "string") expect(r.body.error).toContain(message);
    else expect(r.body.error).toMatch(message);
    expect((await d.api("GET", `/1.0/instances/${name}`)).status).toBe(404);
    expect((await d.api("GET", `/1.0/storage-pools/default/volumes/container/${name}`)).status).toBe(404);
    expect(existsSync(join(d.dir, "containers", name))).toBe(false);
    expect(leftovers()).toEqual([]);
  };

  it("imports a well-formed index (the control case)", async () => {
    const n = d.instanceName("okidx");
    const r = await post(tarOf(JSON.stringify(doc(n, ["s0"])), [], ["s0"]));
    expect(r.status, r.text).toBe(202);
    const op = (await d.api("GET", `${r.body.operation}/wait?timeout=60`)).body.metadata;
    expect(op.status, op.err).toBe("Success");
    expect((await d.api("GET", `/1.0/instances/${n}/snapshots`)).body.metadata).toEqual([`/1.0/instances/${n}/snapshots/s0`]);
    ok("delete", n);
  }, 60_000);

  it("refuses an index.yaml or backup.yaml that is a symbolic link", async () => {
    const n = d.instanceName("symidx");
    const linked = tarball(entry({ name: "backup/", type: "5" }), entry({ name: "backup/index.yaml", type: "2", linkname: "/etc/passwd" }));
    await refused(linked, n, "backup/index.yaml must be a regular file", n);
    const n2 = d.instanceName("symbak");
    await refused(tarOf(JSON.stringify(doc(n2)), [entry({ name: "backup/container/backup.yaml", type: "2", linkname: "/etc/shadow" })]), n2, /symbolic link/i);
  }, 60_000);

  it("refuses null or missing snapshot, volume and pool fields", async () => {
    const n = d.instanceName("nulls");
    const cases: [(x: any) => void, string | RegExp][] = [
      [(x) => (x.config.snapshots = [null]), "an entry of config.snapshots is empty"],
      [(x) => (x.snapshots = [null]), "an entry of snapshots has no name"],
      [(x) => (x.snapshots = null), "snapshots must be a list"],
      [(x) => (x.config.volume = null), "No storage volume struct in the backup file found"],
      [(x) => delete x.config.volume, "No storage volume struct in the backup file found"],
      [(x) => (x.config.volume_snapshots = [null]), "an entry of config.volume_snapshots is empty"],
      [(x) => (x.config.pool = null), "No storage pool struct in the backup file found"],
      [(x) => (x.config.container = null), "No instance config in backup config"],
      [(x) => (x.config.container.devices = "x"), "instance devices must be a mapping"],
    ];
    for (const [edit, message] of cases) {
      const x = doc(n);
      edit(x);
      await refused(tarOf(JSON.stringify(x)), n, message);
    }
  }, 120_000);

  it("refuses names that disagree: instance, volume, snapshots", async () => {
    const n = d.instanceName("names");
    const other = d.instanceName("other");
    const x1 = doc(n);
    x1.config.container.name = other;
    await refused(tarOf(JSON.stringify(x1)), n, `Instance name in backup index "${n}" doesn't match instance name in backup config "${other}"`);
    await refused(tarOf(JSON.stringify(x1)), other, "doesn't match instance name in backup config", other);
    const x2 = doc(n);
    x2.config.volume.name = other;
    await refused(tarOf(JSON.stringify(x2)), n, `The name "${other}" of the storage volume is not identical to the instance's name "${n}"`);
    const x3 = doc(n, ["s0"]);
    x3.snapshots = ["s1"];
    await refused(tarOf(JSON.stringify(x3), [], ["s0"]), n, "snapshots [s1] don't match the snapshot configs [s0]");
    const x4 = doc(n, ["s0"]);
    x4.config.volume_snapshots = [];
    await refused(tarOf(JSON.stringify(x4), [], ["s0"]), n, "don't match the volume snapshots");
    const x5 = doc(n, ["s0"]);
    x5.snapshots = ["s0", "s0"];
    await refused(tarOf(JSON.stringify(x5), [], ["s0"]), n, 'lists "s0" twice');
  }, 120_000);
});

describe("crash recovery", () => {
  it("removes an instance whose import was interrupted, and partial backup files", async () => {
    const n = d.launch("half", { init: true });
    const keep = d.launch("keep", { init: true });
    // The state a kill -9 during "Restoring backup" leaves: the marker still in the import directory.
    const importDir = join(d.dir, "backups", ".import-crashtest");
    mkdirSync(importDir, { recursive: true });
    writeFileSync(join(importDir, "instance.json"), JSON.stringify({ project: "default", name: n }));
    const partial = join(d.dir, "backups", "instances", keep, ".partial-crashtest");
    mkdirSync(join(d.dir, "backups", "instances", keep), { recursive: true });
    writeFileSync(partial, "x");
    await d.kill9();
    await d.restart();
    expect((await d.api("GET", `/1.0/instances/${n}`)).status).toBe(404);
    expect(existsSync(join(d.dir, "storage-pools", "default", "containers", n))).toBe(false);
    expect((await d.api("GET", `/1.0/instances/${keep}`)).status).toBe(200);
    expect(existsSync(importDir)).toBe(false);
    expect(existsSync(partial)).toBe(false);
  }, 60_000);
});
