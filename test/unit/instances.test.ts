import { describe, expect, it } from "vitest";
import { validateInstanceConfig } from "../../src/instances/config-keys.js";
import { parseByteSize } from "../../src/shared/units.js";
import { allocateIdmap, lxcIdmapLines, parseSubIdFile, remapId, toHost, toNs, type HostIdSet } from "../../src/instances/idmap.js";
import { parseCgroupLayout } from "../../src/instances/lxc/cgroup.js";
import { cpusetFor, generateLxcConfig, parseRawLxc, renderLxcConfig, type LxcConfigInput } from "../../src/instances/lxc/config.js";
import { validateInstanceName } from "../../src/instances/names.js";
import { networkStateOf } from "../../src/instances/netstate.js";

const host: HostIdSet = { uid: { start: 1_000_000, size: 1_000_000_000 }, gid: { start: 1_000_000, size: 1_000_000_000 } };

describe("idmap", () => {
  it("parses root's delegation from subuid text", () => {
    expect(parseSubIdFile("_lxd:100000:5\nroot:100000:10000001\n")).toEqual({ start: 100000, size: 10000001 });
    expect(parseSubIdFile("alice:1:2\n")).toBeUndefined();
  });
  it("gives a shared container the whole delegation at base 0, as LXD", () => {
    const { base, map } = allocateIdmap(host, { privileged: false, isolated: false });
    expect(base).toBe(0);
    expect(map).toEqual([
      { Isuid: true, Isgid: false, Hostid: 1_000_000, Nsid: 0, Maprange: 1_000_000_000 },
      { Isuid: false, Isgid: true, Hostid: 1_000_000, Nsid: 0, Maprange: 1_000_000_000 },
    ]);
    expect(lxcIdmapLines(map)).toEqual(["u 0 1000000 1000000000", "g 0 1000000 1000000000"]);
  });
  it("privileged containers have no map", () => {
    expect(allocateIdmap(host, { privileged: true, isolated: true })).toEqual({ base: 0, map: [] });
  });
  it("isolated containers get distinct ranges after the first 65536 ids; base is the first host id, as LXD", () => {
    const a = allocateIdmap(host, { privileged: false, isolated: true });
    expect(a.base).toBe(1_065_536);
    expect(a.map[0].Hostid).toBe(1_065_536);
    expect(a.map[0].Maprange).toBe(65536);
    const b = allocateIdmap(host, { privileged: false, isolated: true }, [{ base: 1_065_536, size: 65536 }]);
    expect(b.base).toBe(1_131_072);
    // bases recorded as offsets into the delegation (older nodelxd) still count
    expect(allocateIdmap(host, { privileged: false, isolated: true }, [{ base: 65536, size: 65536 }]).base).toBe(1_131_072);
    const gap = allocateIdmap(host, { privileged: false, isolated: true, size: 1000 }, [{ base: 1_200_000, size: 65536 }]);
    expect(gap.base).toBe(1_065_536);
    const fixed = allocateIdmap(host, { privileged: false, isolated: true, base: 5_000_000, size: 100 });
    expect(fixed).toEqual({ base: 5_000_000, map: [{ Isuid: true, Isgid: false, Hostid: 5_000_000, Nsid: 0, Maprange: 100 }, { Isuid: false, Isgid: true, Hostid: 5_000_000, Nsid: 0, Maprange: 100 }] });
    expect(() => allocateIdmap({ uid: { start: 0, size: 70000 }, gid: { start: 0, size: 70000 } }, { privileged: false, isolated: true })).toThrow("Not enough uid/gid");
  });
  it("maps ids both ways and shifts between maps", () => {
    const m1 = allocateIdmap(host, { privileged: false, isolated: false }).map;
    const m2 = allocateIdmap(host, { privileged: false, isolated: true }).map;
    expect(toHost(m1, "uid", 0)).toBe(1_000_000);
    expect(toNs(m1, "gid", 1_000_033)).toBe(33);
    expect(toHost([], "uid", 5)).toBe(5);
    expect(remapId([], m1, "uid", 0)).toBe(1_000_000);
    expect(remapId(m1, m2, "uid", 1_000_033)).toBe(1_065_569);
    expect(remapId(m2, [], "gid", 1_065_569)).toBe(33);
    // ids the new map can't hold become nobody
    expect(remapId([], m2, "uid", 70000)).toBe(1_065_536 + 65534);
  });
});

