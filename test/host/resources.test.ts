// GET /1.0/resources on this host, checked against the kernel's own files and against the
// reference LXD daemon (Debian's lxd, installed by scripts/setup.sh) started for this file.
import { existsSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";

let d: TestDaemon;
let reference: ReferenceLxd;
beforeAll(async () => {
  [d, reference] = await Promise.all([startDaemon(), startReferenceLxd()]);
}, 120_000);
afterAll(async () => {
  await Promise.all([d?.stop(), reference?.stop()]);
});

describe("resources", () => {
  it("answers LXD's shape from /proc and /sys", async () => {
    const r = await d.api("GET", "/1.0/resources");
    expect(r.status).toBe(200);
    const m = r.body.metadata;
    expect(Object.keys(m).sort()).toEqual(["cpu", "gpu", "memory", "network", "pci", "storage", "system", "usb"]);
    expect(m.cpu.total).toBe(cpus().length);
    expect(m.cpu.architecture).toBe("x86_64");
    expect(m.memory.total % 1024).toBe(0);
    const memTotal = Number(/MemTotal:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;
    expect(m.memory.total).toBeGreaterThanOrEqual(memTotal);
    expect(m.memory.used).toBeGreaterThan(0);
    expect(m.memory.used).toBeLessThan(m.memory.total);
    expect(Array.isArray(m.storage.disks)).toBe(true);
    for (const disk of m.storage.disks) expect(existsSync(`/sys/class/block/${disk.id}/device`)).toBe(true);
    expect(m.network.cards.flatMap((c: any) => c.ports.map((p: any) => p.id))).not.toContain("lo");
    expect(m.pci.total).toBe(m.pci.devices.length);
  });

  it("matches the reference LXD field by field (except live usage figures)", async () => {
    const ours = (await d.api("GET", "/1.0/resources")).body.metadata;
    const ref = (await reference.api("GET", "/1.0/resources")).body.metadata;
    const scrub = (x: any) => {
      const c = structuredClone(x);
      delete c.memory.used;
      for (const n of c.memory.nodes ?? []) delete n.used;
      return c;
    };
    expect(scrub(ours)).toEqual(scrub(ref));
  });

  it("lxc info --resources prints it", () => {
    const r = d.lxc("info", "--resources");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("CPU (x86_64):");
    expect(r.stdout).toMatch(/Memory:\n\s+Free: .*\n\s+Used: .*\n\s+Total: /);
  });
});
