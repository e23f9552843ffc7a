// Input hardening (issue 19): what may reach a command line or a liblxc config line.
import { describe, expect, it } from "vitest";
import { compressCommand, parseCompressionAlgorithm } from "../../src/images/compression.js";
import { validateConfig } from "../../src/config/keys.js";
import { serverKeys } from "../../src/config/server-keys.js";
import { validateInstanceConfig } from "../../src/instances/config-keys.js";
import { pushOptions } from "../../src/api/routes/instance-files.js";
import type { ApiRequest } from "../../src/api/route.js";
import { checkDeviceValues } from "../../src/devices/registry.js";
import { validateProfile } from "../../src/profiles/profile-service.js";

describe("compression_algorithm", () => {
  it("accepts LXD's compressors, alone or with level and thread flags", () => {
    for (const v of ["none", "gzip", "bzip2", "xz", "lzma", "zstd"]) expect(parseCompressionAlgorithm(v)).toEqual({ codec: v, flags: [] });
    expect(parseCompressionAlgorithm("gzip -9")).toEqual({ codec: "gzip", flags: ["-9"] });
    expect(parseCompressionAlgorithm("gzip --rsyncable")).toEqual({ codec: "gzip", flags: ["--rsyncable"] }); // LXD's own suite (basic_usage) publishes with it
    expect(parseCompressionAlgorithm("xz -T0 -9e")).toEqual({ codec: "xz", flags: ["-T0", "-9e"] });
    expect(parseCompressionAlgorithm("zstd -19 --threads=2")).toEqual({ codec: "zstd", flags: ["-19", "--threads=2"] });
    expect(compressCommand(parseCompressionAlgorithm("gzip -1"))).toEqual(["gzip", ["-c", "-n", "-1"]]);
    expect(compressCommand(parseCompressionAlgorithm("none"))).toBeUndefined();
  });
  it("refuses other programs and any flag that is not a level or thread count", () => {
    for (const v of ["gzip --help", "xz -T0 --files=/path", "zstd --rm", "gzip -o /path", "sh -c id", "bash", "gzip;id", "gzip\n-d", "gzip -d", "zstd -o /x", "xz --files0=/etc/passwd", "", "squashfs", "lz4"]) {
      expect(() => parseCompressionAlgorithm(v), v).toThrow(/Invalid compression algorithm/);
    }
    expect(() => parseCompressionAlgorithm("gzip --help")).toThrow('Invalid compression algorithm "gzip --help": flag "--help" is not allowed for gzip');
  });
  it("is the rule of the server keys backups. and images.compression_algorithm", () => {
    for (const key of ["backups.compression_algorithm", "images.compression_algorithm"]) {
      expect(() => validateConfig(serverKeys, { [key]: "zstd --rm" })).toThrow(`cannot set '${key}' to 'zstd --rm'`);
      expect(() => validateConfig(serverKeys, { [key]: "xz -9" })).not.toThrow();
    }
  });
});

describe("file push headers", () => {
  const req = (headers: Record<string, string>) => ({ headers }) as unknown as ApiRequest;
  it("reads LXD's headers, absent ones meaning 'not given'", () => {
    expect(pushOptions(req({}))).toEqual({ type: "file", write: "overwrite", uid: undefined, gid: undefined, mode: undefined });
    expect(pushOptions(req({ "x-lxd-uid": "1000", "x-lxd-gid": "0", "x-lxd-mode": "0644", "x-lxd-type": "directory", "x-lxd-write": "append" }))).toEqual({ type: "directory", write: "append", uid: 1000, gid: 0, mode: 0o644 });
    expect(pushOptions(req({ "x-lxd-mode": "04755" })).mode).toBe(0o4755);
  });
  it("refuses ids and modes that are not what they claim, with a message naming the header", () => {
    expect(() => pushOptions(req({ "x-lxd-uid": "-1" }))).toThrow('Invalid UID: strconv.ParseInt: parsing "-1": invalid syntax');
    expect(() => pushOptions(req({ "x-lxd-uid": "4294967296" }))).toThrow('Invalid UID: strconv.ParseInt: parsing "4294967296": value out of range');
    expect(() => pushOptions(req({ "x-lxd-uid": "abc" }))).toThrow("Invalid UID");
    expect(() => pushOptions(req({ "x-lxd-gid": "1e3" }))).toThrow("Invalid GID");
    expect(() => pushOptions(req({ "x-lxd-gid": "99999999999999999999" }))).toThrow("value out of range");
    expect(() => pushOptions(req({ "x-lxd-mode": "99999" }))).toThrow('Invalid Mode: "99999"');
    expect(() => pushOptions(req({ "x-lxd-mode": "17777" }))).toThrow("Invalid Mode");
    expect(() => pushOptions(req({ "x-lxd-mode": "-644" }))).toThrow("Invalid Mode");
    expect(() => pushOptions(req({ "x-lxd-type": "fifo" }))).toThrow("Bad file type: fifo");
    expect(() => pushOptions(req({ "x-lxd-write": "truncate" }))).toThrow("Bad file write mode: truncate");
  });
});

