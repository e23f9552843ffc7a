// raw.idmap, security.nesting, security.syscalls.* and linux.kernel_modules on real containers,
// driven with the stock client.
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
let share: string;

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

const lxcConf = (n: string) => readFileSync(join(d.dir, "logs", n, "lxc.conf"), "utf8");
const confValues = (n: string, key: string) =>
  lxcConf(n)
    .split("\n")
    .filter((l) => l.startsWith(`${key} = `))
    .map((l) => l.slice(key.length + 3));

// A host uid/gid outside root's delegation (root:START:SIZE in /etc/subuid), distinct per run.
const delegation = () => {
  const m = /^root:(\d+):(\d+)$/m.exec(readFileSync("/etc/subuid", "utf8"))!;
  return { start: Number(m[1]), size: Number(m[2]) };
};
const hostId = 3_000_000_000 + (process.pid % 100_000) * 10;
const subLine = `root:${hostId}:1`;

/** Let root map hostId (newuidmap, which liblxc uses, checks /etc/subuid and /etc/subgid). */
function delegateHostId(add: boolean): void {
  for (const f of ["/etc/subuid", "/etc/subgid"]) {
    const lines = readFileSync(f, "utf8").split("\n").filter((l) => l !== subLine && l !== "");
    if (add) lines.push(subLine);
    writeFileSync(f, lines.join("\n") + "\n");
  }
}

beforeAll(async () => {
  d = await startInitialisedDaemon();
  share = mkdtempSync("/tmp/nodelxd-test-share-");
  chmodSync(share, 0o755);
  writeFileSync(join(share, "mapped"), "x");
  chownSync(join(share, "mapped"), hostId, hostId);
  writeFileSync(join(share, "unmapped"), "y");
  chownSync(join(share, "unmapped"), 12345, 12345);
  mkdirSync(join(share, "own"), { mode: 0o755 });
  chownSync(join(share, "own"), hostId, hostId);
}, 120_000);

afterAll(async () => {
  delegateHostId(false);
  await d?.teardown();
  if (share) rmSync(share, { recursive: true, force: true });
}, 120_000);

