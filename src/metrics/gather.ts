// Instance metrics as LXD 5.0.2's lxc driver gathers them (Metrics in driver_lxc.go), read
// straight from cgroup files and /proc: memory.stat, memory usage and limit, swap, CPU time,
// block I/O, the container's network interfaces (/proc/PID/net/dev is its namespace's), disk
// device filesystems and the process count. Host-wide files (/proc/partitions, /proc/mounts,
// /proc/meminfo) are read once per gathering, whatever the number of instances; nothing is spawned.
// `metricsFiles` names every file one instance's figures need, so that a gathering can read all
// instances' files at once off the event loop and hand their texts to `instanceMetrics`.
import { readFileSync, realpathSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { cgroupDir, controllerVersion, type CgroupLayout } from "../instances/lxc/cgroup.js";
import { MetricSet } from "./metric-set.js";

export interface MetricsSource {
  project: string;
  name: string;
  pid: number;
  /** Expanded devices (disk devices give filesystem metrics). */
  devices: Record<string, Record<string, string>>;
  /** Host path of the instance volume (its root disk), for the root filesystem's figures. */
  volumePath: string;
}

/** What one gathering reads once for all instances. */
export interface HostView {
  partitions: Map<string, string>;
  /** mount point → [source, fstype] */
  mounts: Map<string, [string, string]>;
  memTotal: number;
}

/** A file's text, or undefined when it cannot be read. */
export type FileReader = (path: string) => string | undefined;

const read: FileReader = (f) => {
  try {
    return readFileSync(f, "utf8");
  } catch {
    return undefined;
  }
};

const num = (s: string | undefined): number | undefined => {
  if (s === undefined) return undefined;
  const v = Number(s.trim());
  return Number.isFinite(v) ? v : undefined;
};

export function hostView(): HostView {
  const partitions = new Map<string, string>();
  for (const line of (read("/proc/partitions") ?? "").split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[0] === "major") continue;
    partitions.set(`${f[0]}:${f[1]}`, f[3]);
  }
  const mounts = new Map<string, [string, string]>();
  for (const line of (read("/proc/mounts") ?? "").split("\n")) {
    const f = line.split(" ");
    if (f.length >= 3) mounts.set(f[1].replace(/\\040/g, " "), [f[0], f[2]]);
  }
  const memTotal = (Number(/^MemTotal:\s+(\d+)/m.exec(read("/proc/meminfo") ?? "")?.[1] ?? 0) || 0) * 1024;
  return { partitions, mounts, memTotal };
}

/** The container's own cgroup (lxc.payload.NAME), not a sub-group its init may sit in. */
function containerCgroup(layout: CgroupLayout, pid: number, controller: string, procCgroup: string): string | undefined {
  const dir = cgroupDir(layout, pid, controller, procCgroup);
  if (!dir) return undefined;
  const m = /^(.*?\/lxc\.payload\.[^/]+)/.exec(dir);
  return m ? m[1] : dir;
}

/** Where an instance's figures are read from. */
interface MetricsPaths {
  memory?: { stat: string; usage: string; limit: string; swap: string };
  cpu?: string;
  blkio: string[];
  io?: string;
  netDev: string;
  pids?: string;
}

function metricsPaths(layout: CgroupLayout, pid: number, procCgroup: string): MetricsPaths {
  const v1 = (c: string) => controllerVersion(layout, c) === "v1";
  const dir = (c: string) => containerCgroup(layout, pid, c, procCgroup);
  const mem = dir("memory");
  const memory = mem
    ? {
        stat: join(mem, "memory.stat"),
        usage: join(mem, v1("memory") ? "memory.usage_in_bytes" : "memory.current"),
        limit: join(mem, v1("memory") ? "memory.limit_in_bytes" : "memory.max"),
        swap: join(mem, v1("memory") ? "memory.memsw.usage_in_bytes" : "memory.swap.current"),
      }
    : undefined;
  let cpu: string | undefined;
  if (v1("cpuacct")) cpu = dir("cpuacct") && join(dir("cpuacct")!, "cpuacct.usage_all");
  else if (controllerVersion(layout, "cpu") === "v2") cpu = dir("cpu") && join(dir("cpu")!, "cpu.stat");
  const blk = v1("blkio") ? dir("blkio") : undefined;
  const blkio = blk ? ["blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced_recursive"].map((f) => join(blk, f)) : [];
  const io = !v1("blkio") && controllerVersion(layout, "io") === "v2" ? dir("io") && join(dir("io")!, "io.stat") : undefined;
  const pids = dir("pids");
  return { memory, cpu, blkio, io, netDev: `/proc/${pid}/net/dev`, pids: pids && join(pids, "pids.current") };
}

/** Every file `instanceMetrics` reads for the instance whose init is `pid` (`procCgroup`: its /proc/PID/cgroup). */
export function metricsFiles(layout: CgroupLayout, pid: number, procCgroup: string): string[] {
  const p = metricsPaths(layout, pid, procCgroup);
  const files = [...(p.memory ? Object.values(p.memory) : []), ...p.blkio, p.netDev];
  for (const f of [p.cpu, p.io, p.pids]) if (f) files.push(f);
  return files;
}

