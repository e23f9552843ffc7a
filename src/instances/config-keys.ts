// Instance (container) config keys, declared once with LXD's validation rules and messages.
// validateInstanceConfig throws "Invalid config: <reason>" exactly as LXD 5.0.2 words it.
import { INSTANCE_SCHEDULE_ALIASES, validateSchedule } from "../snapshots/cron.js";
import type { KeyTable } from "../config/keys.js";
import type { Validator } from "../config/validators.js";
import { parseByteSize } from "../shared/units.js";

const boolRule: Validator = (v) => {
  if (!["true", "false", "yes", "no", "on", "off", "1", "0"].includes(v.toLowerCase())) throw new Error(`Invalid value for a boolean "${v}"`);
};
const intRule: Validator = (v) => {
  if (!/^-?[0-9]+$/.test(v)) throw new Error(`Invalid value for an integer "${v}"`);
};
const uint32Rule: Validator = (v) => {
  if (!/^[0-9]+$/.test(v)) throw new Error(`Invalid value for uint32 "${v}": strconv.ParseUint: parsing "${v}": invalid syntax`);
  if (Number(v) > 0xffffffff) throw new Error(`Invalid value for uint32 "${v}": strconv.ParseUint: parsing "${v}": value out of range`);
};
const oneOfRule =
  (...choices: string[]): Validator =>
  (v) => {
    if (!choices.includes(v)) throw new Error(`Invalid value "${v}" (not one of [${choices.join(" ")}])`);
  };
const uuidRule: Validator = (v) => {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v)) throw new Error("Invalid UUID");
};
const anyRule: Validator = () => {};

/** LXD's lxcValidConfig: each line "key = value" (comments, blanks skipped), no log, ephemeral, prlimit or network keys. */
const rawLxcRule: Validator = (text) => {
  for (const raw of text.split("\n")) {
    const line = raw.replace(/^[\t ]+/, "");
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq < 0) throw new Error(`Invalid raw.lxc line: ${line}`);
    const key = line.slice(0, eq).replace(/^[ \t]+|[ \t]+$/g, "").toLowerCase();
    if (key === "lxc.logfile" || key === "lxc.log.file") throw new Error("Setting lxc.logfile is not allowed");
    if (key === "lxc.syslog" || key === "lxc.log.syslog") throw new Error("Setting lxc.log.syslog is not allowed");
    if (key === "lxc.ephemeral") throw new Error("Setting lxc.ephemeral is not allowed");
    if (key.startsWith("lxc.prlimit.")) throw new Error('Process limits should be set via "limits.kernel.[limit name]" and not directly via "lxc.prlimit.[limit name]"');
    if (key.startsWith("lxc.net.")) {
      const f = key.split(".");
      if (!(f.length === 5 && (f[3] === "ipv4" || f[3] === "ipv6") && (f[4] === "address" || f[4] === "gateway"))) throw new Error("Only interface-specific ipv4/ipv6 lxc.net. keys are allowed");
    }
  }
};
/** LXD's snapshot schedules: cron expressions or aliases, ", "-separated (validate.IsCron). */
const scheduleRule: Validator = (v) => validateSchedule(v, INSTANCE_SCHEDULE_ALIASES);
const expiryRule: Validator = (v) => {
  if (!/^(\s*\d+(M|H|d|w|m|y)\s*)+$/.test(v)) throw new Error("Invalid expiry expression");
};
const rangedInt =
  (min: number, max: number): Validator =>
  (v) => {
    intRule(v);
    const n = Number(v);
    if (n < min || n > max) throw new Error(`Value must be between ${min} and ${max}`);
  };

const memoryRule: Validator = (v) => {
  if (v.endsWith("%")) {
    if (!/^[0-9]+(\.[0-9]+)?%$/.test(v)) throw new Error(`Invalid value: ${v}`);
    return;
  }
  parseByteSize(v);
};

/** A CPU count ("2") or a cpuset ("0-1,3"). */
export const cpuRule: Validator = (v) => {
  if (/^[0-9]+$/.test(v)) return;
  if (!/^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$/.test(v)) throw new Error("Invalid CPU limit syntax");
};