describe("raw.idmap", () => {
  it("rejects bad syntax and host ids inside the delegation with LXD's messages, changing nothing", () => {
    const n = d.launch("idbad", { init: true });
    const before = ok("config", "get", n, "volatile.idmap.next");
    const cases: [string, string][] = [
      ["foo", 'Error: Failed to get ID map: Invalid ID map line "foo"'],
      ["uid 1000-1002 0-1", 'Error: Failed to get ID map: The ID map ranges are of different sizes "uid 1000-1002 0-1"'],
      ["xid 1 1", 'Error: Failed to get ID map: Invalid ID map type "xid 1 1"'],
      ["uid a 1", 'Error: Failed to get ID map: strconv.ParseInt: parsing "a": invalid syntax'],
      [`both ${delegation().start + 500} 5`, "Error: Failed to get ID map: Host id is in the range of subids"],
    ];
    for (const [value, message] of cases) {
      const r = d.lxc("config", "set", n, "raw.idmap", value);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim()).toBe(message);
    }
    expect(ok("config", "get", n, "raw.idmap").trim()).toBe("");
    expect(ok("config", "get", n, "volatile.idmap.next")).toBe(before);
    const bad = d.instanceName("idbadcreate");
    const r = d.lxc("init", "busybox", bad, "-c", "raw.idmap=foo");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Failed creating instance record: Failed initialising instance: Invalid ID map line "foo"');
  });

  it("punches the entry into the map, shifts the rootfs, and shows mapped host files with their ids", async () => {
    delegateHostId(true);
    const n = d.launch("idmap");
    // a file owned by uid/gid 1000 inside, made before the map changes
    ok("exec", n, "--", "sh", "-c", "echo a > /owned && chown 1000:1000 /owned");
    const { start, size } = delegation();
    expect(statSync(join(d.rootfs(n), "owned")).uid).toBe(start + 1000);
    ok("config", "set", n, "raw.idmap", `both ${hostId} 1000`);
    const expected = [
      { Isuid: true, Isgid: false, Hostid: start, Nsid: 0, Maprange: 1000 },
      { Isuid: true, Isgid: true, Hostid: hostId, Nsid: 1000, Maprange: 1 },
      { Isuid: true, Isgid: false, Hostid: start + 1001, Nsid: 1001, Maprange: size - 1001 },
      { Isuid: false, Isgid: true, Hostid: start, Nsid: 0, Maprange: 1000 },
      { Isuid: true, Isgid: true, Hostid: hostId, Nsid: 1000, Maprange: 1 },
      { Isuid: false, Isgid: true, Hostid: start + 1001, Nsid: 1001, Maprange: size - 1001 },
    ];
    expect(ok("config", "get", n, "volatile.idmap.next").trim()).toBe(JSON.stringify(expected));
    // the running container keeps its map until it restarts
    expect(JSON.parse(ok("config", "get", n, "volatile.idmap.current"))).toHaveLength(2);
    ok("restart", n, "--force");
    expect(ok("config", "get", n, "volatile.idmap.current").trim()).toBe(JSON.stringify(expected));
    expect(ok("config", "get", n, "volatile.last_state.idmap").trim()).toBe(JSON.stringify(expected));
    expect(confValues(n, "lxc.idmap")).toEqual([`u 0 ${start} 1000`, `u 1000 ${hostId} 1`, `g 1000 ${hostId} 1`, `u 1001 ${start + 1001} ${size - 1001}`, `g 0 ${start} 1000`, `g 1001 ${start + 1001} ${size - 1001}`]);
    // the rootfs was shifted: uid 1000's file is now the host id's
    const st = statSync(join(d.rootfs(n), "owned"));
    expect([st.uid, st.gid]).toEqual([hostId, hostId]);
    expect(ok("exec", n, "--", "stat", "-c", "%u:%g", "/owned").trim()).toBe("1000:1000");
    // the kernel map is the one configured
    const pid = (await d.api("GET", `/1.0/instances/${n}/state`)).body.metadata.pid as number;
    expect(readFileSync(`/proc/${pid}/uid_map`, "utf8")).toMatch(new RegExp(`^\\s*1000\\s+${hostId}\\s+1$`, "m"));
    // host files through a disk device
    ok("config", "device", "add", n, "share", "disk", `source=${share}`, "path=/mnt/share");
    expect(ok("exec", n, "--", "stat", "-c", "%u:%g", "/mnt/share/mapped").trim()).toBe("1000:1000");
    expect(ok("exec", n, "--", "stat", "-c", "%u:%g", "/mnt/share/unmapped").trim()).toBe("65534:65534");
    // uid 1000 inside is the host id: it can write to the host id's directory, and owns what it makes
    ok("exec", n, "--user", "1000", "--group", "1000", "--", "touch", "/mnt/share/own/fromc");
    const made = statSync(join(share, "own", "fromc"));
    expect([made.uid, made.gid]).toEqual([hostId, hostId]);
    expect(d.lxc("exec", n, "--user", "1001", "--", "touch", "/mnt/share/own/other").code).not.toBe(0);
    // unsetting it shifts back at the next start
    ok("config", "unset", n, "raw.idmap");
    ok("restart", n, "--force");
    expect(statSync(join(d.rootfs(n), "owned")).uid).toBe(start + 1000);
    expect(confValues(n, "lxc.idmap")).toEqual([`u 0 ${start} ${size}`, `g 0 ${start} ${size}`]);
  }, 120_000);

  it("is punched into isolated maps too, whose volatile.idmap.base is the first host id (as LXD)", async () => {
    delegateHostId(true);
    const n = d.launch("idiso", { config: { "security.idmap.isolated": "true", "raw.idmap": `both ${hostId} 1000` } });
    const base = Number(ok("config", "get", n, "volatile.idmap.base").trim());
    expect(base).toBeGreaterThanOrEqual(delegation().start + 65536);
    const map = JSON.parse(ok("config", "get", n, "volatile.idmap.current"));
    expect(map[0]).toEqual({ Isuid: true, Isgid: false, Hostid: base, Nsid: 0, Maprange: 1000 });
    expect(map[1]).toEqual({ Isuid: true, Isgid: true, Hostid: hostId, Nsid: 1000, Maprange: 1 });
    expect(map[2]).toEqual({ Isuid: true, Isgid: false, Hostid: base + 1001, Nsid: 1001, Maprange: 64535 });
    const pid = (await d.api("GET", `/1.0/instances/${n}/state`)).body.metadata.pid as number;
    expect(readFileSync(`/proc/${pid}/gid_map`, "utf8").trim().split("\n").map((l) => l.trim().split(/\s+/).join(" ")).sort()).toEqual([`0 ${base} 1000`, `1000 ${hostId} 1`, `1001 ${base + 1001} 64535`].sort());
  }, 60_000);

  it("fails the start, as LXD, when root may not map the host id (no /etc/subuid entry)", () => {
    delegateHostId(false);
    const n = d.launch("idnodeleg", { init: true, config: { "raw.idmap": `uid ${hostId} 5000` } });
    const r = d.lxc("start", n);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/id mapping|newuidmap/i);
    expect(ok("list", n, "-c", "s", "--format", "csv").trim()).toBe("STOPPED");
  }, 60_000);
});

