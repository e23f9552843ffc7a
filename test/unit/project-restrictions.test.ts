// Project restrictions and limits (src/projects/restrictions.ts, limits.ts): LXD 5.0.2's checks and messages.
import { describe, expect, it } from "vitest";
import { checkRestrictedDiskPath, checkRestrictions, checkVolatileConfig, networkAllowed, parseUint32Range, projectHasRestriction, validateProjectConfig, type CheckedInstance, type ProjectInfo } from "../../src/projects/restrictions.js";
import { byteSizeIEC, checkInstanceCounts, checkProjectUpdate, checkRestrictionsAndLimits, currentAllocations } from "../../src/projects/limits.js";

const P = "p1";
const inst = (config: Record<string, string> = {}, devices: Record<string, Record<string, string>> = {}, name = "c1"): CheckedInstance => ({ name, type: "container", config, devices });
const check = (pc: Record<string, string>, i: CheckedInstance) => () => checkRestrictions({ name: P, config: { restricted: "true", ...pc } }, [i], []);

describe("project config validation", () => {
  it("accepts every key of 5.0.2 with good values", () => {
    expect(() =>
      validateProjectConfig({
        "limits.instances": "3",
        "limits.containers": "2",
        "limits.virtual-machines": "0",
        "limits.memory": "1GiB",
        "limits.processes": "100",
        "limits.cpu": "4",
        "limits.disk": "10GiB",
        "limits.networks": "2",
        restricted: "true",
        "restricted.backups": "allow",
        "restricted.cluster.groups": "a,b",
        "restricted.cluster.target": "allow",
        "restricted.containers.interception": "full",
        "restricted.containers.nesting": "allow",
        "restricted.containers.lowlevel": "block",
        "restricted.containers.privilege": "isolated",
        "restricted.virtual-machines.lowlevel": "allow",
        "restricted.devices.unix-char": "allow",
        "restricted.devices.unix-block": "allow",
        "restricted.devices.unix-hotplug": "allow",
        "restricted.devices.infiniband": "allow",
        "restricted.devices.gpu": "allow",
        "restricted.devices.usb": "allow",
        "restricted.devices.pci": "allow",
        "restricted.devices.proxy": "allow",
        "restricted.devices.nic": "managed",
        "restricted.devices.disk": "allow",
        "restricted.devices.disk.paths": "/srv,/home/x",
        "restricted.idmap.uid": "1000,2000-2010",
        "restricted.idmap.gid": "1000",
        "restricted.networks.access": "br0",
        "restricted.networks.uplinks": "up",
        "restricted.networks.zones": "z",
        "restricted.snapshots": "allow",
        "user.x": "anything",
      }),
    ).not.toThrow();
  });

  it("refuses bad values with LXD's messages", () => {
    const cases: [Record<string, string>, string][] = [
      [{ garbage: "x" }, 'Invalid project configuration key "garbage"'],
      [{ restricted: "x" }, 'Invalid project configuration key "restricted" value: Invalid value for a boolean "x"'],
      [{ "restricted.snapshots": "bogus" }, 'Invalid project configuration key "restricted.snapshots" value: Invalid value "bogus" (not one of [block allow])'],
      [{ "restricted.devices.nic": "x" }, 'Invalid project configuration key "restricted.devices.nic" value: Invalid value "x" (not one of [block allow managed])'],
      [{ "restricted.containers.privilege": "x" }, 'Invalid project configuration key "restricted.containers.privilege" value: Invalid value "x" (not one of [allow unprivileged isolated])'],
      [{ "limits.cpu": "x" }, 'Invalid project configuration key "limits.cpu" value: Invalid value for uint32 "x": strconv.ParseUint: parsing "x": invalid syntax'],
      [{ "limits.memory": "1 parsec" }, 'Invalid project configuration key "limits.memory" value: Invalid value: 1 parsec'],
      [{ "restricted.devices.disk.paths": "/a,rel" }, 'Invalid project configuration key "restricted.devices.disk.paths" value: Item "rel": Must be absolute file path'],
      [{ "restricted.idmap.uid": "1000-x" }, 'Invalid project configuration key "restricted.idmap.uid" value: Item "1000-x": Invalid end number "1000-x"'],
      [{ "restricted.idmap.gid": "10-5" }, 'Invalid project configuration key "restricted.idmap.gid" value: Item "10-5": Start number 10 must be lower than end number 5'],
      [{ restricted: "true", "features.profiles": "false" }, "Projects without their own profiles cannot be restricted"],
    ];
    for (const [config, message] of cases) expect(() => validateProjectConfig(config)).toThrow(message);
  });

  it("parses uint32 ranges", () => {
    expect(parseUint32Range("5")).toEqual([5, 1]);
    expect(parseUint32Range("5-9")).toEqual([5, 5]);
    expect(() => parseUint32Range("x")).toThrow('Invalid number "x"');
  });
});

