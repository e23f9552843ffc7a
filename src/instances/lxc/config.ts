// liblxc configuration for a container, generated from its expanded config, id map and the
// devices' RunConfigs. Pure: everything about the host comes in through LxcConfigInput.
import { join } from "node:path";
import type { RunConfig } from "../../devices/types.js";
import { parseAllowance, isTrue } from "../config-keys.js";
import { parseByteSize } from "../../shared/units.js";
import { lxcIdmapLines, type IdmapEntry } from "../idmap.js";
import type { CgroupVersion } from "./cgroup.js";
import { nvidiaConfigLines } from "./nvidia.js";

export interface LxcConfigInput {
  /** liblxc container name (log paths) */
  name: string;
  /** the hostname (lxc.uts.name); defaults to name */
  hostname?: string;
  /** $LXD_DIR */
  lxdDir: string;
  /** $LXD_DIR/containers/<name>/rootfs (the symlinked volume rootfs) */
  rootfs: string;
  architecture: string;
  /** expanded config */
  config: Record<string, string>;
  /** empty for privileged containers */
  idmap: IdmapEntry[];
  /** which cgroup version serves a controller here (undefined = unavailable) */
  cgroup: (controller: string) => CgroupVersion | undefined;
  apparmor: boolean;
  /** path of the seccomp policy file, when liblxc supports seccomp here */
  seccompProfile?: string;
  hostMemoryBytes: number;
  devices: RunConfig[];
  /** nvidia.runtime=true: liblxc's nvidia hook (checked to exist by the driver). */
  nvidiaHook?: string;
}

export type ConfigLine = [string, string];

const PERSONALITY: Record<string, string> = { x86_64: "linux64", i686: "linux32", aarch64: "linux64", armv7l: "linux32", ppc64le: "linux64", s390x: "linux64", riscv64: "linux64" };