describe("security.nesting", () => {
  it("mounts a spare proc and sysfs under /dev/.lxc for a nested container manager", () => {
    const nested = d.launch("nest", { config: { "security.nesting": "true" } });
    const plain = d.launch("nonest");
    const mounts = (n: string) => ok("exec", n, "--", "cat", "/proc/mounts");
    expect(mounts(nested)).toMatch(/^proc \/dev\/\.lxc\/proc proc /m);
    expect(mounts(nested)).toMatch(/^sys \/dev\/\.lxc\/sys sysfs /m);
    expect(ok("exec", nested, "--", "cat", "/dev/.lxc/proc/sys/kernel/ostype").trim()).toBe("Linux");
    expect(ok("exec", nested, "--", "test", "-d", "/dev/.lxc/sys/kernel")).toBe("");
    expect(mounts(plain)).not.toContain("/dev/.lxc/");
    expect(confValues(nested, "lxc.mount.entry")).toEqual(expect.arrayContaining(["proc dev/.lxc/proc proc create=dir,optional 0 0", "sys dev/.lxc/sys sysfs create=dir,optional 0 0"]));
  }, 60_000);
});

describe("security.syscalls.*", () => {
  const sh = (n: string, script: string) => d.lxc("exec", n, "--", "sh", "-c", script);

  it("keeps LXD's default deny list and kills a syscall named in security.syscalls.deny", () => {
    const n = d.launch("deny", { config: { "security.syscalls.deny": "mkdir", "security.syscalls.deny_compat": "true" } });
    const policy = readFileSync(join(d.dir, "security", "seccomp", n), "utf8");
    expect(policy.startsWith("2\ndenylist\n[all]\nreject_force_umount")).toBe(true);
    expect(policy).toContain("delete_module errno 38\n[x86_64]\ncompat_sys_rt_sigaction errno 38\n");
    expect(policy.endsWith("stub_x32_execveat errno 38\nmkdir")).toBe(true);
    expect(confValues(n, "lxc.seccomp.profile")).toEqual([join(d.dir, "security", "seccomp", n)]);
    // as in LXD, a bare name gets liblxc's default action for a denylist: SIGSYS
    expect(sh(n, "mkdir /x; echo rc=$?").stdout.trim()).toBe("rc=159");
    expect(sh(n, "touch /y && echo made").stdout.trim()).toBe("made");
    expect(d.lxc("exec", n, "--", "test", "-e", "/x").code).toBe(1);
  }, 60_000);

  it("returns an errno when the deny rule names one, and the old blacklist names work", () => {
    const n = d.launch("denyerrno", { config: { "security.syscalls.blacklist_default": "false", "security.syscalls.blacklist": "mkdir errno 1" } });
    expect(readFileSync(join(d.dir, "security", "seccomp", n), "utf8")).toBe("2\ndenylist\n[all]\nmkdir errno 1");
    const r = sh(n, "mkdir /x");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Operation not permitted");
  }, 60_000);

  it("allows only the listed syscalls with security.syscalls.allow", () => {
    const all = readFileSync("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "utf8").match(/(?<=#define __NR_)\w+/g)!;
    const allow = all.filter((s) => s !== "mkdir" && s !== "mkdirat").join("\n");
    const n = d.launch("allow", { config: { "security.syscalls.allow": allow } });
    expect(readFileSync(join(d.dir, "security", "seccomp", n), "utf8").startsWith("2\nallowlist\n[all]\nread\n")).toBe(true);
    expect(sh(n, "mkdir /x; echo rc=$?").stdout.trim()).toBe("rc=159");
    expect(sh(n, "touch /y && echo made").stdout.trim()).toBe("made");
  }, 60_000);

  it("writes no policy when nothing asks for one", () => {
    const n = d.launch("noseccomp", { config: { "security.syscalls.deny_default": "false" } });
    expect(confValues(n, "lxc.seccomp.profile")).toEqual([]);
    expect(sh(n, "mkdir /x && echo made").stdout.trim()).toBe("made");
    // A policy an earlier start needed does not outlive the need.
    const policy = join(d.dir, "security", "seccomp", n);
    expect(existsSync(policy)).toBe(false);
    for (const [value, present] of [["true", true], ["false", false]] as const) {
      expect(d.lxc("stop", "-f", n).code).toBe(0);
      expect(d.lxc("config", "set", n, "security.syscalls.deny_default", value).code).toBe(0);
      expect(d.lxc("start", n).code).toBe(0);
      expect(existsSync(policy)).toBe(present);
    }
  }, 60_000);

  it("refuses allow together with deny", () => {
    const n = d.launch("mutex", { init: true, config: { "security.syscalls.allow": "read" } });
    const r = d.lxc("config", "set", n, "security.syscalls.deny_default", "true");
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toBe("Error: Invalid config: security.syscalls.allow is mutually exclusive with security.syscalls.deny*");
  });
});

describe("linux.kernel_modules", () => {
  const missing = "nodelxd_no_such_module";
  it("starts when the modules are present (built in or loaded)", () => {
    const n = d.launch("kmod", { config: { "linux.kernel_modules": "overlay, bridge" } });
    expect(ok("list", n, "-c", "s", "--format", "csv").trim()).toBe("RUNNING");
  }, 60_000);

  it("fails the start with LXD's message when one can't be loaded", () => {
    const n = d.launch("kmodbad", { init: true, config: { "linux.kernel_modules": `overlay,${missing}` } });
    const r = d.lxc("start", n);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`Error: Failed to load kernel module '${missing}': Failed to run: modprobe -b ${missing}: exit status 1 (modprobe: FATAL: Module ${missing} not found`);
    expect(ok("list", n, "-c", "s", "--format", "csv").trim()).toBe("STOPPED");
  }, 60_000);

  it("loads them when the key changes on a running container, refusing the change if one fails", () => {
    const n = d.launch("kmodlive");
    const r = d.lxc("config", "set", n, "linux.kernel_modules", missing);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`Failed to load kernel module '${missing}'`);
    expect(ok("config", "get", n, "linux.kernel_modules").trim()).toBe("");
    ok("config", "set", n, "linux.kernel_modules", "overlay");
  }, 60_000);
});

