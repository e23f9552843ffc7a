// Project restrictions, as LXD 5.0.2's lxd/project/permissions.go: the project config key table
// and the checks run over a project's (expanded) instances and its profiles (the aggregate
// limits and instance counts are in limits.ts). Pure functions: the service loads the
// project's rows and calls these; every message is LXD's.
import { isAbsolute, normalize } from "node:path";
import { parseByteSize } from "../shared/units.js";
import { parseRawIdmap, type IdmapEntry } from "../instances/idmap.js";

export type Config = Record<string, string>;
export type Devices = Record<string, Record<string, string>>;

/** An instance as the checks see it: config and devices already expanded with its profiles. */
export interface CheckedInstance {
  name: string;
  type: string; // "container" | "virtual-machine"
  config: Config;
  devices: Devices;
}

export interface CheckedProfile {
  name: string;
  config: Config;
  devices: Devices;
}

/** A custom volume for limits.disk accounting. */
export interface CheckedVolume {
  name: string;
  config: Config;
}

export interface ProjectInfo {
  name: string;
  config: Config;
  instances: CheckedInstance[];
  profiles: CheckedProfile[];
  volumes: CheckedVolume[];
}

export const isTrue = (v: string | undefined) => ["true", "yes", "on", "1"].includes((v ?? "").toLowerCase());
const isFalseOrEmpty = (v: string | undefined) => v === undefined || ["", "false", "no", "off", "0"].includes(v.toLowerCase());
const isFalse = (v: string | undefined) => ["false", "no", "off", "0"].includes((v ?? "").toLowerCase());
export const q = (s: string) => JSON.stringify(s);

// ---- validation of the project's own config (api_project.go projectValidateConfig) ----

type Validator = (v: string) => void;

/** Go's strconv.ParseUint(v, 10, 32) error text. */
function parseUint(v: string, bits = 32): number {
  if (!/^[0-9]+$/.test(v)) throw new Error(`strconv.ParseUint: parsing ${q(v)}: invalid syntax`);
  const n = Number(v);
  if (n > 2 ** bits - 1) throw new Error(`strconv.ParseUint: parsing ${q(v)}: value out of range`);
  return n;
}

/** Go's strconv.Atoi, as LXD's limit parsers use it. */
export function atoi(v: string): number {
  if (!/^[+-]?[0-9]+$/.test(v)) throw new Error(`strconv.Atoi: parsing ${q(v)}: invalid syntax`);
  return Number(v);
}

const optional =
  (inner: Validator): Validator =>
  (v) => {
    if (v !== "") inner(v);
  };
const isUint32: Validator = (v) => {
  try {
    parseUint(v);
  } catch (e) {
    throw new Error(`Invalid value for uint32 ${q(v)}: ${(e as Error).message}`);
  }
};
const isBool: Validator = (v) => {
  if (!["true", "false", "yes", "no", "1", "0", "on", "off"].includes(v.toLowerCase())) throw new Error(`Invalid value for a boolean ${q(v)}`);
};
const isOneOf =
  (...valid: string[]): Validator =>
  (v) => {
    if (!valid.includes(v)) throw new Error(`Invalid value ${q(v)} (not one of [${valid.join(" ")}])`);
  };
const isListOf =
  (inner: Validator): Validator =>
  (value) => {
    for (const raw of value.split(",")) {
      const v = raw.trim();
      try {
        inner(v);
      } catch (e) {
        throw new Error(`Item ${q(v)}: ${(e as Error).message}`);
      }
    }
  };
const isAny: Validator = () => {};
const isSize: Validator = (v) => void parseByteSize(v);
const isAbsFilePath: Validator = (v) => {
  if (!isAbsolute(v)) throw new Error("Must be absolute file path");
};

/** validate.ParseUint32Range: "N" or "START-END" → [start, size]. */
export function parseUint32Range(value: string): [number, number] {
  const parts = value.split("-");
  const [a, b] = [parts[0], parts.length > 1 ? parts.slice(1).join("-") : undefined];
  let start: number;
  try {
    start = parseUint(a);
  } catch {
    throw new Error(`Invalid number ${q(value)}`);
  }
  if (b === undefined) return [start, 1];
  let end: number;
  try {
    end = parseUint(b);
  } catch {
    throw new Error(`Invalid end number ${q(value)}`);
  }
  if (start >= end) throw new Error(`Start number ${start} must be lower than end number ${end}`);
  return [start, end - start + 1];
}

