// LXD's metrics text format and the parsers of cgroup/proc files (pure parts of src/metrics).
import { describe, expect, it } from "vitest";
import { memoryStats, netDev } from "../../src/metrics/gather.js";
import { formatValue, MetricSet } from "../../src/metrics/metric-set.js";

describe("metrics text", () => {
  it("formats values as Go's FormatFloat(v, 'g', -1, 64)", () => {
    expect(formatValue(0)).toBe("0");
    expect(formatValue(123456)).toBe("123456");
    expect(formatValue(1048576)).toBe("1.048576e+06");
    expect(formatValue(104857600)).toBe("1.048576e+08");
    expect(formatValue(1000000)).toBe("1e+06");
    expect(formatValue(0.5)).toBe("0.5");
    expect(formatValue(0.0001)).toBe("0.0001");
    expect(formatValue(0.00001)).toBe("1e-05");
    expect(formatValue(12.34)).toBe("12.34");
  });
  it("prints families in LXD's order with HELP/TYPE, sorted labels and # EOF", () => {
    const s = new MetricSet({ project: "default", name: "c1", type: "container" });
    s.add("lxd_procs_total", 3);
    s.add("lxd_cpu_seconds_total", 1.5, { mode: "user", cpu: "0" });
    s.add("lxd_memory_MemTotal_bytes", 1073741824);
    expect(s.toString()).toBe(
      [
        "# HELP lxd_cpu_seconds_total The total number of CPU time used in seconds.",
        "# TYPE lxd_cpu_seconds_total counter",
        'lxd_cpu_seconds_total{cpu="0",mode="user",name="c1",project="default",type="container"} 1.5',
        "# HELP lxd_memory_MemTotal_bytes The amount of used memory.",
        "# TYPE lxd_memory_MemTotal_bytes gauge",
        'lxd_memory_MemTotal_bytes{name="c1",project="default",type="container"} 1.073741824e+09',
        "# HELP lxd_procs_total The number of running processes.",
        "# TYPE lxd_procs_total gauge",
        'lxd_procs_total{name="c1",project="default",type="container"} 3',
        "# EOF",
        "",
      ].join("\n"),
    );
    expect(new MetricSet().toString()).toBe("# EOF\n");
  });
  it("parses memory.stat (v1 totals and v2 names) and /proc/PID/net/dev", () => {
    const v1 = memoryStats("cache 1\ntotal_cache 100\ntotal_rss 50\ntotal_active_anon 10\ntotal_active_file 20\ntotal_inactive_anon 1\ntotal_inactive_file 2\n");
    expect(v1.get("lxd_memory_Cached_bytes")).toBe(100);
    expect(v1.get("lxd_memory_RSS_bytes")).toBe(50);
    expect(v1.get("lxd_memory_Active_bytes")).toBe(30);
    expect(v1.get("lxd_memory_Inactive_bytes")).toBe(3);
    const v2 = memoryStats("anon 5\nfile 7\nactive_anon 1\nfile_mapped 4\n");
    expect(v2.get("lxd_memory_Cached_bytes")).toBe(7);
    expect(v2.get("lxd_memory_Mapped_bytes")).toBe(4);
    const dev = netDev("Inter-|   Receive\n face |bytes\n    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  eth0: 5 1 3 4 0 0 0 0 6 7 8 9 0 0 0 0\n");
    expect(dev.get("lo")).toEqual([100, 2, 0, 0, 0, 0, 0, 0, 100, 2, 0, 0, 0, 0, 0, 0]);
    expect(dev.get("eth0")?.[2]).toBe(3);
  });
});