describe("instance config keys", () => {
  const bad = (c: Record<string, string>) => () => validateInstanceConfig(c);
  it("uses LXD's messages", () => {
    expect(bad({ "limits.memory": "abc" })).toThrow("Invalid config: Invalid value: abc");
    expect(bad({ "limits.cpu": "abc" })).toThrow("Invalid config: Invalid CPU limit syntax");
    expect(bad({ "limits.cpu.allowance": "abc" })).toThrow("Invalid config: Invalid allowance: abc");
    expect(bad({ "limits.processes": "x" })).toThrow('Invalid config: Invalid value for an integer "x"');
    expect(bad({ "boot.autostart": "maybe" })).toThrow('Invalid config: Invalid value for a boolean "maybe"');
    expect(bad({ "foo.bar": "1" })).toThrow("Invalid config: Unknown configuration key: foo.bar");
    expect(bad({ "volatile.uuid": "x" })).toThrow("Invalid config: Invalid UUID");
    expect(bad({ "volatile.foo": "1" })).toThrow("Unknown configuration key: volatile.foo");
    expect(bad({ "security.idmap.size": "abc" })).toThrow('Invalid value for uint32 "abc": strconv.ParseUint: parsing "abc": invalid syntax');
  });
  it("accepts what LXD accepts", () => {
    expect(bad({ "limits.memory": "64MiB", "limits.cpu": "0-1,3", "limits.cpu.allowance": "25ms/100ms", "environment.X": "1", "user.a": "b", "volatile.eth0.hwaddr": "00:16:3e:00:00:01", "image.os": "x" })).not.toThrow();
    expect(bad({ "limits.memory": "50%" })).not.toThrow();
  });
  it("parses byte sizes with decimal and binary units", () => {
    expect(parseByteSize("64MiB")).toBe(67108864);
    expect(parseByteSize("64MB")).toBe(64_000_000);
    expect(parseByteSize("1024")).toBe(1024);
    expect(() => parseByteSize("12XB")).toThrow("Invalid value: 12XB");
  });
});

describe("instance names", () => {
  it("follows LXD's rules", () => {
    expect(() => validateInstanceName("hx_bad")).toThrow("Invalid instance name: Name can only contain alphanumeric and hyphen characters");
    expect(() => validateInstanceName("1abc")).toThrow("Name must not start with a number");
    expect(() => validateInstanceName("-x")).toThrow('Name must not start with "-" character');
    expect(() => validateInstanceName("a".repeat(64))).toThrow("Name must be 1-63 characters long");
    expect(() => validateInstanceName("c1")).not.toThrow();
  });
});

