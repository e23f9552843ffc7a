// raw.idmap arithmetic, the seccomp policy, security.nesting's liblxc lines, linux.kernel_modules
// parsing and the security.syscalls.* rules, checked against what LXD 5.0.2 produces.
import { describe, expect, it } from "vitest";
import { validateInstanceConfig } from "../../src/instances/config-keys.js";
import { addSafe, allocateIdmap, idmapJson, lxcIdmapLines, parseRawIdmap, remapId, type HostIdSet, type IdmapEntry } from "../../src/instances/idmap.js";
import { kernelModuleNames, loadKernelModules } from "../../src/instances/kernel-modules.js";
import { generateLxcConfig, type LxcConfigInput } from "../../src/instances/lxc/config.js";
import { needsSeccompPolicy, seccompPolicy } from "../../src/instances/lxc/seccomp.js";

// The reference host's delegation: root:100000:10000001.
const host: HostIdSet = { uid: { start: 100000, size: 10000001 }, gid: { start: 100000, size: 10000001 } };
const shared = (raw: string) => allocateIdmap(host, { privileged: false, isolated: false, raw: parseRawIdmap(raw) });
const e = (Isuid: boolean, Isgid: boolean, Hostid: number, Nsid: number, Maprange: number): IdmapEntry => ({ Isuid, Isgid, Hostid, Nsid, Maprange });

describe("raw.idmap parsing", () => {
  it("reads uid, gid and both lines with single ids and ranges", () => {
    expect(parseRawIdmap("both 1000 1000")).toEqual([e(true, true, 1000, 1000, 1)]);
    expect(parseRawIdmap("uid 2000-2009 10-19\n\ngid 3000 0")).toEqual([e(true, false, 2000, 10, 10), e(false, true, 3000, 0, 1)]);
  });
  it("rejects bad syntax with LXD's messages", () => {
    expect(() => parseRawIdmap("foo")).toThrow('Invalid ID map line "foo"');
    expect(() => parseRawIdmap("uid 1 2 3")).toThrow('Invalid ID map line "uid 1 2 3"');
    expect(() => parseRawIdmap("uid  1 2")).toThrow('Invalid ID map line "uid  1 2"');
    expect(() => parseRawIdmap("uid 1000-1002 0-1")).toThrow('The ID map ranges are of different sizes "uid 1000-1002 0-1"');
    expect(() => parseRawIdmap("xid 1 1")).toThrow('Invalid ID map type "xid 1 1"');
    expect(() => parseRawIdmap("uid a 1")).toThrow('strconv.ParseInt: parsing "a": invalid syntax');
    expect(() => parseRawIdmap("uid 1-2-3 1")).toThrow('Invalid ID Map range "1-2-3"');
    expect(() => parseRawIdmap("uid 99999999999999999999 1")).toThrow('strconv.ParseInt: parsing "99999999999999999999": value out of range');
  });
  it("refuses raw entries whose host ids overlap each other", () => {
    expect(() => parseRawIdmap("uid 1000-1009 0-9\nuid 1005 20")).toThrow("Host id is in the range of subids");
  });
});

