// Cgroup facts for containers, read from /proc and the cgroup filesystems (v1, v2 or hybrid):
// which version serves a controller, a process's cgroup directory, usage counters, live limits.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type CgroupVersion = "v1" | "v2";

export interface CgroupLayout {
  /** controller → v1 mount point */
  v1: Map<string, string>;
  /** the cgroup2 mount point, if any */
  v2Mount?: string;
  /** controllers enabled on the cgroup2 hierarchy */
  v2: Set<string>;
}

export function parseCgroupLayout(mounts: string, v2Controllers: string): CgroupLayout {
  const layout: CgroupLayout = { v1: new Map(), v2: new Set() };
  for (const line of mounts.split("\n")) {
    const [, mnt, fstype, opts] = line.split(" ");
    if (fstype === "cgroup2" && !layout.v2Mount) layout.v2Mount = mnt;
    if (fstype === "cgroup") {
      for (const o of (opts ?? "").split(",")) {
        if (["rw", "ro", "relatime", "nosuid", "nodev", "noexec"].includes(o) || o.startsWith("name=")) continue;
        if (!layout.v1.has(o)) layout.v1.set(o, mnt);
      }
    }
  }
  for (const c of v2Controllers.trim().split(/\s+/)) if (c) layout.v2.add(c);
  // A v1 hierarchy owns its controller even if the unified one lists it.
  for (const c of layout.v1.keys()) layout.v2.delete(c);
  return layout;
}

let cached: CgroupLayout | undefined;
export function hostCgroupLayout(): CgroupLayout {
  if (cached) return cached;
  const mounts = readFileSync("/proc/mounts", "utf8");
  const probe = parseCgroupLayout(mounts, "");
  let controllers = "";
  if (probe.v2Mount) {
    try {
      controllers = readFileSync(join(probe.v2Mount, "cgroup.controllers"), "utf8");
    } catch {
      controllers = "";
    }
  }
  cached = parseCgroupLayout(mounts, controllers);
  return cached;
}

export function controllerVersion(layout: CgroupLayout, controller: string): CgroupVersion | undefined {
  if (layout.v1.has(controller)) return "v1";
  if (layout.v2.has(controller)) return "v2";
  return undefined;
}

/** The directory of `pid`'s cgroup serving `controller`. */
export function cgroupDir(layout: CgroupLayout, pid: number, controller: string, procCgroup?: string): string | undefined {
  let text: string;
  try {
    text = procCgroup ?? readFileSync(`/proc/${pid}/cgroup`, "utf8");
  } catch {
    return undefined;
  }
  const version = controllerVersion(layout, controller);
  for (const line of text.split("\n")) {
    const [id, ctrls, path] = line.split(":");
    if (path === undefined) continue;
    if (version === "v1" && ctrls.split(",").includes(controller)) return join(layout.v1.get(controller)!, path);
    if (version === "v2" && id === "0" && layout.v2Mount) return join(layout.v2Mount, path);
  }
  return undefined;
}

const readNumber = (file: string): number | undefined => {
  try {
    const v = readFileSync(file, "utf8").trim();
    if (v === "max") return undefined;
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
};

const readKeyed = (file: string, key: string): number | undefined => {
  try {
    const m = new RegExp(`^${key} (\\d+)$`, "m").exec(readFileSync(file, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
};

export interface CgroupUsage {
  memory: { usage: number; usage_peak: number; swap_usage: number; swap_usage_peak: number };
  cpuNs: number;
  pids?: number;
}

/** /proc/PID/cgroup, read once for all of one instance's controllers ("" when gone). */
export function procCgroup(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cgroup`, "utf8");
  } catch {
    return "";
  }
}

/** A process's cgroup directory per controller, each worked out once. */
export type CgroupDirs = (controller: string) => string | undefined;

/** As cgroupDir; "freezer" on a v2 host is the unified directory (cgroup.freeze, cgroup.events). */
export function cgroupDirs(layout: CgroupLayout, pid: number, text = procCgroup(pid)): CgroupDirs {
  const memo = new Map<string, string | undefined>();
  const unifiedFreezer = !controllerVersion(layout, "freezer") && layout.v2Mount ? { ...layout, v2: new Set([...layout.v2, "freezer"]) } : undefined;
  return (controller) => {
    if (!memo.has(controller)) memo.set(controller, cgroupDir(controller === "freezer" && unifiedFreezer ? unifiedFreezer : layout, pid, controller, text));
    return memo.get(controller);
  };
}

export function readUsage(layout: CgroupLayout, dirs: CgroupDirs): CgroupUsage {
  const usage: CgroupUsage = { memory: { usage: 0, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 }, cpuNs: 0 };
  const mem = dirs("memory");
  if (mem && controllerVersion(layout, "memory") === "v1") {
    const u = readNumber(join(mem, "memory.usage_in_bytes")) ?? 0;
    const sw = readNumber(join(mem, "memory.memsw.usage_in_bytes"));
    const swPeak = readNumber(join(mem, "memory.memsw.max_usage_in_bytes"));
    const peak = readNumber(join(mem, "memory.max_usage_in_bytes")) ?? 0;
    usage.memory = { usage: u, usage_peak: peak, swap_usage: sw !== undefined ? Math.max(0, sw - u) : 0, swap_usage_peak: swPeak !== undefined ? Math.max(0, swPeak - peak) : 0 };
  } else if (mem) {
    usage.memory = {
      usage: readNumber(join(mem, "memory.current")) ?? 0,
      usage_peak: readNumber(join(mem, "memory.peak")) ?? 0,
      swap_usage: readNumber(join(mem, "memory.swap.current")) ?? 0,
      swap_usage_peak: readNumber(join(mem, "memory.swap.peak")) ?? 0,
    };
  }
  if (controllerVersion(layout, "cpuacct") === "v1") {
    const d = dirs("cpuacct");
    usage.cpuNs = (d && readNumber(join(d, "cpuacct.usage"))) || 0;
  } else {
    const d = dirs("cpu");
    const usec = d ? readKeyed(join(d, "cpu.stat"), "usage_usec") : undefined;
    usage.cpuNs = (usec ?? 0) * 1000;
  }
  const p = dirs("pids");
  if (p) usage.pids = readNumber(join(p, "pids.current"));
  return usage;
}

/** Number of processes in `pid`'s cgroup tree (pids controller), else counted from cgroup.procs. */
export function processCount(dirs: CgroupDirs): number {
  const p = dirs("pids");
  const n = p ? readNumber(join(p, "pids.current")) : undefined;
  if (n !== undefined) return n;
  const d = dirs("memory") ?? dirs("cpu");
  try {
    return d ? readFileSync(join(d, "cgroup.procs"), "utf8").split("\n").filter(Boolean).length : 0;
  } catch {
    return 0;
  }
}

/** Write a limit into a running container's cgroup: `files` gives the file per version. */
export function writeLimit(layout: CgroupLayout, pid: number, controller: string, files: { v1: string; v2: string }, value: string): void {
  const version = controllerVersion(layout, controller);
  const dir = cgroupDir(layout, pid, controller);
  if (!version || !dir) throw new Error(`Cgroup controller "${controller}" is not available`);
  const file = join(dir, version === "v1" ? files.v1 : files.v2);
  if (!existsSync(file)) throw new Error(`Cgroup file ${file} not found`);
  writeFileSync(file, value);
}