describe("security.protection.shift", () => {
  it("publish packs host-neutral owners without shifting a protected rootfs; a start that needs a shift is refused", () => {
    const c = d.launch("prot");
    ok("stop", "-f", c);
    const shifted = d.hostRoot(c);
    expect(shifted.uid).toBeGreaterThan(0);
    ok("config", "set", c, "security.protection.shift", "true");
    ok("snapshot", c, "s0");
    const tmp = mkdtempSync("/tmp/nodelxd-test-pub-");
    try {
      for (const [src, alias] of [[c, `${c}-img`], [`${c}/s0`, `${c}-simg`]]) {
        ok("publish", src, `--alias=${alias}`);
        ok("image", "export", alias, join(tmp, alias));
        ok("image", "delete", alias);
        // The tarball's rootfs is owned by root (0/0), as an image must be.
        const file = readdirSync(tmp).find((f) => f.startsWith(alias))!;
        const listing = spawnSync("tar", ["-tvf", join(tmp, file), "--numeric-owner", "rootfs/bin"], { encoding: "utf8" }).stdout;
        expect(listing).toMatch(/^d\S+ 0\/0 /);
        expect(listing).not.toContain(`${shifted.uid}/`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    // The rootfs stayed shifted on disk (publish did not unshift it).
    expect(statSync(join(d.rootfs(c), "bin")).uid).toBe(shifted.uid);
    expect(d.hostRoot(c)).toEqual(shifted);
    // Privileged would need a shift: refused while protected, allowed once unprotected.
    ok("config", "set", c, "security.privileged", "true");
    const r = d.lxc("start", c);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Container is protected against filesystem shifting");
    ok("config", "set", c, "security.protection.shift", "false");
    ok("start", c);
    ok("stop", "-f", c);
    expect(statSync(join(d.rootfs(c), "bin")).uid).toBe(0);
  });
});