const isUint32Range: Validator = (v) => void parseUint32Range(v);
const allowOrBlock = optional(isOneOf("block", "allow"));
const allowOrBlockOrManaged = optional(isOneOf("block", "allow", "managed"));

/** Checks a restricted.networks.subnets value against the uplinks (injected: they live in the networks feature). */
export type SubnetsValidator = (value: string) => void;

export function projectConfigKeys(validateSubnets: SubnetsValidator): Record<string, Validator> {
  return {
    "features.profiles": optional(isBool),
    "features.images": optional(isBool),
    "features.storage.volumes": optional(isBool),
    "features.networks": optional(isBool),
    "limits.instances": optional(isUint32),
    "limits.containers": optional(isUint32),
    "limits.virtual-machines": optional(isUint32),
    "limits.memory": optional(isSize),
    "limits.processes": optional(isUint32),
    "limits.cpu": optional(isUint32),
    "limits.disk": optional(isSize),
    "limits.networks": optional(isUint32),
    restricted: optional(isBool),
    "restricted.backups": allowOrBlock,
    "restricted.cluster.groups": optional(isListOf(isAny)),
    "restricted.cluster.target": allowOrBlock,
    "restricted.containers.interception": optional(isOneOf("allow", "block", "full")),
    "restricted.containers.nesting": allowOrBlock,
    "restricted.containers.lowlevel": allowOrBlock,
    "restricted.containers.privilege": optional(isOneOf("allow", "unprivileged", "isolated")),
    "restricted.virtual-machines.lowlevel": allowOrBlock,
    "restricted.devices.unix-char": allowOrBlock,
    "restricted.devices.unix-block": allowOrBlock,
    "restricted.devices.unix-hotplug": allowOrBlock,
    "restricted.devices.infiniband": allowOrBlock,
    "restricted.devices.gpu": allowOrBlock,
    "restricted.devices.usb": allowOrBlock,
    "restricted.devices.pci": allowOrBlock,
    "restricted.devices.proxy": allowOrBlock,
    "restricted.devices.nic": allowOrBlockOrManaged,
    "restricted.devices.disk": allowOrBlockOrManaged,
    "restricted.devices.disk.paths": optional(isListOf(isAbsFilePath)),
    "restricted.idmap.uid": optional(isListOf(isUint32Range)),
    "restricted.idmap.gid": optional(isListOf(isUint32Range)),
    "restricted.networks.access": optional(isListOf(isAny)),
    "restricted.networks.uplinks": optional(isListOf(isAny)),
    "restricted.networks.subnets": optional(validateSubnets),
    "restricted.networks.zones": isListOf(isAny),
    "restricted.snapshots": allowOrBlock,
  };
}

/** projectValidateConfig: unknown keys, bad values, and restricted projects without their own profiles. */
export function validateProjectConfig(config: Config, validateSubnets: SubnetsValidator = () => {}): void {
  const keys = projectConfigKeys(validateSubnets);
  for (const [k, v] of Object.entries(config)) {
    if (k.startsWith("user.")) continue;
    const validator = keys[k];
    if (!validator) throw new Error(`Invalid project configuration key ${q(k)}`);
    try {
      validator(v);
    } catch (e) {
      throw new Error(`Invalid project configuration key ${q(k)} value: ${(e as Error).message}`);
    }
  }
  if (isTrue(config.restricted) && isFalse(config["features.profiles"])) throw new Error("Projects without their own profiles cannot be restricted");
}

// ---- restrictions (checkRestrictions) ----