describe("restrictions over instances and profiles", () => {
  it("restricted=false checks nothing (projectHasRestriction too)", () => {
    expect(() => checkRestrictions({ name: P, config: {} }, [inst({ "security.privileged": "true" })], [])).toThrow(); // direct calls check regardless, as LXD's checkRestrictions
    expect(projectHasRestriction({}, "restricted.snapshots", "block")).toBe(false);
    expect(projectHasRestriction({ restricted: "true" }, "restricted.snapshots", "block")).toBe(true);
    expect(projectHasRestriction({ restricted: "true", "restricted.snapshots": "allow" }, "restricted.snapshots", "block")).toBe(false);
    expect(projectHasRestriction({ restricted: "true" }, "restricted.backups", "block")).toBe(true);
    expect(projectHasRestriction({ restricted: "true", "restricted.backups": "allow" }, "restricted.backups", "block")).toBe(false);
  });

  it("containers.privilege: unprivileged by default, allow, isolated", () => {
    expect(check({}, inst({ "security.privileged": "true" }))).toThrow('Invalid value "true" for config "security.privileged" on container "c1" of project "p1": Privileged containers are forbidden');
    expect(check({}, inst({ "security.privileged": "false" }))).not.toThrow();
    expect(check({ "restricted.containers.privilege": "allow" }, inst({ "security.privileged": "true" }))).not.toThrow();
    expect(check({ "restricted.containers.privilege": "isolated" }, inst({ "security.idmap.isolated": "false" }))).toThrow("Non-isolated containers are forbidden");
    expect(check({ "restricted.containers.privilege": "isolated" }, inst({ "security.idmap.isolated": "true" }))).not.toThrow();
  });

  it("containers.nesting", () => {
    expect(check({}, inst({ "security.nesting": "true" }))).toThrow("Container nesting is forbidden");
    expect(check({ "restricted.containers.nesting": "allow" }, inst({ "security.nesting": "true" }))).not.toThrow();
  });

  it("containers.lowlevel and raw.idmap against restricted.idmap.uid/gid", () => {
    for (const key of ["raw.lxc", "raw.seccomp", "linux.kernel_modules", "security.idmap.base", "security.syscalls.intercept.mount.allow", "boot.host_shutdown_timeout"]) {
      expect(check({}, inst({ [key]: "x" }))).toThrow(`Use of low-level config "${key}" on container "c1" of project "p1" is forbidden`);
      expect(check({ "restricted.containers.lowlevel": "allow" }, inst({ [key]: "x" }))).not.toThrow();
    }
    expect(check({}, inst({ "raw.idmap": "both 1000 1000" }))).toThrow('Use of low-level "raw.idmap" element 0 on container "c1" of project "p1" is forbidden');
    expect(check({ "restricted.idmap.uid": "1000" }, inst({ "raw.idmap": "both 1000 1000" }))).toThrow('element 0');
    expect(check({ "restricted.idmap.uid": "1000", "restricted.idmap.gid": "1000" }, inst({ "raw.idmap": "both 1000 1000" }))).not.toThrow();
    expect(check({ "restricted.idmap.uid": "1000-1009" }, inst({ "raw.idmap": "uid 1005 0" }))).not.toThrow();
    expect(check({ "restricted.idmap.uid": "1000-1009" }, inst({ "raw.idmap": "uid 1005-1010 0-5" }))).toThrow('element 0');
    // A profile is "low-level allowed" only when both container and VM low-level are allowed.
    const prof = { name: "default", config: { "raw.lxc": "x" }, devices: {} };
    expect(() => checkRestrictions({ name: P, config: { restricted: "true", "restricted.containers.lowlevel": "allow" } }, [], [prof])).toThrow('Use of low-level config "raw.lxc" on profile "default" of project "p1" is forbidden');
    expect(() => checkRestrictions({ name: P, config: { restricted: "true", "restricted.containers.lowlevel": "allow", "restricted.virtual-machines.lowlevel": "allow" } }, [], [prof])).not.toThrow();
  });

  it("containers.interception", () => {
    expect(check({}, inst({ "security.syscalls.intercept.mknod": "true" }))).toThrow("Container syscall interception is forbidden");
    expect(check({}, inst({ "security.syscalls.intercept.mknod": "false" }))).not.toThrow();
    expect(check({ "restricted.containers.interception": "full" }, inst({ "security.syscalls.intercept.mknod": "true" }))).toThrow("Container syscall interception is forbidden");
    expect(check({ "restricted.containers.interception": "allow" }, inst({ "security.syscalls.intercept.mknod": "true" }))).not.toThrow();
  });

  it("devices: unix-char, unix-block, unix-hotplug, usb, gpu, infiniband, pci, proxy", () => {
    const msgs: Record<string, string> = {
      "unix-char": "Unix character devices are forbidden",
      "unix-block": "Unix block devices are forbidden",
      "unix-hotplug": "Unix hotplug devices are forbidden",
      usb: "USB devices are forbidden",
      gpu: "GPU devices are forbidden",
      infiniband: "Infiniband devices are forbidden",
      pci: "PCI devices are forbidden",
      proxy: "Proxy devices are forbidden",
    };
    for (const [type, msg] of Object.entries(msgs)) {
      expect(check({}, inst({}, { d: { type } }))).toThrow(`Invalid device "d" on container "c1" of project "p1": ${msg}`);
      expect(check({ [`restricted.devices.${type}`]: "allow" }, inst({}, { d: { type } }))).not.toThrow();
    }
  });

  it("devices: nic (managed by default, block, allow) and networks.access", () => {
    expect(check({}, inst({}, { e: { type: "nic", nictype: "p2p" } }))).toThrow("Only managed network devices are allowed");
    expect(check({}, inst({}, { e: { type: "nic", network: "br0" } }))).not.toThrow();
    expect(check({ "restricted.devices.nic": "block" }, inst({}, { e: { type: "nic", network: "br0" } }))).toThrow("Network devices are forbidden");
    expect(check({ "restricted.devices.nic": "allow" }, inst({}, { e: { type: "nic", nictype: "p2p" } }))).not.toThrow();
    expect(check({ "restricted.networks.access": "br1" }, inst({}, { e: { type: "nic", network: "br0" } }))).toThrow("Network not allowed in project");
    expect(check({ "restricted.networks.access": "br0, br1" }, inst({}, { e: { type: "nic", network: "br0" } }))).not.toThrow();
    expect(check({ "restricted.devices.nic": "allow", "restricted.networks.access": "br1" }, inst({}, { e: { type: "nic", nictype: "bridged", parent: "br0" } }))).toThrow("Network not allowed in project");
    expect(networkAllowed({}, "x", false)).toBe(true);
    expect(networkAllowed({ restricted: "true" }, "x", false)).toBe(false);
    expect(networkAllowed({ restricted: "true" }, "x", true)).toBe(true);
    expect(networkAllowed({ restricted: "true", "restricted.devices.nic": "block" }, "x", true)).toBe(false);
  });

  it("devices: disk (managed by default, block, allow with disk.paths)", () => {
    const root = { type: "disk", path: "/", pool: "default" };
    expect(check({ "restricted.devices.disk": "block" }, inst({}, { root }))).not.toThrow();
    expect(check({ "restricted.devices.disk": "block" }, inst({}, { root, v: { type: "disk", pool: "default", source: "v", path: "/m" } }))).toThrow("Disk devices are forbidden");
    expect(check({}, inst({}, { v: { type: "disk", pool: "default", source: "v", path: "/m" } }))).not.toThrow();
    expect(check({}, inst({}, { h: { type: "disk", source: "/srv", path: "/m" } }))).toThrow("Attaching disks not backed by a pool is forbidden");
    expect(check({ "restricted.devices.disk": "allow" }, inst({}, { h: { type: "disk", source: "/srv", path: "/m" } }))).not.toThrow();
    expect(check({ "restricted.devices.disk": "allow", "restricted.devices.disk.paths": "/srv/ok" }, inst({}, { h: { type: "disk", source: "/srv/okay", path: "/m" } }))).toThrow('Disk source path "/srv/okay" not allowed');
    expect(check({ "restricted.devices.disk": "allow", "restricted.devices.disk.paths": "/srv/ok" }, inst({}, { h: { type: "disk", source: "/srv/ok/../x", path: "/m" } }))).toThrow("not allowed");
    expect(check({ "restricted.devices.disk": "allow", "restricted.devices.disk.paths": "/srv/ok" }, inst({}, { h: { type: "disk", source: "/srv/ok/sub", path: "/m" } }))).not.toThrow();
    expect(checkRestrictedDiskPath({ "restricted.devices.disk.paths": "/a/,/b" }, "/b")).toEqual([true, "/b"]);
  });

  it("volatile keys: safe ones pass, others refused, copies strip them", () => {
    const project = { name: P, config: { restricted: "true" } };
    expect(() => checkVolatileConfig(project, "container", "c1", { "volatile.uuid": "x" }, {}, false)).toThrow('Setting "volatile.uuid" on container "c1" in project "p1" is forbidden');
    expect(() => checkVolatileConfig(project, "container", "c1", { "volatile.uuid": "x" }, { "volatile.uuid": "y" }, false)).toThrow('Changing "volatile.uuid"');
    expect(() => checkVolatileConfig(project, "container", "c1", { "volatile.uuid": "y", "volatile.eth0.hwaddr": "z", "volatile.base_image": "f" }, { "volatile.uuid": "y" }, false)).not.toThrow();
    const cfg = { "volatile.uuid": "x", a: "b" };
    checkVolatileConfig(project, "container", "c1", cfg, {}, true);
    expect(cfg).toEqual({ a: "b" });
    expect(() => checkVolatileConfig({ name: P, config: { "restricted.containers.lowlevel": "allow" } }, "container", "c1", { "volatile.uuid": "x" }, {}, false)).not.toThrow();
  });
});