const MEMORY_KEYS: Record<string, "lxd_memory_Active_anon_bytes" | "lxd_memory_Active_file_bytes" | "lxd_memory_Inactive_anon_bytes" | "lxd_memory_Inactive_file_bytes" | "lxd_memory_Unevictable_bytes" | "lxd_memory_Writeback_bytes" | "lxd_memory_Dirty_bytes" | "lxd_memory_Mapped_bytes" | "lxd_memory_RSS_bytes" | "lxd_memory_Shmem_bytes" | "lxd_memory_Cached_bytes"> = {
  total_active_anon: "lxd_memory_Active_anon_bytes",
  active_anon: "lxd_memory_Active_anon_bytes",
  total_active_file: "lxd_memory_Active_file_bytes",
  active_file: "lxd_memory_Active_file_bytes",
  total_inactive_anon: "lxd_memory_Inactive_anon_bytes",
  inactive_anon: "lxd_memory_Inactive_anon_bytes",
  total_inactive_file: "lxd_memory_Inactive_file_bytes",
  inactive_file: "lxd_memory_Inactive_file_bytes",
  total_unevictable: "lxd_memory_Unevictable_bytes",
  unevictable: "lxd_memory_Unevictable_bytes",
  total_writeback: "lxd_memory_Writeback_bytes",
  file_writeback: "lxd_memory_Writeback_bytes",
  total_dirty: "lxd_memory_Dirty_bytes",
  file_dirty: "lxd_memory_Dirty_bytes",
  total_mapped_file: "lxd_memory_Mapped_bytes",
  file_mapped: "lxd_memory_Mapped_bytes",
  total_rss: "lxd_memory_RSS_bytes",
  total_shmem: "lxd_memory_Shmem_bytes",
  shmem: "lxd_memory_Shmem_bytes",
  total_cache: "lxd_memory_Cached_bytes",
  file: "lxd_memory_Cached_bytes",
};

/** Parse memory.stat into LXD's memory families (plus the computed Active/Inactive totals). */
export function memoryStats(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [k, v] = line.split(" ");
    const name = MEMORY_KEYS[k];
    if (name && v !== undefined) out.set(name, Number(v));
  }
  out.set("lxd_memory_Active_bytes", (out.get("lxd_memory_Active_anon_bytes") ?? 0) + (out.get("lxd_memory_Active_file_bytes") ?? 0));
  out.set("lxd_memory_Inactive_bytes", (out.get("lxd_memory_Inactive_anon_bytes") ?? 0) + (out.get("lxd_memory_Inactive_file_bytes") ?? 0));
  return out;
}

/** /proc/PID/net/dev → interface counters. */
export function netDev(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const line of text.split("\n").slice(2)) {
    const idx = line.indexOf(":");
    if (idx < 0) continue;
    out.set(line.slice(0, idx).trim(), line.slice(idx + 1).trim().split(/\s+/).map(Number));
  }
  return out;
}

const FS_TYPES: Record<number, string> = { 0x9123683e: "btrfs", 0x01021994: "tmpfs", 0xef53: "ext4", 0x58465342: "xfs", 0x6969: "nfs", 0x2fc12fc1: "zfs" };

/**
 * One instance's figures. `readFile` gives the texts of `metricsFiles` (read at once for many
 * instances) and `procCgroup` its /proc/PID/cgroup; by default both are read here.
 */
