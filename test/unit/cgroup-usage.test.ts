import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseCgroupLayout, parseUsage, usageFiles } from "../../src/instances/lxc/cgroup.js";
import { native } from "../../src/os/native.js";

const V1 = parseCgroupLayout(
  ["cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0", "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0", "cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0"].join("\n"),
  "",
);
const V2 = parseCgroupLayout("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0", "cpu memory pids");
const dirsOf = (root: string) => (c: string) => `${root}/${c}/lxc.payload.c1`;

describe("cgroup usage files and their parsing", () => {
  it("v1: usage, peak, swap above memory, cpuacct nanoseconds, pids", () => {
    const files = usageFiles(V1, dirsOf("/cg"));
    expect(files).toEqual([
      "/cg/memory/lxc.payload.c1/memory.usage_in_bytes",
      "/cg/memory/lxc.payload.c1/memory.max_usage_in_bytes",
      "/cg/memory/lxc.payload.c1/memory.memsw.usage_in_bytes",
      "/cg/memory/lxc.payload.c1/memory.memsw.max_usage_in_bytes",
      "/cg/cpuacct/lxc.payload.c1/cpuacct.usage",
      "/cg/pids/lxc.payload.c1/pids.current",
    ]);
    expect(parseUsage(V1, ["4096\n", "8192\n", "5096\n", "8192\n", "123456789\n", "3\n"])).toEqual({
      memory: { usage: 4096, usage_peak: 8192, swap_usage: 1000, swap_usage_peak: 0 },
      cpuNs: 123456789,
      pids: 3,
    });
  });

  it("v2: no peaks (LXD 5.0.2 reports none there), cpu.stat microseconds, pids.current", () => {
    const files = usageFiles(V2, dirsOf("/cg"));
    expect(files[1]).toBeUndefined();
    expect(files[3]).toBeUndefined();
    expect(files[4]).toBe("/cg/cpu/lxc.payload.c1/cpu.stat");
    expect(parseUsage(V2, ["100\n", undefined, "0\n", undefined, "usage_usec 7\nuser_usec 5\n", "max\n"])).toEqual({
      memory: { usage: 100, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 },
      cpuNs: 7000,
      pids: undefined,
    });
  });

  it("unreadable files count as absent", () => {
    expect(parseUsage(V1, [null, null, null, null, null, null])).toEqual({ memory: { usage: 0, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 }, cpuNs: 0, pids: undefined });
  });
});

describe("native readSmallFiles", () => {
  const dir = mkdtempSync(join(tmpdir(), "readfiles-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads many files in order on its threads; null for missing, empty-named or directories", async () => {
    const paths: string[] = [];
    for (let i = 0; i < 300; i++) {
      const p = join(dir, `f${i}`);
      writeFileSync(p, `value ${i}\n`);
      paths.push(p);
    }
    const texts = await native.readSmallFiles([...paths, join(dir, "missing"), "", dir]);
    expect(texts.slice(0, 300)).toEqual(paths.map((_, i) => `value ${i}\n`));
    expect(texts.slice(300)).toEqual([null, null, null]);
  });

  it("gives at most 64 KiB of a file", async () => {
    const p = join(dir, "big");
    writeFileSync(p, "x".repeat(100_000));
    expect((await native.readSmallFiles([p]))[0]).toHaveLength(65536);
  });

  it("refuses what is not an array of paths", () => {
    expect(() => native.readSmallFiles("x" as unknown as string[])).toThrow();
  });
});