/** "50%" or "25ms/100ms". */
export function parseAllowance(v: string): { percent: number } | { quotaUs: number; periodUs: number } {
  const pct = /^([0-9]+)%$/.exec(v);
  if (pct) return { percent: Number(pct[1]) };
  const q = /^([0-9]+)ms\/([0-9]+)ms$/.exec(v);
  if (q && Number(q[2]) > 0) return { quotaUs: Number(q[1]) * 1000, periodUs: Number(q[2]) * 1000 };
  throw new Error(`Invalid allowance: ${v}`);
}

/**
 * Values written as one liblxc config line (lxc.environment, lxc.prlimit.*, lxc.sysctl.*): a
 * newline would end the line and start another of the caller's choosing, so control characters
 * are refused when the key is set, not when the container starts.
 */
const oneLineRule: Validator = (v) => {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw new Error(`Invalid value ${JSON.stringify(v)}: control characters (such as a newline) are not allowed`);
};
const PRLIMIT = /^(unlimited|[0-9]+)(:(unlimited|[0-9]+))?$/;
const prlimitRule: Validator = (v) => {
  if (!PRLIMIT.test(v)) throw new Error(`Invalid value "${v}": must be a number or "unlimited", optionally "soft:hard"`);
};
/** linux.kernel_modules: comma separated module names, never an option or a path. */
const kernelModulesRule: Validator = (v) => {
  for (const m of v.split(",").map((x) => (x.startsWith(" ") ? x.slice(1) : x))) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/.test(m)) throw new Error(`Invalid kernel module name ${JSON.stringify(m)}`);
  }
};

const withKey =
  (key: string, rule: Validator): Validator =>
  (v) => {
    try {
      rule(v);
    } catch (e) {
      throw new Error(`Invalid value for "${key}": ${(e as Error).message}`);
    }
  };

