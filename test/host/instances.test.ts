// Containers end to end with the stock client: lifecycle, limits, profiles, unprivileged
// id maps, disk devices, containers stopping on their own, and re-adoption after the
// daemon is stopped (SIGTERM) or killed (kill -9).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

let d: TestDaemon;
const tag = Math.random().toString(36).slice(2, 7);
const created = new Set<string>();
const name = (what: string) => {
  const n = `it${tag}-${what}`;
  created.add(n);
  return n;
};

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

async function state(n: string) {
  return (await d.api("GET", `/1.0/instances/${n}/state`)).body.metadata;
}

function memoryLimit(pid: number): string {
  const cg = readFileSync(`/proc/${pid}/cgroup`, "utf8");
  const v1 = /^\d+:[^:]*\bmemory\b[^:]*:(.*)$/m.exec(cg);
  if (v1) return readFileSync(`/sys/fs/cgroup/memory${v1[1]}/memory.limit_in_bytes`, "utf8").trim();
  const v2 = /^0::(.*)$/m.exec(cg)!;
  return readFileSync(`/sys/fs/cgroup${v2[1]}/memory.max`, "utf8").trim();
}

async function waitFor(cond: () => Promise<boolean> | boolean, ms = 15000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("condition not reached");
}

const subuidBase = () => Number(/^root:(\d+):/m.exec(readFileSync("/etc/subuid", "utf8"))![1]);

beforeAll(async () => {
  const image = busyboxImage();
  d = await startDaemon();
  ok("storage", "create", "default", "dir");
  ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
  ok("image", "import", image, "--alias", "busybox");
});

afterAll(async () => {
  if (!d) return;
  for (const n of created) spawnSync("lxc-stop", ["-k", "-n", n, "-P", join(d.dir, "containers")]);
  for (const n of created) d.lxc("delete", "-f", n);
  await d.stop().catch(() => {});
  spawnSync("umount", ["-l", join(d.dir, "shmounts")]);
  spawnSync("rm", ["-rf", "--one-file-system", d.dir]);
});