export function instanceMetrics(layout: CgroupLayout, host: HostView, src: MetricsSource, readFile: FileReader = read, procCgroup = read(`/proc/${src.pid}/cgroup`) ?? ""): MetricSet {
  const out = new MetricSet({ project: src.project, name: src.name, type: "container" });
  const v1 = (c: string) => controllerVersion(layout, c) === "v1";
  const paths = metricsPaths(layout, src.pid, procCgroup);

  // Memory
  const mem = paths.memory;
  let cached = 0;
  if (mem) {
    const stats = memoryStats(readFile(mem.stat) ?? "");
    cached = stats.get("lxd_memory_Cached_bytes") ?? 0;
    for (const [k, v] of stats) out.add(k as Parameters<MetricSet["add"]>[0], v);
    const usage = num(readFile(mem.usage)) ?? 0;
    const limitRaw = readFile(mem.limit)?.trim();
    const limit = limitRaw === undefined || limitRaw === "max" ? host.memTotal : Math.min(Number(limitRaw), host.memTotal);
    if (limit > 0) {
      out.add("lxd_memory_MemTotal_bytes", limit);
      out.add("lxd_memory_MemAvailable_bytes", limit - usage + cached);
      out.add("lxd_memory_MemFree_bytes", limit - usage);
    }
    const swap = num(readFile(mem.swap));
    if (swap !== undefined) out.add("lxd_memory_Swap_bytes", v1("memory") ? Math.max(0, swap - usage) : swap);
  }

  // CPU (v1: per CPU from cpuacct.usage_all; v2: cpu.stat, reported as CPU 0 as LXD does)
  if (v1("cpuacct")) {
    for (const line of (paths.cpu ? (readFile(paths.cpu) ?? "") : "").split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length < 3 || f[0] === "cpu") continue;
      out.add("lxd_cpu_seconds_total", Number(f[2]) / 1e9, { mode: "system", cpu: f[0] });
      out.add("lxd_cpu_seconds_total", Number(f[1]) / 1e9, { mode: "user", cpu: f[0] });
    }
  } else if (controllerVersion(layout, "cpu") === "v2") {
    const stat = paths.cpu ? (readFile(paths.cpu) ?? "") : "";
    const field = (k: string) => Number(new RegExp(`^${k} (\\d+)`, "m").exec(stat)?.[1] ?? 0);
    out.add("lxd_cpu_seconds_total", (field("system_usec") * 1000) / 1e9, { mode: "system", cpu: "0" });
    out.add("lxd_cpu_seconds_total", (field("user_usec") * 1000) / 1e9, { mode: "user", cpu: "0" });
  }

  // Block I/O
  const io = new Map<string, { rb: number; wb: number; rc: number; wc: number }>();
  const entry = (dev: string) => {
    let e = io.get(dev);
    if (!e) io.set(dev, (e = { rb: 0, wb: 0, rc: 0, wc: 0 }));
    return e;
  };
  if (v1("blkio")) {
    for (const [at, kind] of [[0, "bytes"], [1, "ops"]] as const) {
      const file = paths.blkio[at];
      for (const line of (file ? (readFile(file) ?? "") : "").split("\n")) {
        const f = line.trim().split(/\s+/);
        if (f.length !== 3) continue;
        const dev = host.partitions.get(f[0]);
        if (dev === undefined) continue;
        if (f[1] === "Read") entry(dev)[kind === "bytes" ? "rb" : "rc"] = Number(f[2]);
        if (f[1] === "Write") entry(dev)[kind === "bytes" ? "wb" : "wc"] = Number(f[2]);
      }
    }
  } else if (controllerVersion(layout, "io") === "v2") {
    for (const line of (paths.io ? (readFile(paths.io) ?? "") : "").split("\n")) {
      const [devId, ...stats] = line.trim().split(" ");
      const dev = host.partitions.get(devId);
      if (dev === undefined) continue;
      const e = entry(dev);
      for (const s of stats) {
        const [k, v] = s.split("=");
        if (k === "rbytes") e.rb = Number(v);
        if (k === "wbytes") e.wb = Number(v);
        if (k === "rios") e.rc = Number(v);
        if (k === "wios") e.wc = Number(v);
      }
    }
  }
  for (const [dev, e] of io) {
    out.add("lxd_disk_read_bytes_total", e.rb, { device: dev });
    out.add("lxd_disk_reads_completed_total", e.rc, { device: dev });
    out.add("lxd_disk_written_bytes_total", e.wb, { device: dev });
    out.add("lxd_disk_writes_completed_total", e.wc, { device: dev });
  }

  // Filesystems of disk devices
  for (const dev of Object.values(src.devices)) {
    if (dev.type !== "disk" || !dev.path) continue;
    let path: string;
    let device = dev.source ?? "";
    if (dev.pool) {
      if (dev.source) continue; // custom volumes: their mount path belongs to the storage feature
      path = src.volumePath;
    } else {
      path = dev.source ?? "";
    }
    try {
      path = realpathSync(path);
      const st = statfsSync(path);
      const m = host.mounts.get(path);
      if (m) device = m[0];
      const labels = { device, mountpoint: dev.path, fstype: FS_TYPES[st.type] ?? `0x${st.type.toString(16)}` };
      out.add("lxd_filesystem_avail_bytes", st.bavail * st.bsize, labels);
      out.add("lxd_filesystem_free_bytes", st.bfree * st.bsize, labels);
      out.add("lxd_filesystem_size_bytes", st.blocks * st.bsize, labels);
    } catch {
      /* not there (any more) */
    }
  }

  // Network interfaces of the container's namespace
  for (const [ifname, c] of netDev(readFile(paths.netDev) ?? "")) {
    const labels = { device: ifname };
    out.add("lxd_network_receive_bytes_total", c[0], labels);
    out.add("lxd_network_receive_packets_total", c[1], labels);
    out.add("lxd_network_transmit_bytes_total", c[8], labels);
    out.add("lxd_network_transmit_packets_total", c[9], labels);
    out.add("lxd_network_receive_errs_total", c[2], labels);
    out.add("lxd_network_transmit_errs_total", c[10], labels);
    out.add("lxd_network_receive_drop_total", c[3], labels);
    out.add("lxd_network_transmit_drop_total", c[11], labels);
  }

  // Processes
  const count = paths.pids ? num(readFile(paths.pids)) : undefined;
  if (count !== undefined) out.add("lxd_procs_total", count);
  return out;
}
