// CPU topology from /sys/devices/system/cpu and names from /proc/cpuinfo.
import { parseCacheSize, parseCpuList, parseCpuinfo } from "./parse.js";
import type { SysFs } from "./sysfs.js";

export interface CpuCache {
  level: number;
  type: string;
  size: number;
}
export interface CpuThread {
  id: number;
  numa_node: number;
  thread: number;
  online: boolean;
  isolated: boolean;
}
export interface CpuCore {
  core: number;
  die: number;
  threads: CpuThread[];
  frequency?: number;
}
export interface CpuSocket {
  name: string;
  vendor: string;
  socket: number;
  /** Left out of the answer when empty (omitempty in LXD). */
  cache?: CpuCache[];
  cores: CpuCore[];
  frequency?: number;
  frequency_minimum?: number;
  frequency_turbo?: number;
}
export interface Cpu {
  architecture: string;
  sockets: CpuSocket[];
  total: number;
}

const CPU_DIR = "/sys/devices/system/cpu";

function numaNodeOf(fs: SysFs, cpuDir: string): number {
  const node = fs.list(cpuDir).find((e) => /^node\d+$/.test(e));
  return node ? Number(node.slice(4)) : 0;
}

function cacheOf(fs: SysFs, cpuDir: string): CpuCache[] {
  const out: CpuCache[] = [];
  for (const idx of fs.list(`${cpuDir}/cache`).filter((e) => /^index\d+$/.test(e))) {
    const dir = `${cpuDir}/cache/${idx}`;
    const level = fs.int(`${dir}/level`);
    const size = fs.trim(`${dir}/size`);
    if (level === undefined || size === undefined) continue;
    out.push({ level, type: fs.trim(`${dir}/type`) ?? "", size: parseCacheSize(size) });
  }
  return out;
}

/** `cpuinfo`: the parsed /proc/cpuinfo, which callers may keep (model names never change). */
export function readCpu(fs: SysFs, architecture: string, cpuinfo?: Record<string, string>[]): Cpu {
  const info = cpuinfo ?? parseCpuinfo(fs.read("/proc/cpuinfo") ?? "");
  const byProcessor = new Map(info.map((r) => [Number(r.processor), r]));
  const isolated = new Set(parseCpuList(fs.read(`${CPU_DIR}/isolated`) ?? ""));
  const sockets = new Map<number, CpuSocket>();
  const coreMaps = new Map<number, Map<string, CpuCore>>();
  const ids = fs
    .list(CPU_DIR)
    .filter((e) => /^cpu\d+$/.test(e))
    .map((e) => Number(e.slice(3)))
    .sort((a, b) => a - b);
  let total = 0;
  for (const id of ids) {
    const dir = `${CPU_DIR}/cpu${id}`;
    if (!fs.exists(`${dir}/topology`)) continue; // offline CPUs keep no topology
    total++;
    const socketId = fs.int(`${dir}/topology/physical_package_id`) ?? 0;
    const coreId = fs.int(`${dir}/topology/core_id`) ?? 0;
    const dieId = fs.int(`${dir}/topology/die_id`) ?? 0;
    let socket = sockets.get(socketId);
    if (!socket) {
      const rec = byProcessor.get(id) ?? {};
      socket = { name: rec["model name"] ?? rec["cpu model"] ?? rec["Processor"] ?? "", vendor: rec.vendor_id ?? "", socket: socketId, cache: cacheOf(fs, dir), cores: [] };
      const min = fs.int(`${dir}/cpufreq/cpuinfo_min_freq`);
      const max = fs.int(`${dir}/cpufreq/cpuinfo_max_freq`);
      if (min) socket.frequency_minimum = Math.floor(min / 1000);
      if (max) socket.frequency_turbo = Math.floor(max / 1000);
      sockets.set(socketId, socket);
      coreMaps.set(socketId, new Map());
    }
    const cores = coreMaps.get(socketId)!;
    const key = `${dieId}/${coreId}`;
    let core = cores.get(key);
    if (!core) {
      core = { core: coreId, die: dieId, threads: [] };
      const cur = fs.int(`${dir}/cpufreq/scaling_cur_freq`);
      if (cur) core.frequency = Math.floor(cur / 1000);
      cores.set(key, core);
      socket.cores.push(core);
    }
    const online = fs.trim(`${dir}/online`);
    core.threads.push({ id, numa_node: numaNodeOf(fs, dir), thread: core.threads.length, online: online === undefined || online === "1", isolated: isolated.has(id) });
  }
  const list = [...sockets.values()].sort((a, b) => a.socket - b.socket);
  for (const s of list) {
    s.cores.sort((a, b) => a.die - b.die || a.core - b.core);
    const freqs = s.cores.map((c) => c.frequency ?? 0).filter((f) => f > 0);
    if (freqs.length) s.frequency = Math.floor(freqs.reduce((a, b) => a + b, 0) / freqs.length);
  }
  return { architecture, sockets: list, total };
}