describe("container lifecycle with the stock client", () => {
  it("launches an unprivileged container and lists it running", async () => {
    const n = name("life");
    ok("launch", "busybox", n, "-q");
    const list = JSON.parse(ok("list", "-f", "json")).find((i: any) => i.name === n);
    expect(list).toMatchObject({ status: "Running", status_code: 103, type: "container", architecture: "x86_64", ephemeral: false, profiles: ["default"], location: "none", project: "default" });
    expect(list.expanded_devices.root).toEqual({ type: "disk", path: "/", pool: "default" });
    expect(list.config["volatile.base_image"]).toMatch(/^[0-9a-f]{64}$/);
    expect(list.config["volatile.uuid"]).toMatch(/^[0-9a-f-]{36}$/);
    const s = await state(n);
    expect(s.pid).toBeGreaterThan(1);
    expect(s.processes).toBeGreaterThanOrEqual(1);
    // init runs as an unprivileged host uid: the whole root delegation from /etc/subuid
    const map = readFileSync(`/proc/${s.pid}/uid_map`, "utf8").trim().split(/\s+/);
    expect(map.slice(0, 2)).toEqual(["0", String(subuidBase())]);
    const st = spawnSync("stat", ["-c", "%u", `/proc/${s.pid}`], { encoding: "utf8" }).stdout.trim();
    expect(Number(st)).toBe(subuidBase());
    expect(ok("info", n)).toContain("Status: RUNNING");
    expect(ok("list", "-c", "ns", "-f", "csv", n).trim()).toBe(`${n},RUNNING`);
  });

  it("stops, starts, restarts, pauses and resumes", async () => {
    const n = `it${tag}-life`;
    ok("stop", n);
    expect((await state(n)).status).toBe("Stopped");
    expect(d.lxc("stop", n).stderr).toContain("The instance is already stopped");
    ok("start", n);
    const p1 = (await state(n)).pid;
    expect(d.lxc("start", n).stderr).toContain("The instance is already running");
    ok("restart", "--force", n);
    const p2 = (await state(n)).pid;
    expect(p2).toBeGreaterThan(1);
    expect(p2).not.toBe(p1);
    ok("pause", n);
    expect(ok("list", "-c", "s", "-f", "csv", n).trim()).toBe("FROZEN");
    ok("start", n);
    expect((await state(n)).status).toBe("Running");
  });

  it("applies limits.memory live and rejects bad values without changing anything", async () => {
    const n = `it${tag}-life`;
    ok("config", "set", n, "limits.memory", "64MB");
    expect(memoryLimit((await state(n)).pid)).toBe("64000000");
    const bad = d.lxc("config", "set", n, "limits.memory", "abc");
    expect(bad.stderr.trim()).toBe("Error: Invalid config: Invalid value: abc");
    const patch = await d.api("PATCH", `/1.0/instances/${n}`, { config: { "limits.memory": "abc" } });
    expect([patch.status, patch.body.error]).toEqual([500, "Invalid config: Invalid value: abc"]);
    expect(ok("config", "get", n, "limits.memory").trim()).toBe("64MB");
    expect(memoryLimit((await state(n)).pid)).toBe("64000000");
  });

  it("refuses to delete or rename a running container, renames a stopped one, deletes with --force", async () => {
    const n = `it${tag}-life`;
    const del = await d.api("DELETE", `/1.0/instances/${n}`);
    expect([del.status, del.body.error]).toEqual([400, "Instance is running"]);
    expect(d.lxc("delete", n).stderr.trim()).toBe("Error: The instance is currently running, stop it first or pass --force");
    ok("stop", "--force", n);
    const to = name("renamed");
    ok("move", n, to);
    expect((await d.api("GET", `/1.0/instances/${n}`)).status).toBe(404);
    ok("start", to);
    expect(readFileSync(join(d.dir, "logs", to, "lxc.conf"), "utf8")).toContain(`lxc.uts.name = ${to}`);
    ok("delete", "-f", to);
    expect((await d.api("GET", `/1.0/instances/${to}`)).status).toBe(404);
    expect(existsSync(join(d.dir, "containers", to))).toBe(false);
    expect(existsSync(join(d.dir, "storage-pools", "default", "containers", to))).toBe(false);
  });

  it("deletes an ephemeral container when it stops", async () => {
    const n = name("eph");
    ok("launch", "busybox", n, "--ephemeral", "-q");
    expect((await d.api("GET", `/1.0/instances/${n}`)).body.metadata.ephemeral).toBe(true);
    ok("stop", "--force", n);
    await waitFor(async () => (await d.api("GET", `/1.0/instances/${n}`)).status === 404);
  });

  it("expands profiles into the config and reports the profile's users", async () => {
    const n = name("prof");
    const p = `it${tag}-p`;
    ok("profile", "create", p);
    try {
      ok("profile", "set", p, "environment.FROM_PROFILE", "yes");
      ok("init", "busybox", n, "-q", "-p", "default", "-p", p);
      const g = (await d.api("GET", `/1.0/instances/${n}`)).body.metadata;
      expect(g.profiles).toEqual(["default", p]);
      expect(g.expanded_config["environment.FROM_PROFILE"]).toBe("yes");
      expect(g.config["environment.FROM_PROFILE"]).toBeUndefined();
      expect((await d.api("GET", `/1.0/profiles/${p}`)).body.metadata.used_by).toEqual([`/1.0/instances/${n}`]);
      ok("start", n);
      expect(readFileSync(join(d.dir, "logs", n, "lxc.conf"), "utf8")).toContain("lxc.environment = FROM_PROFILE=yes");
      ok("delete", "-f", n);
    } finally {
      d.lxc("delete", "-f", n);
      d.lxc("profile", "delete", p);
    }
  });
});

describe("id maps", () => {
  it("runs privileged containers without a user namespace on request", async () => {
    const n = name("priv");
    ok("launch", "busybox", n, "-q", "-c", "security.privileged=true");
    const s = await state(n);
    expect(readFileSync(`/proc/${s.pid}/uid_map`, "utf8").trim().split(/\s+/)).toEqual(["0", "0", "4294967295"]);
    expect(ok("config", "get", n, "volatile.idmap.current").trim()).toBe("[]");
    ok("delete", "-f", n);
  });

  it("gives isolated containers distinct ranges and shifts the rootfs to them", async () => {
    const a = name("iso1");
    const b = name("iso2");
    ok("launch", "busybox", a, "-q", "-c", "security.idmap.isolated=true");
    ok("launch", "busybox", b, "-q", "-c", "security.idmap.isolated=true");
    const ma = JSON.parse(ok("config", "get", a, "volatile.idmap.current"));
    const mb = JSON.parse(ok("config", "get", b, "volatile.idmap.current"));
    expect(ma[0].Maprange).toBe(65536);
    expect(ma[0].Hostid).not.toBe(mb[0].Hostid);
    expect(Math.abs(ma[0].Hostid - mb[0].Hostid)).toBeGreaterThanOrEqual(65536);
    const pa = (await state(a)).pid;
    expect(readFileSync(`/proc/${pa}/uid_map`, "utf8").trim().split(/\s+/)).toEqual(["0", String(ma[0].Hostid), "65536"]);
    const owner = spawnSync("stat", ["-c", "%u", join(d.dir, "containers", a, "rootfs", "etc", "passwd")], { encoding: "utf8" }).stdout.trim();
    expect(Number(owner)).toBe(ma[0].Hostid);
    expect(ok("config", "get", a, "volatile.last_state.idmap").trim()).toBe(ok("config", "get", a, "volatile.idmap.current").trim());
    ok("delete", "-f", a);
    ok("delete", "-f", b);
  });
});

