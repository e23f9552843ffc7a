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

const readText = (file: string): string | null => {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return null;
  }
};

const parseNumber = (text: string | null | undefined): number | undefined => {
  const v = text?.trim();
  if (v === undefined || v === "max") return undefined;
  const n = Number(v);
  return v !== "" && Number.isFinite(n) ? n : undefined;
};

const readNumber = (file: string): number | undefined => parseNumber(readText(file));

const parseKeyed = (text: string | null | undefined, key: string): number | undefined => {
  const m = text ? new RegExp(`^${key} (\\d+)$`, "m").exec(text) : null;
  return m ? Number(m[1]) : undefined;
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

/**
 * The files a usage reading needs, in the order `parseUsage` takes their texts. Reading them is
 * left to the caller (the driver reads them for a whole list at once, off the event loop).
 */
export function usageFiles(layout: CgroupLayout, dirs: CgroupDirs): (string | undefined)[] {
  const mem = dirs("memory");
  const memory = !mem
    ? [undefined, undefined, undefined, undefined]
    : controllerVersion(layout, "memory") === "v1"
      ? ["memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.memsw.usage_in_bytes", "memory.memsw.max_usage_in_bytes"].map((f) => join(mem, f))
      : // LXD 5.0.2 reports no peaks on cgroup v2 (its GetMemoryMaxUsage has no v2 file): 0, as it does.
        [join(mem, "memory.current"), undefined, join(mem, "memory.swap.current"), undefined];
  const cpuV1 = controllerVersion(layout, "cpuacct") === "v1";
  const cpuDir = cpuV1 ? dirs("cpuacct") : dirs("cpu");
  const pids = dirs("pids");
  return [...memory, cpuDir && join(cpuDir, cpuV1 ? "cpuacct.usage" : "cpu.stat"), pids && join(pids, "pids.current")];
}

/** Usage counters from the texts of `usageFiles` (null or undefined: unreadable or not there). */
export function parseUsage(layout: CgroupLayout, texts: (string | null | undefined)[]): CgroupUsage {
  const [usage, peak, swap, swapPeak, cpu, pids] = texts;
  let memory: CgroupUsage["memory"];
  if (controllerVersion(layout, "memory") === "v1") {
    const u = parseNumber(usage) ?? 0;
    const p = parseNumber(peak) ?? 0;
    const sw = parseNumber(swap);
    const swP = parseNumber(swapPeak);
    memory = { usage: u, usage_peak: p, swap_usage: sw !== undefined ? Math.max(0, sw - u) : 0, swap_usage_peak: swP !== undefined ? Math.max(0, swP - p) : 0 };
  } else {
    memory = { usage: parseNumber(usage) ?? 0, usage_peak: parseNumber(peak) ?? 0, swap_usage: parseNumber(swap) ?? 0, swap_usage_peak: parseNumber(swapPeak) ?? 0 };
  }
  const cpuNs = controllerVersion(layout, "cpuacct") === "v1" ? parseNumber(cpu) || 0 : (parseKeyed(cpu, "usage_usec") ?? 0) * 1000;
  return { memory, cpuNs, pids: parseNumber(pids) };
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
