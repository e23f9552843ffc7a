// Prometheus/OpenMetrics text as LXD 5.0.2 writes it (lxd/metrics): families in LXD's fixed
// order, each with its HELP and TYPE lines, samples with sorted labels, then "# EOF". Pure.

/** [name, help] in LXD's MetricType order (the order families are printed in). */
export const METRICS = [
  ["lxd_cpu_seconds_total", "The total number of CPU time used in seconds."],
  ["lxd_disk_read_bytes_total", "The total number of bytes read."],
  ["lxd_disk_reads_completed_total", "The total number of completed reads."],
  ["lxd_disk_written_bytes_total", "The total number of bytes written."],
  ["lxd_disk_writes_completed_total", "The total number of completed writes."],
  ["lxd_filesystem_avail_bytes", "The number of available space in bytes."],
  ["lxd_filesystem_free_bytes", "The number of free space in bytes."],
  ["lxd_filesystem_size_bytes", "The size of the filesystem in bytes."],
  ["lxd_memory_Active_anon_bytes", "The amount of anonymous memory on active LRU list."],
  ["lxd_memory_Active_file_bytes", "The amount of file-backed memory on active LRU list."],
  ["lxd_memory_Active_bytes", "The amount of memory on active LRU list."],
  ["lxd_memory_Cached_bytes", "The amount of cached memory."],
  ["lxd_memory_Dirty_bytes", "The amount of memory waiting to get written back to the disk."],
  ["lxd_memory_HugepagesFree_bytes", "The amount of free memory for hugetlb."],
  ["lxd_memory_HugepagesTotal_bytes", "The amount of used memory for hugetlb."],
  ["lxd_memory_Inactive_anon_bytes", "The amount of file-backed memory on inactive LRU list."],
  ["lxd_memory_Inactive_file_bytes", "The amount of file-backed memory on inactive LRU list."],
  ["lxd_memory_Inactive_bytes", "The amount of memory on inactive LRU list."],
  ["lxd_memory_Mapped_bytes", "The amount of mapped memory."],
  ["lxd_memory_MemAvailable_bytes", "The amount of available memory."],
  ["lxd_memory_MemFree_bytes", "The amount of free memory."],
  ["lxd_memory_MemTotal_bytes", "The amount of used memory."],
  ["lxd_memory_RSS_bytes", "The amount of anonymous and swap cache memory."],
  ["lxd_memory_Shmem_bytes", "The amount of cached filesystem data that is swap-backed."],
  ["lxd_memory_Swap_bytes", "The amount of used swap memory."],
  ["lxd_memory_Unevictable_bytes", "The amount of unevictable memory."],
  ["lxd_memory_Writeback_bytes", "The amount of memory queued for syncing to disk."],
  ["lxd_network_receive_bytes_total", "The amount of received bytes on a given interface."],
  ["lxd_network_receive_drop_total", "The amount of received dropped bytes on a given interface."],
  ["lxd_network_receive_errs_total", "The amount of received errors on a given interface."],
  ["lxd_network_receive_packets_total", "The amount of received packets on a given interface."],
  ["lxd_network_transmit_bytes_total", "The amount of transmitted bytes on a given interface."],
  ["lxd_network_transmit_drop_total", "The amount of transmitted dropped bytes on a given interface."],
  ["lxd_network_transmit_errs_total", "The amount of transmitted errors on a given interface."],
  ["lxd_network_transmit_packets_total", "The amount of transmitted packets on a given interface."],
  ["lxd_procs_total", "The number of running processes."],
] as const;

export type MetricName = (typeof METRICS)[number][0];

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export class MetricSet {
  readonly samples = new Map<MetricName, Sample[]>();

  /** `labels` are added to every sample (LXD: project, name, type). */
  constructor(private readonly labels: Record<string, string> = {}) {}

  add(name: MetricName, value: number, labels: Record<string, string> = {}): void {
    const list = this.samples.get(name) ?? [];
    list.push({ labels: { ...labels, ...this.labels }, value });
    this.samples.set(name, list);
  }

  merge(other: MetricSet | undefined): void {
    if (!other) return;
    for (const [k, v] of other.samples) this.samples.set(k, [...(this.samples.get(k) ?? []), ...v]);
  }

  toString(): string {
    let out = "";
    for (const [name, help] of METRICS) {
      const list = this.samples.get(name);
      if (!list) continue;
      const type = name === "lxd_procs_total" ? "gauge" : name.endsWith("_total") ? "counter" : "gauge";
      out += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
      for (const s of list) {
        const labels = Object.keys(s.labels)
          .sort()
          .map((k) => `${k}="${s.labels[k]}"`)
          .join(",");
        out += labels ? `${name}{${labels}} ${formatValue(s.value)}\n` : `${name} ${formatValue(s.value)}\n`;
      }
    }
    return out + "# EOF\n";
  }
}

/**
 * Go's strconv.FormatFloat(v, 'g', -1, 64): the shortest digits, in %e form when the decimal
 * exponent is below -4 or at least 6 (so 104857600 is "1.048576e+08", as LXD prints it).
 */
export function formatValue(v: number): string {
  if (v === 0) return "0";
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
  const [mantissa, e] = v.toExponential().split("e");
  const exp = Number(e);
  if (exp < -4 || exp >= 6) return `${mantissa}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  return String(v);
}