describe("disk devices", () => {
  it("bind-mounts host paths at start and hot-plugs them into a running container", async () => {
    const n = name("disk");
    const share = join(d.dir + ".share");
    mkdirSync(share, { recursive: true });
    writeFileSync(join(share, "hello"), "from-host\n");
    try {
      ok("launch", "busybox", n, "-q");
      const pid = (await state(n)).pid;
      ok("config", "device", "add", n, "hostdir", "disk", `source=${share}`, "path=/mnt/share");
      expect(readFileSync(`/proc/${pid}/root/mnt/share/hello`, "utf8")).toBe("from-host\n");
      writeFileSync(join(share, "later"), "live\n");
      expect(readFileSync(`/proc/${pid}/root/mnt/share/later`, "utf8")).toBe("live\n");
      ok("config", "device", "remove", n, "hostdir");
      expect(existsSync(`/proc/${pid}/root/mnt/share/hello`)).toBe(false);
      const missing = d.lxc("config", "device", "add", n, "missing", "disk", "source=/it/no/such/dir", "path=/mnt/x");
      expect(missing.stderr).toContain('Missing source path "/it/no/such/dir"');
      ok("config", "device", "add", n, "ro", "disk", `source=${share}`, "path=/mnt/ro", "readonly=true");
      ok("restart", "--force", n);
      const pid2 = (await state(n)).pid;
      expect(readFileSync(`/proc/${pid2}/root/mnt/ro/hello`, "utf8")).toBe("from-host\n");
      expect(readFileSync(`/proc/${pid2}/mountinfo`, "utf8")).toMatch(/ \/mnt\/ro ro,/);
      ok("delete", "-f", n);
    } finally {
      spawnSync("rm", ["-rf", share]);
    }
  });
});

describe("block device disks", () => {
  it("mounts a block device's filesystem (hot-plugged and at start) and unmounts it on removal (LXD's config_profiles loop mounts)", async () => {
    const n = name("blk");
    const file = d.dir + ".blk";
    execFileSync("truncate", ["-s", "64M", file]);
    execFileSync("mkfs.ext4", ["-q", "-F", file]);
    const loop = execFileSync("losetup", ["--show", "-f", file], { encoding: "utf8" }).trim();
    const mnt = d.dir + ".blkmnt";
    mkdirSync(mnt, { recursive: true });
    try {
      execFileSync("mount", [loop, mnt]);
      writeFileSync(join(mnt, "hello"), "on-ext4\n");
      execFileSync("umount", [mnt]);
      ok("launch", "busybox", n, "-q");
      ok("config", "device", "add", n, "mnt", "disk", `source=${loop}`, "path=/mnt");
      expect(d.lxc("exec", n, "--", "cat", "/mnt/hello").stdout).toBe("on-ext4\n");
      ok("restart", "--force", n);
      expect(d.lxc("exec", n, "--", "cat", "/mnt/hello").stdout).toBe("on-ext4\n");
      const hostMount = join(d.dir, "devices", n, "disk.mnt.mnt");
      expect(readFileSync("/proc/self/mountinfo", "utf8")).toContain(` ${hostMount} `);
      ok("config", "device", "remove", n, "mnt");
      expect(d.lxc("exec", n, "--", "stat", "/mnt/hello").code).not.toBe(0);
      expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(` ${hostMount} `);
      ok("restart", "--force", n);
      expect(d.lxc("exec", n, "--", "stat", "/mnt/hello").code).not.toBe(0);
      ok("delete", "-f", n);
    } finally {
      spawnSync("umount", [mnt]);
      spawnSync("losetup", ["-d", loop]);
      spawnSync("rm", ["-rf", file, mnt]);
    }
  });
});

describe("unix devices and copies", () => {
  it("hot-plugs a unix-char device as the host node", async () => {
    const n = name("unix");
    ok("launch", "busybox", n, "-q");
    const pid = (await state(n)).pid;
    ok("config", "device", "add", n, "itnull", "unix-char", "source=/dev/null", "path=/dev/itnull");
    const st = statSync(`/proc/${pid}/root/dev/itnull`);
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(statSync("/dev/null").rdev);
    ok("config", "device", "remove", n, "itnull");
    expect(existsSync(`/proc/${pid}/root/dev/itnull`)).toBe(false);
    ok("delete", "-f", n);
  });

  it("copies an instance with its files and fresh volatile state", async () => {
    const a = name("cpa");
    const b = name("cpb");
    ok("launch", "busybox", a, "-q", "-c", "user.tag=copied");
    const pid = (await state(a)).pid;
    writeFileSync(`/proc/${pid}/root/root/data`, "payload\n");
    ok("copy", a, b);
    const g = (await d.api("GET", `/1.0/instances/${b}`)).body.metadata;
    expect(g.status).toBe("Stopped");
    expect(g.config["user.tag"]).toBe("copied");
    expect(g.config["volatile.uuid"]).not.toBe(ok("config", "get", a, "volatile.uuid").trim());
    ok("start", b);
    const pb = (await state(b)).pid;
    expect(readFileSync(`/proc/${pb}/root/root/data`, "utf8")).toBe("payload\n");
    ok("delete", "-f", a);
    ok("delete", "-f", b);
  });
});