/** Every restricted.* key with its default, as allRestrictions. */
export const RESTRICTION_DEFAULTS: Record<string, string> = {
  "restricted.backups": "block",
  "restricted.cluster.groups": "",
  "restricted.cluster.target": "block",
  "restricted.containers.nesting": "block",
  "restricted.containers.interception": "block",
  "restricted.containers.lowlevel": "block",
  "restricted.containers.privilege": "unprivileged",
  "restricted.virtual-machines.lowlevel": "block",
  "restricted.devices.unix-char": "block",
  "restricted.devices.unix-block": "block",
  "restricted.devices.unix-hotplug": "block",
  "restricted.devices.infiniband": "block",
  "restricted.devices.gpu": "block",
  "restricted.devices.usb": "block",
  "restricted.devices.pci": "block",
  "restricted.devices.proxy": "block",
  "restricted.devices.nic": "managed",
  "restricted.devices.disk": "managed",
  "restricted.devices.disk.paths": "",
  "restricted.idmap.uid": "",
  "restricted.idmap.gid": "",
  "restricted.networks.access": "",
  "restricted.snapshots": "block",
};

export const ALLOWABLE_INTERCEPT = [
  "security.syscalls.intercept.bpf",
  "security.syscalls.intercept.bpf.devices",
  "security.syscalls.intercept.mknod",
  "security.syscalls.intercept.mount",
  "security.syscalls.intercept.mount.fuse",
  "security.syscalls.intercept.setxattr",
];

const CONTAINER_LOWLEVEL = [
  "boot.host_shutdown_timeout",
  "linux.kernel_modules",
  "raw.apparmor",
  "raw.idmap",
  "raw.lxc",
  "raw.seccomp",
  "security.devlxd.images",
  "security.idmap.base",
  "security.idmap.size",
];
const VM_LOWLEVEL = ["boot.host_shutdown_timeout", "limits.memory.hugepages", "raw.idmap", "raw.qemu"];

export function isContainerLowLevelOptionForbidden(key: string): boolean {
  if (key.startsWith("security.syscalls.intercept") && !ALLOWABLE_INTERCEPT.includes(key)) return true;
  return CONTAINER_LOWLEVEL.includes(key);
}

export function isVMLowLevelOptionForbidden(key: string): boolean {
  return VM_LOWLEVEL.includes(key);
}

const DEVICE_BLOCK_MESSAGES: Record<string, string> = {
  "unix-char": "Unix character devices are forbidden",
  "unix-block": "Unix block devices are forbidden",
  "unix-hotplug": "Unix hotplug devices are forbidden",
  infiniband: "Infiniband devices are forbidden",
  gpu: "GPU devices are forbidden",
  usb: "USB devices are forbidden",
  pci: "PCI devices are forbidden",
  proxy: "Proxy devices are forbidden",
};

/** The value of a restriction: the project's, or its default. */
export function restriction(config: Config, key: string): string {
  return key in config ? config[key] : (RESTRICTION_DEFAULTS[key] ?? "");
}

/** projectHasRestriction: restricted=true and the key (or its default) equals `blockValue`. */
export function projectHasRestriction(config: Config, key: string, blockValue: string): boolean {
  if (isFalseOrEmpty(config.restricted)) return false;
  return restriction(config, key) === blockValue;
}

/** NetworkAllowed: may a restricted project's NICs (and network API calls) use this network? */
export function networkAllowed(config: Config, network: string, managed: boolean): boolean {
  if (isFalseOrEmpty(config.restricted)) return true;
  const nic = config["restricted.devices.nic"];
  if (nic === "block") return false;
  if ((nic === "managed" || nic === "" || nic === undefined) && !managed) return false;
  const access = config["restricted.networks.access"] ?? "";
  if (access === "") return true;
  return access
    .split(",")
    .map((s) => s.trim())
    .includes(network);
}