export const instanceKeys: KeyTable = {
  "boot.autostart": { validate: boolRule, doc: "Start the instance when the daemon starts" },
  "boot.autostart.delay": { validate: intRule, default: "0", doc: "Seconds to wait after starting this instance" },
  "boot.autostart.priority": { validate: intRule, default: "0", doc: "Start order (higher first)" },
  "boot.host_shutdown_timeout": { validate: intRule, default: "30", doc: "Seconds to wait for a clean shutdown" },
  "boot.stop.priority": { validate: intRule, default: "0", doc: "Stop order (higher first)" },
  "cloud-init.network-config": { validate: anyRule, doc: "cloud-init network config" },
  "cloud-init.user-data": { validate: anyRule, doc: "cloud-init user data" },
  "cloud-init.vendor-data": { validate: anyRule, doc: "cloud-init vendor data" },
  "cluster.evacuate": { validate: oneOfRule("auto", "migrate", "live-migrate", "stop"), doc: "Evacuation behaviour" },
  "limits.cpu": { validate: cpuRule, doc: "CPU count or cpuset" },
  "limits.cpu.allowance": { validate: (v) => void parseAllowance(v), doc: "CPU time share or quota" },
  "limits.cpu.priority": { validate: rangedInt(0, 10), doc: "CPU scheduling priority" },
  "limits.disk.priority": { validate: rangedInt(0, 10), doc: "I/O priority" },
  "limits.memory": { validate: memoryRule, doc: "Memory limit (bytes or percentage of host memory)" },
  "limits.memory.enforce": { validate: oneOfRule("soft", "hard"), default: "hard", doc: "hard or soft limit" },
  "limits.memory.swap": { validate: boolRule, default: "true", doc: "Allow swap" },
  "limits.memory.swap.priority": { validate: rangedInt(0, 10), doc: "Swap priority" },
  "limits.network.priority": { validate: rangedInt(0, 10), doc: "Network priority" },
  "limits.processes": { validate: intRule, doc: "Maximum number of processes" },
  "linux.kernel_modules": { validate: kernelModulesRule, doc: "Kernel modules to load before starting" },
  "migration.incremental.memory": { validate: boolRule, doc: "Incremental memory transfer" },
  "migration.incremental.memory.goal": { validate: uint32Rule, doc: "Percentage of memory to have in sync" },
  "migration.incremental.memory.iterations": { validate: uint32Rule, doc: "Maximum pre-copy iterations" },
  "nvidia.driver.capabilities": { validate: anyRule, doc: "NVIDIA driver capabilities (NVIDIA_DRIVER_CAPABILITIES)" },
  "nvidia.require.cuda": { validate: anyRule, doc: "NVIDIA CUDA version requirement (NVIDIA_REQUIRE_CUDA)" },
  "nvidia.require.driver": { validate: anyRule, doc: "NVIDIA driver version requirement (NVIDIA_REQUIRE_DRIVER)" },
  "nvidia.runtime": { validate: boolRule, doc: "Pass the host's NVIDIA runtime libraries in (liblxc nvidia hook)" },
  "raw.apparmor": { validate: anyRule, doc: "Extra AppArmor rules" },
  "raw.idmap": { validate: anyRule, doc: "Extra id map entries" },
  "raw.lxc": { validate: rawLxcRule, doc: "Extra liblxc config lines" },
  "raw.seccomp": { validate: anyRule, doc: "Raw seccomp policy" },
  "security.devlxd": { validate: boolRule, default: "true", doc: "/dev/lxd in the instance" },
  "security.devlxd.images": { validate: boolRule, doc: "Image sharing over /dev/lxd" },
  "security.idmap.base": { validate: uint32Rule, doc: "Host base id of the map" },
  "security.idmap.isolated": { validate: boolRule, doc: "A distinct id range for this container" },
  "security.idmap.size": { validate: uint32Rule, doc: "Size of the id map" },
  "security.nesting": { validate: boolRule, doc: "Allow nested containers" },
  "security.privileged": { validate: boolRule, doc: "Run without a user namespace" },
  "security.protection.delete": { validate: boolRule, doc: "Refuse deletion" },
  "security.protection.shift": { validate: boolRule, doc: "Refuse rootfs shifting" },
  "security.syscalls.allow": { validate: anyRule, doc: "Syscall allow list" },
  "security.syscalls.deny": { validate: anyRule, doc: "Syscall deny list" },
  "security.syscalls.deny_compat": { validate: boolRule, doc: "Block compat syscalls" },
  "security.syscalls.deny_default": { validate: boolRule, doc: "Default syscall deny list" },
  "security.syscalls.whitelist": { validate: anyRule, doc: "Older name of security.syscalls.allow" },
  "security.syscalls.blacklist": { validate: anyRule, doc: "Older name of security.syscalls.deny" },
  "security.syscalls.blacklist_compat": { validate: boolRule, doc: "Older name of security.syscalls.deny_compat" },
  "security.syscalls.blacklist_default": { validate: boolRule, doc: "Older name of security.syscalls.deny_default" },
  "security.syscalls.intercept.bpf": { validate: boolRule, doc: "Intercept bpf" },
  "security.syscalls.intercept.bpf.devices": { validate: boolRule, doc: "Allow device cgroup bpf programs" },
  "security.syscalls.intercept.mknod": { validate: boolRule, doc: "Intercept mknod" },
  "security.syscalls.intercept.mount": { validate: boolRule, doc: "Intercept mount" },
  "security.syscalls.intercept.mount.allowed": { validate: anyRule, doc: "Filesystems mountable with mount interception" },
  "security.syscalls.intercept.mount.fuse": { validate: anyRule, doc: "Filesystems redirected to FUSE" },
  "security.syscalls.intercept.mount.shift": { validate: boolRule, doc: "Shift intercepted mounts" },
  "security.syscalls.intercept.sched_setscheduler": { validate: boolRule, doc: "Intercept sched_setscheduler" },
  "security.syscalls.intercept.setxattr": { validate: boolRule, doc: "Intercept setxattr" },
  "snapshots.schedule": { validate: scheduleRule, doc: "Cron schedule for snapshots" },
  "snapshots.schedule.stopped": { validate: boolRule, doc: "Snapshot stopped instances" },
  "snapshots.pattern": { validate: anyRule, doc: "Snapshot name pattern" },
  "snapshots.expiry": { validate: expiryRule, doc: "Snapshot expiry" },
  "volatile.apply_template": { validate: anyRule, doc: "Template trigger to apply on next start" },
  "volatile.apply_nvram": { validate: boolRule, doc: "VM only" },
  "volatile.base_image": { validate: anyRule, doc: "Image the instance was created from" },
  "volatile.cloud-init.instance-id": { validate: anyRule, doc: "cloud-init instance id" },
  "volatile.evacuate.origin": { validate: anyRule, doc: "Evacuation origin" },
  "volatile.idmap.base": { validate: uint32Rule, doc: "First host id of the map" },
  "volatile.idmap.current": { validate: anyRule, doc: "Map in use" },
  "volatile.idmap.next": { validate: anyRule, doc: "Map to use at next start" },
  "volatile.last_state.idmap": { validate: anyRule, doc: "Map the rootfs is shifted to" },
  "volatile.last_state.power": { validate: anyRule, doc: "Power state when the daemon last saw it" },
  "volatile.uuid": { validate: uuidRule, doc: "Instance UUID" },
};