describe("raw.idmap in the container map (outputs of LXD 5.0.2)", () => {
  it("punches a both entry into the uid and gid ranges", () => {
    const { base, map } = shared("both 1000 1000");
    expect(base).toBe(0);
    expect(idmapJson(map)).toBe(
      '[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":1000},{"Isuid":true,"Isgid":true,"Hostid":1000,"Nsid":1000,"Maprange":1},{"Isuid":true,"Isgid":false,"Hostid":101001,"Nsid":1001,"Maprange":9999000},{"Isuid":false,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":1000},{"Isuid":true,"Isgid":true,"Hostid":1000,"Nsid":1000,"Maprange":1},{"Isuid":false,"Isgid":true,"Hostid":101001,"Nsid":1001,"Maprange":9999000}]',
    );
    expect(lxcIdmapLines(map)).toEqual(["u 0 100000 1000", "u 1000 1000 1", "g 1000 1000 1", "u 1001 101001 9999000", "g 0 100000 1000", "g 1001 101001 9999000"]);
  });
  it("handles entries at id 0 and several entries", () => {
    expect(idmapJson(shared("both 1000 0\nuid 1000 5").map)).toBe(
      '[{"Isuid":true,"Isgid":true,"Hostid":1000,"Nsid":0,"Maprange":1},{"Isuid":true,"Isgid":false,"Hostid":100001,"Nsid":1,"Maprange":4},{"Isuid":true,"Isgid":false,"Hostid":1000,"Nsid":5,"Maprange":1},{"Isuid":true,"Isgid":false,"Hostid":100006,"Nsid":6,"Maprange":9999995},{"Isuid":true,"Isgid":true,"Hostid":1000,"Nsid":0,"Maprange":1},{"Isuid":false,"Isgid":true,"Hostid":100001,"Nsid":1,"Maprange":10000000}]',
    );
    expect(idmapJson(shared("uid 1000 0\nuid 1001 0").map)).toBe(
      '[{"Isuid":true,"Isgid":false,"Hostid":1000,"Nsid":0,"Maprange":1},{"Isuid":true,"Isgid":false,"Hostid":100001,"Nsid":1,"Maprange":10000000},{"Isuid":false,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":10000001},{"Isuid":true,"Isgid":false,"Hostid":1001,"Nsid":0,"Maprange":1}]',
    );
    expect(idmapJson(shared("gid 1000 2000\nboth 1000 2000").map)).toBe(
      '[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":2000},{"Isuid":true,"Isgid":true,"Hostid":1000,"Nsid":2000,"Maprange":1},{"Isuid":true,"Isgid":false,"Hostid":102001,"Nsid":2001,"Maprange":9998000},{"Isuid":false,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":2000},{"Isuid":false,"Isgid":true,"Hostid":1000,"Nsid":2000,"Maprange":1},{"Isuid":false,"Isgid":true,"Hostid":102001,"Nsid":2001,"Maprange":9998000}]',
    );
  });
  it("refuses host ids inside the delegated range", () => {
    expect(() => shared("both 100500 5")).toThrow("Host id is in the range of subids");
    expect(() => addSafe([e(true, false, 100000, 0, 65536)], e(true, false, 100010, 10, 1))).toThrow("Host id is in the range of subids");
  });
  it("applies to isolated maps too", () => {
    const { map } = allocateIdmap(host, { privileged: false, isolated: true, raw: parseRawIdmap("both 1000 1000") });
    expect(lxcIdmapLines(map)).toEqual(["u 0 165536 1000", "u 1000 1000 1", "g 1000 1000 1", "u 1001 166537 64535", "g 0 165536 1000", "g 1001 166537 64535"]);
  });
  it("privileged containers ignore it", () => {
    expect(allocateIdmap(host, { privileged: true, isolated: false, raw: parseRawIdmap("both 1000 1000") }).map).toEqual([]);
  });
  it("shifts a rootfs so the mapped namespace id lands on the host id", () => {
    const { map } = shared("both 1000 1000");
    expect(remapId([], map, "uid", 1000)).toBe(1000);
    expect(remapId([], map, "gid", 1000)).toBe(1000);
    expect(remapId([], map, "uid", 999)).toBe(100999);
    expect(remapId([], map, "uid", 1001)).toBe(101001);
    expect(remapId(map, [], "uid", 1000)).toBe(1000);
    expect(remapId(map, [], "uid", 101001)).toBe(1001);
  });
});

describe("seccomp policy", () => {
  const DEFAULT = "2\ndenylist\n[all]\nreject_force_umount  # comment this to allow umount -f;  not recommended\n[all]\nkexec_load errno 38\nopen_by_handle_at errno 38\ninit_module errno 38\nfinit_module errno 38\ndelete_module errno 38\n";
  it("is LXD's default denylist without any key", () => {
    expect(seccompPolicy({})).toBe(DEFAULT);
    expect(needsSeccompPolicy({})).toBe(true);
  });
  it("appends the deny list and the compat block", () => {
    const p = seccompPolicy({ "security.syscalls.deny": "mkdir", "security.syscalls.deny_compat": "true" }, "x86_64");
    expect(p.startsWith(DEFAULT + "[x86_64]\ncompat_sys_rt_sigaction errno 38\nstub_x32_rt_sigreturn errno 38\n")).toBe(true);
    expect(p.endsWith("compat_sys_io_submit errno 38\nstub_x32_execveat errno 38\nmkdir")).toBe(true);
    expect(p.split("\n").filter((l) => l.endsWith(" errno 38")).length).toBe(5 + 34);
  });
  it("drops the default rules with deny_default=false (or blacklist_default=false)", () => {
    expect(seccompPolicy({ "security.syscalls.deny_default": "false", "security.syscalls.deny": "mkdir errno 1" })).toBe("2\ndenylist\n[all]\nmkdir errno 1");
    expect(seccompPolicy({ "security.syscalls.blacklist_default": "false", "security.syscalls.blacklist": "chown" })).toBe("2\ndenylist\n[all]\nchown");
    expect(needsSeccompPolicy({ "security.syscalls.deny_default": "false" })).toBe(false);
    expect(needsSeccompPolicy({ "security.syscalls.deny_default": "false", "security.syscalls.deny_compat": "true" })).toBe(true);
  });
  it("writes an allowlist for allow (or whitelist), and raw.seccomp verbatim", () => {
    expect(seccompPolicy({ "security.syscalls.allow": "read\nwrite" })).toBe("2\nallowlist\n[all]\nread\nwrite");
    expect(seccompPolicy({ "security.syscalls.whitelist": "read" })).toBe("2\nallowlist\n[all]\nread");
    expect(seccompPolicy({ "raw.seccomp": "2\ndenylist\n[all]\nmkdir errno 1\n" })).toBe("2\ndenylist\n[all]\nmkdir errno 1\n");
  });
});