/** Go's filepath.Clean for absolute and relative paths. */
function clean(p: string): string {
  const n = normalize(p);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

/** CheckRestrictedDevicesDiskPaths: [allowed, the matching allowed parent]. No list allows every path. */
export function checkRestrictedDiskPath(config: Config, source: string): [boolean, string] {
  const paths = config["restricted.devices.disk.paths"] ?? "";
  if (paths === "") return [true, ""];
  const src = `${clean(source)}/`;
  for (const parent of paths.split(",")) {
    if (src.startsWith(`${clean(parent)}/`)) return [true, parent];
  }
  return [false, ""];
}

function parseHostRanges(isUid: boolean, value: string): IdmapEntry[] {
  const out: IdmapEntry[] = [];
  for (const item of value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")) {
    const [start, size] = parseUint32Range(item);
    out.push({ Isuid: isUid, Isgid: !isUid, Hostid: start, Nsid: -1, Maprange: size });
  }
  return out;
}

function coveredBy(e: IdmapEntry, uids: IdmapEntry[], gids: IdmapEntry[]): boolean {
  if (!e.Isuid && !e.Isgid) return false;
  const within = (list: IdmapEntry[]) => list.some((a) => e.Hostid >= a.Hostid && e.Hostid + e.Maprange <= a.Hostid + a.Maprange);
  const uidOk = e.Isuid && within(uids);
  const gidOk = e.Isgid && within(gids);
  if (e.Isuid && e.Isgid) return uidOk && gidOk;
  return e.Isuid ? uidOk : gidOk;
}

/** checkRestrictions: the project's restrictions over the given (expanded) instances and profiles. */
export function checkRestrictions(project: { name: string; config: Config }, instances: CheckedInstance[], profiles: CheckedProfile[]): void {
  const pc = project.config;
  const value = (key: string) => restriction(pc, key);
  const configChecks: Record<string, (v: string) => void> = {};
  const deviceChecks: Record<string, (d: Record<string, string>) => void> = {};

  const interception = value("restricted.containers.interception");
  for (const key of ALLOWABLE_INTERCEPT) {
    configChecks[key] = (v) => {
      if (interception !== "allow" && !isFalseOrEmpty(v)) throw new Error("Container syscall interception is forbidden");
    };
  }
  const nesting = value("restricted.containers.nesting");
  configChecks["security.nesting"] = (v) => {
    if (nesting === "block" && isTrue(v)) throw new Error("Container nesting is forbidden");
  };
  const privilege = value("restricted.containers.privilege");
  configChecks["security.privileged"] = (v) => {
    if (privilege !== "allow" && isTrue(v)) throw new Error("Privileged containers are forbidden");
  };
  configChecks["security.idmap.isolated"] = (v) => {
    if (privilege === "isolated" && isFalseOrEmpty(v)) throw new Error("Non-isolated containers are forbidden");
  };
  const allowContainerLowLevel = value("restricted.containers.lowlevel") === "allow";
  const allowVMLowLevel = value("restricted.virtual-machines.lowlevel") === "allow";
  for (const [type, message] of Object.entries(DEVICE_BLOCK_MESSAGES)) {
    const v = value(`restricted.devices.${type}`);
    deviceChecks[type] = () => {
      if (v !== "allow") throw new Error(message);
    };
  }
  const nic = value("restricted.devices.nic");
  deviceChecks.nic = (d) => {
    if (nic === "block") throw new Error("Network devices are forbidden");
    if (nic === "managed" && !d.network) throw new Error("Only managed network devices are allowed");
    if (d.network) {
      if (!networkAllowed(pc, d.network, true)) throw new Error("Network not allowed in project");
    } else if (d.parent) {
      if (!networkAllowed(pc, d.parent, false)) throw new Error("Network not allowed in project");
    }
  };
  const disk = value("restricted.devices.disk");
  deviceChecks.disk = (d) => {
    if (d.path === "/" && d.pool) return;
    if (!d.path && d.source === "cloud-init:config") return;
    if (disk === "block") throw new Error("Disk devices are forbidden");
    if (disk === "managed" && !d.pool) throw new Error("Attaching disks not backed by a pool is forbidden");
    if (disk === "allow" && !checkRestrictedDiskPath(pc, d.source ?? "")[0]) throw new Error(`Disk source path ${q(d.source ?? "")} not allowed`);
  };
  let uids: IdmapEntry[];
  let gids: IdmapEntry[];
  try {
    uids = parseHostRanges(true, value("restricted.idmap.uid"));
  } catch (e) {
    throw new Error(`Failed parsing "restricted.idmap.uid": ${(e as Error).message}`);
  }
  try {
    gids = parseHostRanges(false, value("restricted.idmap.gid"));
  } catch (e) {
    // LXD names the uid key here too.
    throw new Error(`Failed parsing "restricted.idmap.uid": ${(e as Error).message}`);
  }

  const checkConfig = (type: string, name: string, config: Config) => {
    const label = type === "any" ? "profile" : type;
    const containerOrProfile = type === "container" || type === "any";
    const vmOrProfile = type === "virtual-machine" || type === "any";
    const unrestricted = (type === "any" && allowContainerLowLevel && allowVMLowLevel) || (type === "container" && allowContainerLowLevel) || (type === "virtual-machine" && allowVMLowLevel);
    const keys = Object.keys(config).sort();
    // LXD only looks at keys that are set, so under privilege=isolated a container that never
    // sets security.idmap.isolated would pass while running with the shared map: check it as "".
    if (type === "container" && privilege === "isolated" && !("security.idmap.isolated" in config)) keys.push("security.idmap.isolated");
    for (const key of keys) {
      const v = config[key] ?? "";
      if (!unrestricted) {
        if (key === "raw.idmap") {
          const entries = parseRawIdmap(v);
          entries.forEach((e, i) => {
            if (!coveredBy(e, uids, gids)) throw new Error(`Use of low-level "raw.idmap" element ${i} on ${label} ${q(name)} of project ${q(project.name)} is forbidden`);
          });
        } else if ((containerOrProfile && isContainerLowLevelOptionForbidden(key)) || (vmOrProfile && isVMLowLevelOptionForbidden(key))) {
          throw new Error(`Use of low-level config ${q(key)} on ${label} ${q(name)} of project ${q(project.name)} is forbidden`);
        }
      }
      const checker = containerOrProfile ? configChecks[key] : undefined;
      if (!checker) continue;
      try {
        checker(v);
      } catch (e) {
        // LXD prints the instance type here, which for a profile is the empty "any".
        throw new Error(`Invalid value ${q(v)} for config ${q(key)} on ${type === "any" ? "" : type} ${q(name)} of project ${q(project.name)}: ${(e as Error).message}`);
      }
    }
  };
  const checkDevices = (type: string, name: string, devices: Devices) => {
    const label = type === "any" ? "profile" : type;
    for (const dev of Object.keys(devices).sort()) {
      const d = devices[dev];
      const check = deviceChecks[d.type ?? ""];
      if (!check) continue;
      try {
        check(d);
      } catch (e) {
        throw new Error(`Invalid device ${q(dev)} on ${label} ${q(name)} of project ${q(project.name)}: ${(e as Error).message}`);
      }
    }
  };
  for (const inst of instances) {
    checkConfig(inst.type, inst.name, inst.config);
    checkDevices(inst.type, inst.name, inst.devices);
  }
  for (const p of profiles) {
    checkConfig("any", p.name, p.config);
    checkDevices("any", p.name, p.devices);
  }
}

/** checkRestrictionsOnVolatileConfig: which volatile.* keys a restricted project's clients may set. Mutates `config` when stripping. */
export function checkVolatileConfig(project: { name: string; config: Config }, type: string, instance: string, config: Config, current: Config, strip: boolean): void {
  // LXD reads the key "restrict" here (sic), so this early return never fires for "restricted".
  if (project.config.restrict === "false") return;
  const lowlevel = type === "virtual-machine" ? "restricted.virtual-machines.lowlevel" : "restricted.containers.lowlevel";
  if (project.config[lowlevel] === "allow") return;
  const safe = (k: string) =>
    ["volatile.apply_template", "volatile.base_image", "volatile.last_state.power"].includes(k) || (k.startsWith("volatile.") && (k.endsWith(".apply_quota") || k.endsWith(".hwaddr")));
  for (const [key, v] of Object.entries(config)) {
    if (!key.startsWith("volatile.") || safe(key)) continue;
    if (strip) {
      delete config[key];
      continue;
    }
    if (!(key in current)) throw new Error(`Setting ${q(key)} on ${type} ${q(instance)} in project ${q(project.name)} is forbidden`);
    if (current[key] !== v) throw new Error(`Changing ${q(key)} on ${type} ${q(instance)} in project ${q(project.name)} is forbidden`);
  }
}

// ---- limits ----