const DEVICE_VOLATILE = /^volatile\.[^.]+\.(host_name|hwaddr|name|mtu|apply_quota|ceph_rbd|vf\.[a-z_]+|last_state\.[a-z_.]+|created|gateway\.[a-z0-9_]+)$/;

function ruleFor(key: string): Validator | undefined {
  const spec = instanceKeys[key];
  if (spec) return spec.validate;
  if (/^environment\.[^\s=]+$/.test(key) && !/[\x00-\x1f\x7f]/.test(key)) return withKey(key, oneLineRule);
  if (/^(user|image)\.[^\s]+$/.test(key)) return anyRule;
  if (/^limits\.kernel\.[a-z_]+$/.test(key)) return withKey(key, prlimitRule);
  if (/^linux\.sysctl\.[a-z0-9_.]+$/.test(key)) return withKey(key, oneLineRule);
  if (DEVICE_VOLATILE.test(key)) return anyRule;
  return undefined;
}

/** Throws Error("Invalid config: ...") for the first bad key, as LXD. */
export function validateInstanceConfig(config: Record<string, string>, env: NodeJS.ProcessEnv = process.env): void {
  for (const [key, value] of Object.entries(config)) {
    const rule = ruleFor(key);
    if (!rule) throw new Error(`Invalid config: Unknown configuration key: ${key}`);
    if (value === "") continue;
    try {
      rule(value);
    } catch (e) {
      throw new Error(`Invalid config: ${(e as Error).message}`);
    }
  }
  const syscalls = syscallsConflict(config);
  if (syscalls) throw new Error(`Invalid config: ${syscalls}`);
  const unprivOnly = unprivilegedOnlyProblem(config, env);
  if (unprivOnly) throw new Error(`Invalid config: ${unprivOnly}`);
}

/** LXD_UNPRIVILEGED_ONLY=true in the daemon's environment: no privileged containers, no host root in raw.idmap, no lxc.idmap/lxc.include in raw.lxc (LXD's messages). */
function unprivilegedOnlyProblem(config: Record<string, string>, env: NodeJS.ProcessEnv): string | undefined {
  if (!isTrue(env.LXD_UNPRIVILEGED_ONLY)) return undefined;
  if (config["raw.idmap"]) {
    for (const line of config["raw.idmap"].split("\n")) {
      const host = line.split(" ")[1] ?? "";
      if (/^0(-|$)/.test(host)) return "Cannot map root user into container as LXD was configured to only allow unprivileged containers";
    }
  }
  for (const line of (config["raw.lxc"] ?? "").split("\n")) {
    const key = line.replace(/^[\t ]+/, "").split("=")[0].trim();
    if (key === "lxc.idmap" || key === "lxc.id_map" || key === "lxc.include") return `${key} can't be set in raw.lxc as LXD was configured to only allow unprivileged containers`;
  }
  if (isTrue(config["security.privileged"])) return "LXD was configured to only allow unprivileged containers";
  return undefined;
}

/** LXD's rules on combining raw.seccomp, allow and deny lists (the older names count too). */
function syscallsConflict(config: Record<string, string>): string | undefined {
  const has = (k: string) => k in config;
  const rawSeccomp = has("raw.seccomp");
  const allow = has("security.syscalls.allow") || has("security.syscalls.whitelist");
  const deny =
    has("security.syscalls.deny") ||
    has("security.syscalls.blacklist") ||
    isTrue(config["security.syscalls.deny_default"]) ||
    isTrue(config["security.syscalls.blacklist_default"]) ||
    isTrue(config["security.syscalls.deny_compat"]) ||
    isTrue(config["security.syscalls.blacklist_compat"]);
  if (rawSeccomp && (allow || deny)) return "raw.seccomp is mutually exclusive with security.syscalls*";
  if (allow && deny) return "security.syscalls.allow is mutually exclusive with security.syscalls.deny*";
  return undefined;
}

export const isTrue = (v: string | undefined): boolean => ["true", "yes", "on", "1"].includes((v ?? "").toLowerCase());