describe("config values that become liblxc config lines", () => {
  const check = (c: Record<string, string>) => () => validateInstanceConfig(c);
  it("refuses newlines and other control characters in environment.*, linux.sysctl.*", () => {
    expect(check({ "environment.FOO": "a\nlxc.cap.drop =" })).toThrow('Invalid config: Invalid value for "environment.FOO": Invalid value "a\\nlxc.cap.drop =": control characters (such as a newline) are not allowed');
    expect(check({ "environment.FOO": "a\rb" })).toThrow("control characters");
    expect(check({ "environment.FOO": "a\0b" })).toThrow("control characters");
    expect(check({ "linux.sysctl.net.ipv4.ip_forward": "1\nlxc.apparmor.profile = unconfined" })).toThrow("control characters");
    expect(check({ "environment.FOO": "with spaces = and equals", "environment.PATH": "/bin:/usr/bin", "linux.sysctl.net.core.somaxconn": "512" })).not.toThrow();
    expect(check({ "environment.A=B": "x" })).toThrow("Unknown configuration key");
  });
  it("accepts only liblxc prlimit values in limits.kernel.*", () => {
    expect(check({ "limits.kernel.nofile": "1024", "limits.kernel.core": "unlimited", "limits.kernel.nproc": "100:200" })).not.toThrow();
    expect(check({ "limits.kernel.nofile": "1024\nlxc.init.cmd = /bin/sh" })).toThrow('Invalid value for "limits.kernel.nofile"');
  });
  it("accepts only module names in linux.kernel_modules", () => {
    expect(check({ "linux.kernel_modules": "overlay, br_netfilter" })).not.toThrow();
    expect(check({ "linux.kernel_modules": "-r" })).toThrow('Invalid kernel module name "-r"');
    expect(check({ "linux.kernel_modules": "../../x" })).toThrow("Invalid kernel module name");
  });
});

describe("device values that become liblxc lines", () => {
  it("refuses control characters in any device key or value", () => {
    expect(() => checkDeviceValues({ type: "disk", source: "/srv", path: "/mnt\nlxc.mount.entry = / x none bind" })).toThrow('Invalid value for "path": control characters');
    expect(() => checkDeviceValues({ type: "nic", hwaddr: "00:16:3e:00:00:01\r" })).toThrow('Invalid value for "hwaddr"');
    expect(() => checkDeviceValues({ type: "disk", source: "/srv/a b", path: "/mnt/x" })).not.toThrow();
    expect(() => validateProfile({ name: "p", description: "", config: {}, devices: { d: { type: "disk", source: "/srv", path: "/a\nb" } } })).toThrow('Device validation failed for "d"');
  });
});

describe("LXD_UNPRIVILEGED_ONLY", () => {
  const env = { LXD_UNPRIVILEGED_ONLY: "true" };
  it("refuses privileged containers, host root in raw.idmap and lxc.idmap/lxc.include in raw.lxc, with LXD's messages", () => {
    expect(() => validateInstanceConfig({ "security.privileged": "true" }, env)).toThrow("Invalid config: LXD was configured to only allow unprivileged containers");
    expect(() => validateInstanceConfig({ "raw.idmap": "both 0 1000" }, env)).toThrow("Cannot map root user into container");
    expect(() => validateInstanceConfig({ "raw.lxc": "lxc.idmap=" }, env)).toThrow("lxc.idmap can't be set in raw.lxc");
    expect(() => validateInstanceConfig({ "raw.lxc": "lxc.include=" }, env)).toThrow("lxc.include can't be set in raw.lxc");
    expect(() => validateInstanceConfig({ "security.privileged": "false", "raw.idmap": "both 1000 1000" }, env)).not.toThrow();
    expect(() => validateInstanceConfig({ "security.privileged": "true" }, {})).not.toThrow();
  });
});