/** LXD's default container device allow list (cgroup devices controller). */
const DEFAULT_DEVICES = ["c *:* m", "b *:* m", "c 5:1 rwm", "c 5:0 rwm", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:229 rwm", "c 10:200 rwm"];

const OPTIONAL_MOUNTS = [
  "/dev/fuse dev/fuse none bind,create=file,optional 0 0",
  "/dev/net/tun dev/net/tun none bind,create=file,optional 0 0",
  "/proc/sys/fs/binfmt_misc proc/sys/fs/binfmt_misc none rbind,create=dir,optional 0 0",
  "/sys/fs/fuse/connections sys/fs/fuse/connections none rbind,create=dir,optional 0 0",
  "/sys/fs/pstore sys/fs/pstore none rbind,create=dir,optional 0 0",
  "/sys/kernel/debug sys/kernel/debug none rbind,create=dir,optional 0 0",
  "/sys/kernel/security sys/kernel/security none rbind,create=dir,optional 0 0",
  "/sys/kernel/tracing sys/kernel/tracing none rbind,create=dir,optional 0 0",
];

/** security.nesting: a spare proc and sysfs, so a nested container manager can mount its own (the visible ones are covered). */
const NESTING_MOUNTS = ["proc dev/.lxc/proc proc create=dir,optional 0 0", "sys dev/.lxc/sys sysfs create=dir,optional 0 0"];

export function logDir(lxdDir: string, name: string): string {
  return join(lxdDir, "logs", name);
}

/** cgroup config key for a controller file: lxc.cgroup.<v1file> or lxc.cgroup2.<v2file>. */
function cgroupLine(input: LxcConfigInput, controller: string, v1: string, v2: string, value: string): ConfigLine[] {
  const version = input.cgroup(controller);
  if (version === "v1") return [[`lxc.cgroup.${v1}`, value]];
  if (version === "v2") return [[`lxc.cgroup2.${v2}`, value]];
  return [];
}

/** limits.memory in bytes ("50%" is of host memory). */
export function memoryLimitBytes(value: string, hostMemoryBytes: number): number {
  if (value.endsWith("%")) return Math.floor((hostMemoryBytes * Number(value.slice(0, -1))) / 100);
  return parseByteSize(value);
}

/** limits.cpu → a cpuset: a count N pins to the first N CPUs, a set is used as given. */
export function cpusetFor(value: string): string {
  if (/^[0-9]+$/.test(value)) {
    const n = Number(value);
    return n <= 1 ? "0" : `0-${n - 1}`;
  }
  return value;
}

export function cgroupLimitLines(input: LxcConfigInput): ConfigLine[] {
  const c = input.config;
  const out: ConfigLine[] = [];
  if (c["limits.memory"]) {
    const bytes = String(memoryLimitBytes(c["limits.memory"], input.hostMemoryBytes));
    if (c["limits.memory.enforce"] === "soft") out.push(...cgroupLine(input, "memory", "memory.soft_limit_in_bytes", "memory.low", bytes));
    else out.push(...cgroupLine(input, "memory", "memory.limit_in_bytes", "memory.max", bytes));
    if (c["limits.memory.swap"] !== undefined && !isTrue(c["limits.memory.swap"])) {
      if (input.cgroup("memory") === "v2") out.push(["lxc.cgroup2.memory.swap.max", "0"]);
      else if (c["limits.memory.enforce"] !== "soft") out.push(["lxc.cgroup.memory.memsw.limit_in_bytes", bytes]);
    }
  }
  if (c["limits.cpu"]) out.push(...cgroupLine(input, "cpuset", "cpuset.cpus", "cpuset.cpus", cpusetFor(c["limits.cpu"])));
  if (c["limits.cpu.allowance"]) {
    const a = parseAllowance(c["limits.cpu.allowance"]);
    if ("percent" in a) {
      out.push(...cgroupLine(input, "cpu", "cpu.shares", "cpu.weight", input.cgroup("cpu") === "v2" ? String(Math.max(1, Math.round(a.percent))) : String(Math.max(2, Math.round((1024 * a.percent) / 100)))));
    } else if (input.cgroup("cpu") === "v2") {
      out.push(["lxc.cgroup2.cpu.max", `${a.quotaUs} ${a.periodUs}`]);
    } else if (input.cgroup("cpu") === "v1") {
      out.push(["lxc.cgroup.cpu.cfs_period_us", String(a.periodUs)], ["lxc.cgroup.cpu.cfs_quota_us", String(a.quotaUs)]);
    }
  }
  if (c["limits.processes"]) out.push(...cgroupLine(input, "pids", "pids.max", "pids.max", c["limits.processes"]));
  return out;
}

/** raw.lxc: "key = value" lines; comments and blanks skipped. Throws on a line without "=". */
export function parseRawLxc(text: string): ConfigLine[] {
  const out: ConfigLine[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq < 0) throw new Error(`Invalid raw.lxc line: ${line}`);
    out.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return out;
}

export function generateLxcConfig(input: LxcConfigInput): ConfigLine[] {
  const c = input.config;
  const logs = logDir(input.lxdDir, input.name);
  const out: ConfigLine[] = [
    ["lxc.log.file", join(logs, "lxc.log")],
    ["lxc.log.level", "warn"],
    ["lxc.console.buffer.size", "auto"],
    ["lxc.console.size", "auto"],
    ["lxc.console.logfile", join(logs, "console.log")],
    ["lxc.mount.auto", "proc:rw sys:rw cgroup:mixed"],
    ["lxc.autodev", "1"],
    ["lxc.pty.max", "1024"],
    ["lxc.tty.max", "0"],
    ["lxc.cap.drop", "sys_time sys_module sys_rawio mac_admin mac_override"],
  ];
  for (const m of OPTIONAL_MOUNTS) out.push(["lxc.mount.entry", m]);
  if (isTrue(c["security.nesting"])) for (const m of NESTING_MOUNTS) out.push(["lxc.mount.entry", m]);
  const personality = PERSONALITY[input.architecture];
  if (personality) out.push(["lxc.arch", personality]);
  out.push(["lxc.uts.name", input.hostname ?? input.name]);
  const devicesVersion = input.cgroup("devices");
  if (devicesVersion) {
    const prefix = devicesVersion === "v1" ? "lxc.cgroup.devices" : "lxc.cgroup2.devices";
    out.push([`${prefix}.deny`, "a"]);
    for (const d of DEFAULT_DEVICES) out.push([`${prefix}.allow`, d]);
  }
  if (input.apparmor) out.push(["lxc.apparmor.profile", "unconfined"]);
  if (input.seccompProfile) out.push(["lxc.seccomp.profile", input.seccompProfile]);
  for (const line of lxcIdmapLines(input.idmap)) out.push(["lxc.idmap", line]);
  out.push(...cgroupLimitLines(input));
  for (const [k, v] of Object.entries(c)) {
    if (k.startsWith("environment.")) out.push(["lxc.environment", `${k.slice("environment.".length)}=${v}`]);
    else if (k.startsWith("limits.kernel.")) out.push([`lxc.prlimit.${k.slice("limits.kernel.".length)}`, v]);
    else if (k.startsWith("linux.sysctl.")) out.push([`lxc.sysctl.${k.slice("linux.sysctl.".length)}`, v]);
  }
  if (input.nvidiaHook) out.push(...nvidiaConfigLines(c, input.nvidiaHook));
  let netIndex = 0;
  for (const dev of input.devices) {
    out.push(...(dev.lxc ?? []));
    for (const nic of dev.networkInterfaces ?? []) {
      for (const [k, v] of Object.entries(nic)) out.push([`lxc.net.${netIndex}.${k}`, v]);
      netIndex++;
    }
  }
  // LXD overrides NVIDIA_VISIBLE_DEVICES (after its "none") when devices name NVIDIA devices (MIG).
  const nvidiaDevices = input.devices.flatMap((d) => d.nvidiaDevices ?? []);
  if (nvidiaDevices.length > 0) out.push(["lxc.environment", `NVIDIA_VISIBLE_DEVICES=${nvidiaDevices.join(",")}`]);
  if (c["raw.lxc"]) out.push(...parseRawLxc(c["raw.lxc"]));
  out.push(["lxc.rootfs.path", `dir:${input.rootfs}`]);
  return out;
}

export function renderLxcConfig(lines: ConfigLine[]): string {
  for (const [k, v] of lines) if (/[\n\r]/.test(k) || /[\n\r]/.test(v)) throw new Error(`Invalid liblxc config value for ${k}`);
  return lines.map(([k, v]) => `${k} = ${v}`).join("\n") + "\n";
}