describe("liblxc config", () => {
  const base = (over: Partial<LxcConfigInput> = {}): LxcConfigInput => ({
    name: "c1",
    lxdDir: "/var/lib/lxd",
    rootfs: "/var/lib/lxd/storage-pools/default/containers/c1/rootfs",
    architecture: "x86_64",
    config: {},
    idmap: allocateIdmap(host, { privileged: false, isolated: false }).map,
    cgroup: (c) => (["memory", "cpu", "cpuset", "pids", "devices", "freezer"].includes(c) ? "v1" : undefined),
    apparmor: false,
    hostMemoryBytes: 8 * 2 ** 30,
    devices: [],
    ...over,
  });
  const get = (lines: [string, string][], key: string) => lines.filter(([k]) => k === key).map(([, v]) => v);

  it("has the rootfs, hostname, logs, console and mounts", () => {
    const lines = generateLxcConfig(base());
    expect(get(lines, "lxc.rootfs.path")).toEqual(["dir:/var/lib/lxd/storage-pools/default/containers/c1/rootfs"]);
    expect(get(lines, "lxc.uts.name")).toEqual(["c1"]);
    expect(get(lines, "lxc.log.file")).toEqual(["/var/lib/lxd/logs/c1/lxc.log"]);
    expect(get(lines, "lxc.console.logfile")).toEqual(["/var/lib/lxd/logs/c1/console.log"]);
    expect(get(lines, "lxc.console.buffer.size")).toEqual(["auto"]);
    expect(get(lines, "lxc.mount.auto")).toEqual(["proc:rw sys:rw cgroup:mixed"]);
    expect(get(lines, "lxc.idmap")).toEqual(["u 0 1000000 1000000000", "g 0 1000000 1000000000"]);
    expect(get(lines, "lxc.arch")).toEqual(["linux64"]);
    expect(get(lines, "lxc.apparmor.profile")).toEqual([]);
    expect(lines[lines.length - 1][0]).toBe("lxc.rootfs.path");
  });
  it("privileged containers have no idmap; apparmor and seccomp only when available", () => {
    const lines = generateLxcConfig(base({ idmap: [], apparmor: true, seccompProfile: "/s" }));
    expect(get(lines, "lxc.idmap")).toEqual([]);
    expect(get(lines, "lxc.apparmor.profile")).toEqual(["unconfined"]);
    expect(get(lines, "lxc.seccomp.profile")).toEqual(["/s"]);
  });
  it("maps limits to cgroup v1 keys", () => {
    const lines = generateLxcConfig(base({ config: { "limits.memory": "64MiB", "limits.cpu": "2", "limits.cpu.allowance": "50%", "limits.processes": "100", "limits.memory.swap": "false" } }));
    expect(get(lines, "lxc.cgroup.memory.limit_in_bytes")).toEqual(["67108864"]);
    expect(get(lines, "lxc.cgroup.memory.memsw.limit_in_bytes")).toEqual(["67108864"]);
    expect(get(lines, "lxc.cgroup.cpuset.cpus")).toEqual(["0-1"]);
    expect(get(lines, "lxc.cgroup.cpu.shares")).toEqual(["512"]);
    expect(get(lines, "lxc.cgroup.pids.max")).toEqual(["100"]);
  });
  it("maps limits to cgroup v2 keys", () => {
    const lines = generateLxcConfig(base({ cgroup: () => "v2", config: { "limits.memory": "50%", "limits.cpu.allowance": "25ms/100ms", "limits.processes": "7" } }));
    expect(get(lines, "lxc.cgroup2.memory.max")).toEqual([String(4 * 2 ** 30)]);
    expect(get(lines, "lxc.cgroup2.cpu.max")).toEqual(["25000 100000"]);
    expect(get(lines, "lxc.cgroup2.pids.max")).toEqual(["7"]);
    expect(get(lines, "lxc.cgroup2.devices.deny")).toEqual(["a"]);
  });
  it("adds environment, device entries, network interfaces and raw.lxc", () => {
    const lines = generateLxcConfig(
      base({
        config: { "environment.FOO": "bar baz", "raw.lxc": "lxc.init.cmd = /bin/sh\n# c\n" },
        devices: [{ lxc: [["lxc.mount.entry", "/src mnt/x none bind,create=dir 0 0"]] }, { networkInterfaces: [{ type: "veth", name: "eth0" }] }, { networkInterfaces: [{ type: "phys", name: "eth1" }] }],
      }),
    );
    expect(get(lines, "lxc.environment")).toEqual(["FOO=bar baz"]);
    expect(get(lines, "lxc.mount.entry")).toContain("/src mnt/x none bind,create=dir 0 0");
    expect(get(lines, "lxc.net.0.type")).toEqual(["veth"]);
    expect(get(lines, "lxc.net.1.name")).toEqual(["eth1"]);
    expect(get(lines, "lxc.init.cmd")).toEqual(["/bin/sh"]);
    expect(() => parseRawLxc("nonsense")).toThrow("Invalid raw.lxc line");
  });
  it("maps limits.kernel.* to prlimits and linux.sysctl.* to namespaced sysctls", () => {
    const lines = generateLxcConfig(base({ config: { "limits.kernel.nofile": "4096", "linux.sysctl.net.ipv4.ip_forward": "1" } }));
    expect(get(lines, "lxc.prlimit.nofile")).toEqual(["4096"]);
    expect(get(lines, "lxc.sysctl.net.ipv4.ip_forward")).toEqual(["1"]);
  });
  it("refuses values that would inject config lines", () => {
    expect(() => renderLxcConfig(generateLxcConfig(base({ config: { "environment.X": "a\nlxc.init.cmd = /evil" } })))).toThrow("Invalid liblxc config value");
  });
  it("turns a CPU count into a cpuset", () => {
    expect(cpusetFor("1")).toBe("0");
    expect(cpusetFor("4")).toBe("0-3");
    expect(cpusetFor("0,2")).toBe("0,2");
  });
});

describe("cgroup layout", () => {
  it("tells v1 controllers from the unified ones on a hybrid host", () => {
    const mounts = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\ncgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
    const l = parseCgroupLayout(mounts, "memory pids");
    expect(l.v1.get("memory")).toBe("/sys/fs/cgroup/memory");
    expect(l.v1.has("name=systemd")).toBe(false);
    expect(l.v2.has("pids")).toBe(true);
    expect(l.v2.has("memory")).toBe(false);
    expect(l.v2Mount).toBe("/sys/fs/cgroup/unified");
  });
});