describe("an instance still being created", () => {
  it("refuses start, delete and rename with LXD's busy message, then is intact", async () => {
    // A fresh image (64 MiB uncompressed) makes the first create slow enough to overlap.
    const dir = join(d.dir + ".bigimage");
    mkdirSync(dir, { recursive: true });
    execFileSync("sh", ["-c", `cd ${dir} && tar -xJf ${busyboxImage()} && head -c 64M /dev/zero > rootfs/big && tar -cf ../big-${tag}.tar .`]);
    const tarball = join(d.dir + `.bigimage/../big-${tag}.tar`);
    ok("image", "import", tarball, "--alias", "big");
    spawnSync("rm", ["-rf", dir, tarball]);
    const n = name("busy");
    const create = await d.api("POST", "/1.0/instances", { name: n, source: { type: "image", alias: "big" } });
    expect(create.status).toBe(202);
    const tries = await Promise.all([
      d.api("PUT", `/1.0/instances/${n}/state`, { action: "start" }),
      d.api("DELETE", `/1.0/instances/${n}`),
      d.api("POST", `/1.0/instances/${n}`, { name: `${n}-renamed` }),
    ]);
    const errors = await Promise.all(tries.map(async (r) => (await d.api("GET", `/1.0/operations/${r.body.metadata.id}/wait?timeout=30`)).body.metadata.err));
    expect(errors).toEqual([
      'Failed to create instance start operation: Instance is busy running a "create" operation',
      'Failed to create instance delete operation: Instance is busy running a "create" operation',
      'Failed to create instance rename operation: Instance is busy running a "create" operation',
    ]);
    const done = await d.api("GET", `/1.0/operations/${create.body.metadata.id}/wait?timeout=60`);
    expect(done.body.metadata.status).toBe("Success");
    expect(statSync(join(d.dir, "containers", n, "rootfs", "big")).size).toBe(64 * 1024 * 1024);
    ok("delete", n);
    ok("image", "delete", "big");
  });
});

describe("containers outside the daemon's control", () => {
  it("notices a container that stops on its own", async () => {
    const n = name("self");
    ok("launch", "busybox", n, "-q");
    execFileSync("lxc-stop", ["-k", "-n", n, "-P", join(d.dir, "containers")]);
    await waitFor(async () => (await state(n)).status === "Stopped");
    await waitFor(() => ok("config", "get", n, "volatile.last_state.power").trim() === "STOPPED");
    ok("start", n);
    expect((await state(n)).status).toBe("Running");
    ok("delete", "-f", n);
  });

  it("keeps containers running across SIGTERM and kill -9 and re-adopts them", async () => {
    const n = name("adopt");
    ok("launch", "busybox", n, "-q");
    const pid = (await state(n)).pid;
    d.proc.kill("SIGTERM");
    await new Promise((r) => d.proc.once("exit", r));
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    await d.restart();
    expect(await state(n)).toMatchObject({ status: "Running", pid });
    await d.kill9();
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    await d.restart();
    expect(await state(n)).toMatchObject({ status: "Running", pid });
    ok("stop", "--force", n);
    expect((await state(n)).status).toBe("Stopped");
    ok("delete", n);
  });

  it("stops containers on `shutdown` and starts them again with the daemon; honours boot.autostart", async () => {
    const n = name("boot");
    const off = name("off");
    ok("launch", "busybox", n, "-q");
    ok("launch", "busybox", off, "-q", "-c", "boot.autostart=false");
    const pid = (await state(n)).pid;
    expect(d.cli("shutdown").code).toBe(0);
    await new Promise((r) => (d.proc.exitCode !== null ? r(null) : d.proc.once("exit", r)));
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    await d.restart();
    // As LXD: the daemon is ready (waitready returns) once autostarted instances are up.
    expect((await state(n)).status).toBe("Running");
    await waitFor(async () => (await state(n)).status === "Running");
    expect((await state(n)).pid).not.toBe(pid);
    expect((await state(off)).status).toBe("Stopped");
    ok("delete", "-f", n);
    ok("delete", "-f", off);
  });
});