describe("security.syscalls.* validation", () => {
  const check = (c: Record<string, string>) => () => validateInstanceConfig(c);
  it("knows LXD 5.0.2's keys, including the older names", () => {
    for (const k of ["whitelist", "blacklist", "intercept.bpf", "intercept.mount.allowed", "intercept.sched_setscheduler"]) expect(check({ [`security.syscalls.${k}`]: k.startsWith("intercept.b") || k.endsWith("scheduler") ? "true" : "x" })).not.toThrow();
    expect(check({ "security.syscalls.foo": "1" })).toThrow("Invalid config: Unknown configuration key: security.syscalls.foo");
    expect(check({ "security.syscalls.blacklist_compat": "maybe" })).toThrow('Invalid config: Invalid value for a boolean "maybe"');
    expect(check({ "security.nesting": "maybe" })).toThrow('Invalid config: Invalid value for a boolean "maybe"');
  });
  it("refuses allow with deny, and raw.seccomp with either", () => {
    const allowDeny = "Invalid config: security.syscalls.allow is mutually exclusive with security.syscalls.deny*";
    expect(check({ "security.syscalls.allow": "read", "security.syscalls.deny": "x" })).toThrow(allowDeny);
    expect(check({ "security.syscalls.whitelist": "read", "security.syscalls.deny_default": "true" })).toThrow(allowDeny);
    expect(check({ "security.syscalls.allow": "read", "security.syscalls.blacklist_default": "true" })).toThrow(allowDeny);
    expect(check({ "security.syscalls.allow": "read", "security.syscalls.deny_default": "false" })).not.toThrow();
    expect(check({ "raw.seccomp": "x", "security.syscalls.blacklist": "y" })).toThrow("Invalid config: raw.seccomp is mutually exclusive with security.syscalls*");
  });
});

describe("security.nesting", () => {
  const input = (config: Record<string, string>): LxcConfigInput => ({
    name: "c1", lxdDir: "/var/lib/lxd", rootfs: "/r", architecture: "x86_64", config, idmap: [], cgroup: () => undefined, apparmor: false, hostMemoryBytes: 1 << 30, devices: [],
  });
  const entries = (config: Record<string, string>) => generateLxcConfig(input(config)).filter(([k]) => k === "lxc.mount.entry").map(([, v]) => v);
  it("adds LXD's spare proc and sysfs mounts", () => {
    expect(entries({ "security.nesting": "true" })).toEqual(expect.arrayContaining(["proc dev/.lxc/proc proc create=dir,optional 0 0", "sys dev/.lxc/sys sysfs create=dir,optional 0 0"]));
    expect(entries({}).some((m) => m.includes("dev/.lxc/"))).toBe(false);
    expect(entries({ "security.nesting": "false" }).some((m) => m.includes("dev/.lxc/"))).toBe(false);
  });
});

describe("linux.kernel_modules", () => {
  it("splits on commas, trimming one leading space as LXD", () => {
    expect(kernelModuleNames("overlay, bridge")).toEqual(["overlay", "bridge"]);
    expect(kernelModuleNames("")).toEqual([]);
  });
  it("never passes an option or a path to modprobe", async () => {
    await expect(loadKernelModules("-r")).rejects.toThrow("Failed to load kernel module '-r': Invalid module name");
    await expect(loadKernelModules("../x")).rejects.toThrow("Invalid module name");
  });
});