describe("network state from rtnetlink links and addresses", () => {
  it("maps counters, addresses, scopes and link types as LXD shows them", () => {
    const net = networkStateOf(
      {
        links: [
          { index: 1, name: "lo", flags: 0x10049, type: 772, mtu: 65536, address: "00:00:00:00:00:00", stats: [0, 0, 0, 0, 0, 0, 0, 0] },
          { index: 2, name: "eth0", flags: 0x11043, type: 1, mtu: 1500, address: "00:16:3e:61:f1:5a", stats: [744, 3, 0, 1, 996, 6, 0, 0] },
          { index: 3, name: "eth1", flags: 0x1002, type: 1, mtu: 1400, address: "00:16:3e:00:00:01", stats: [0, 0, 0, 0, 0, 0, 0, 0] },
        ],
        addrs: [
          { index: 1, family: 4, prefix: 8, scope: 254, address: "127.0.0.1" },
          { index: 2, family: 4, prefix: 24, scope: 0, address: "10.98.32.124" },
          { index: 1, family: 6, prefix: 128, scope: 254, address: "::1" },
          { index: 2, family: 6, prefix: 64, scope: 253, address: "fe80::216:3eff:fe61:f15a" },
        ],
      },
      { eth0: "veth1234" },
    );
    expect(net.lo).toEqual({
      addresses: [
        { family: "inet", address: "127.0.0.1", netmask: "8", scope: "local" },
        { family: "inet6", address: "::1", netmask: "128", scope: "local" },
      ],
      counters: { bytes_received: 0, packets_received: 0, errors_received: 0, packets_dropped_inbound: 0, bytes_sent: 0, packets_sent: 0, errors_sent: 0, packets_dropped_outbound: 0 },
      hwaddr: "",
      host_name: "",
      mtu: 65536,
      state: "up",
      type: "loopback",
    });
    expect(net.eth0.addresses).toEqual([
      { family: "inet", address: "10.98.32.124", netmask: "24", scope: "global" },
      { family: "inet6", address: "fe80::216:3eff:fe61:f15a", netmask: "64", scope: "link" },
    ]);
    expect(net.eth0).toMatchObject({ hwaddr: "00:16:3e:61:f1:5a", host_name: "veth1234", mtu: 1500, state: "up", type: "broadcast" });
    expect(net.eth0.counters).toMatchObject({ bytes_received: 744, packets_received: 3, packets_dropped_inbound: 1, bytes_sent: 996, packets_sent: 6 });
    expect(net.eth1).toMatchObject({ addresses: [], state: "down", mtu: 1400 });
  });
});

describe("generated instance names (lxc launch IMAGE without a name)", () => {
  it("are adjective-animal, valid, and avoid taken names", async () => {
    const { generateInstanceName, validateInstanceName } = await import("../../src/instances/names.js");
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const n = generateInstanceName((x) => seen.has(x));
      expect(n).toMatch(/^[a-z]+-[a-z]+$/);
      expect(() => validateInstanceName(n)).not.toThrow();
      expect(seen.has(n)).toBe(false);
      seen.add(n);
    }
    expect(() => generateInstanceName(() => true)).toThrow("Couldn't generate a new unique name after 100 tries");
  });
});

describe("cloud-init instance-id resets (LXD's needsNewInstanceID)", () => {
  it("on cloud-init key changes and NIC name changes only", async () => {
    const { needsNewInstanceId } = await import("../../src/instances/cloud-init.js");
    const eth0 = { eth0: { type: "nic", nictype: "p2p", name: "eth0" } };
    const base = { config: {}, devices: eth0 };
    expect(needsNewInstanceId(base, { config: { "cloud-init.user-data": "blah" }, devices: eth0 }, {})).toBe(true);
    expect(needsNewInstanceId(base, { config: { "user.network-config": "x" }, devices: eth0 }, {})).toBe(true);
    expect(needsNewInstanceId(base, { config: { "user.foo": "x" }, devices: eth0 }, {})).toBe(false);
    expect(needsNewInstanceId(base, { config: {}, devices: { eth0: { ...eth0.eth0, "user.foo": "bar" } } }, {})).toBe(false);
    expect(needsNewInstanceId(base, { config: {}, devices: { eth0: { ...eth0.eth0, name: "foo" } } }, {})).toBe(true);
    expect(needsNewInstanceId(base, { config: {}, devices: {} }, {})).toBe(true);
    expect(needsNewInstanceId({ config: {}, devices: { n: { type: "nic" } } }, { config: {}, devices: { m: { type: "nic" } } }, {})).toBe(true);
  });
});

describe("instance types (lxc launch -t c0.5-m0.2)", () => {
  it("turns LXD's custom c<cpus>-m<GiB> form into limits as LXD does", async () => {
    const { parseInstanceType } = await import("../../src/instances/instance-types.js");
    expect(parseInstanceType("c0.5-m0.2")).toEqual({ "limits.cpu": "1", "limits.cpu.allowance": "50%", "limits.memory": "204MB" });
    expect(parseInstanceType("c2")).toEqual({ "limits.cpu": "2" });
    expect(parseInstanceType("c1.5-m4")).toEqual({ "limits.cpu": "2", "limits.cpu.allowance": "75%", "limits.memory": "4096MB" });
    expect(() => parseInstanceType("t2.micro")).toThrow("Provided instance type doesn't exist: t2.micro");
    expect(() => parseInstanceType("aws:t2.micro")).toThrow("Provided instance type doesn't exist: aws:t2.micro");
    expect(() => parseInstanceType("cx-m1")).toThrow("Bad custom instance type: cx-m1");
  });
});