describe("limits", () => {
  const info = (config: Record<string, string>, instances: CheckedInstance[] = [], volumes: { name: string; config: Record<string, string> }[] = []): ProjectInfo => ({ name: P, config, instances, profiles: [], volumes });
  const root = (size?: string) => ({ root: { type: "disk", path: "/", pool: "default", ...(size ? { size } : {}) } });

  it("counts instances against limits.containers and limits.instances", () => {
    expect(() => checkInstanceCounts(info({ "limits.containers": "1" }, [inst()]), "container")).toThrow('Reached maximum number of instances of type "container" in project "p1"');
    expect(() => checkInstanceCounts(info({ "limits.instances": "1" }, [inst()]), "container")).toThrow('Reached maximum number of instances in project "p1"');
    expect(() => checkInstanceCounts(info({ "limits.instances": "2", "limits.containers": "2" }, [inst()]), "container")).not.toThrow();
  });

  it("aggregates cpu, memory, processes and disk; instances must set them", () => {
    const cfg = { "limits.cpu": "4", "limits.memory": "1GiB", "limits.processes": "10", "limits.disk": "10GiB" };
    const good = inst({ "limits.cpu": "2", "limits.memory": "512MiB", "limits.processes": "5" }, root("1GiB"));
    expect(() => checkRestrictionsAndLimits(info(cfg, [good]))).not.toThrow();
    expect(() => checkRestrictionsAndLimits(info(cfg, [good, { ...good, name: "c2" }, { ...good, name: "c3" }]))).toThrow('Reached maximum aggregate value "4" for "limits.cpu" in project "p1"');
    expect(() => checkRestrictionsAndLimits(info({ "limits.cpu": "4" }, [inst()]))).toThrow('Failed getting usage of project entities: Instance "c1" in project "p1" has no "limits.cpu" config, either directly or via a profile');
    expect(() => checkRestrictionsAndLimits(info({ "limits.disk": "4GiB" }, [inst({}, root())]))).toThrow('has no "size" config set on the root device either directly or via a profile');
    expect(() => checkRestrictionsAndLimits(info({ "limits.disk": "4GiB" }, [inst({}, root("1GiB"))], [{ name: "v", config: {} }]))).toThrow('Custom volume "v" in project "p1" has no "size" config set');
    expect(() => checkRestrictionsAndLimits(info({ "limits.disk": "4GiB" }, [inst({}, root("1GiB"))], [{ name: "v", config: { size: "4GiB" } }]))).toThrow('Reached maximum aggregate value "4GiB" for "limits.disk"');
    expect(() => checkRestrictionsAndLimits(info({ "limits.cpu": "4" }, [inst({ "limits.cpu": "0-1" })]))).toThrow('Failed parsing "limits.cpu" for instance "c1" in project "p1"');
  });

  it("refuses lowering a limit below the current usage", () => {
    const i = info({}, [inst({ "limits.memory": "512MiB", "limits.cpu": "2" }, root("1GiB"))]);
    expect(() => checkProjectUpdate(i, { "limits.memory": "100MiB" }, ["limits.memory"])).toThrow('"limits.memory" is too low: current total is "512.0MiB"');
    expect(() => checkProjectUpdate(i, { "limits.cpu": "1" }, ["limits.cpu"])).toThrow('"limits.cpu" is too low: current total is "2"');
    expect(() => checkProjectUpdate(i, { "limits.instances": "0" }, ["limits.instances"])).toThrow('Can\'t change limits.instances in project "p1": "limits.instances" is too low: there currently are 1 total instances in project "p1"');
    expect(() => checkProjectUpdate(i, { "limits.containers": "0" }, ["limits.containers"])).toThrow('Can\'t change "limits.containers" in project "p1": "limits.containers" is too low: there currently are 1 instances of type container in project "p1"');
    expect(() => checkProjectUpdate(i, { "limits.memory": "1GiB" }, ["limits.memory"])).not.toThrow();
    expect(() => checkProjectUpdate(info({}, [inst({ "security.nesting": "true" })]), { "restricted.containers.nesting": "block" }, ["restricted.containers.nesting"])).toThrow(
      'Conflict detected when changing "restricted.containers.nesting" in project "p1": Invalid value "true" for config "security.nesting" on container "c1" of project "p1": Container nesting is forbidden',
    );
    expect(() => checkProjectUpdate(info({}, [inst({ "security.privileged": "true" })]), { restricted: "true" }, ["restricted"])).toThrow("Privileged containers are forbidden");
    expect(() => checkProjectUpdate(info({}, [inst({ "security.privileged": "true" })]), { restricted: "false" }, ["restricted"])).not.toThrow();
  });

  it("reports usage and limits as GET /1.0/projects/{name}/state", () => {
    const a = currentAllocations(info({ "limits.cpu": "5", "limits.networks": "3" }, [inst({ "limits.cpu": "1" }, root("3GiB")), inst({}, root(), "c2")]), 0);
    expect(a).toEqual({
      cpu: { limit: 5, usage: 1 },
      disk: { limit: -1, usage: 3 * 2 ** 30 },
      memory: { limit: -1, usage: 0 },
      processes: { limit: -1, usage: 0 },
      instances: { limit: -1, usage: 2 },
      containers: { limit: -1, usage: 2 },
      "virtual-machines": { limit: -1, usage: 0 },
      networks: { limit: 3, usage: 0 },
    });
    expect(byteSizeIEC(512 * 2 ** 20)).toBe("512.0MiB");
    expect(byteSizeIEC(100)).toBe("100B");
  });
});

describe("isolated idmap bypass", () => {
  it("a container that does not set security.idmap.isolated is non-isolated under privilege=isolated", () => {
    expect(check({ "restricted.containers.privilege": "isolated" }, inst({}))).toThrow('Invalid value "" for config "security.idmap.isolated" on container "c1" of project "p1": Non-isolated containers are forbidden');
    // Profiles need not set it (the instance's expanded config decides).
    expect(() => checkRestrictions({ name: P, config: { restricted: "true", "restricted.containers.privilege": "isolated" } }, [], [{ name: "default", config: {}, devices: {} }])).not.toThrow();
  });
});
