// `npm run bench` end to end, with small numbers: it starts its own daemon, or measures a given socket.
import { spawn, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, startDaemon, type TestDaemon } from "../helpers/daemon.js";

const BENCH = join(ROOT, "dist/bench/run.js");
let d: TestDaemon;
beforeAll(async () => {
  d = await startDaemon();
});
afterAll(async () => {
  await d?.stop();
});

const bench = (...args: string[]) => spawnSync(process.execPath, [BENCH, "--requests", "100", "--duration", "1", "--connections", "4", ...args], { encoding: "utf8", timeout: 110_000 });
const benchDirs = () => readdirSync("/tmp").filter((f) => f.startsWith("nodelxd-bench-")).sort();

describe("bench", () => {
  it("measures its own daemon and compares with another socket (JSON)", () => {
    const r = bench("--json", "--only", "get", "--compare", d.socket);
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout);
    for (const f of [out.nodelxd, out.compare]) {
      expect(f.p50_us).toBeGreaterThan(0);
      expect(f.p99_us).toBeGreaterThanOrEqual(f.p50_us);
      expect(f.requests_per_second).toBeGreaterThan(0);
    }
    expect(out.ratios.requests_per_second).toBeGreaterThan(0);
  });

  it("prints a table for a running daemon", () => {
    const r = bench("--only", "get", "--socket", d.socket);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/GET \/1\.0 p50 latency \(µs\)\s+[\d.]+\n/);
    expect(r.stdout).toMatch(/GET \/1\.0 throughput \(req\/s\)\s+\d+/);
  });

  it("rejects an unknown figure name", () => {
    const r = bench("--only", "get,warp");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("--only: unknown figure 'warp'");
  });

  it("initialises its own daemon and measures stop+start of an instance", async (ctx) => {
    const probe = await d.api("GET", "/1.0/instances");
    if (probe.status === 404 || probe.status === 501) ctx.skip();
    const before = benchDirs();
    const r = bench("--json", "--only", "stopstart", "--runs", "2");
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.only).toEqual(["stopstart"]);
    expect(out.nodelxd.stopstart_median_ms).toBeGreaterThan(0);
    expect(out.nodelxd.p50_us).toBeUndefined();
    // its daemon directory, containers and scratch files are gone
    expect(benchDirs()).toEqual(before);
  }, 120_000);
});

describe("bench:migrate", () => {
  it("copies and refreshes between two daemons of its own, and cleans up", async () => {
    const before = benchDirs();
    const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, "dist/bench/migrate.js"), "--size-mib", "10", "--snapshots", "1", "--change-mib", "10", "--runs", "1", "--no-reference", "--json"]);
      let out = "";
      let err = "";
      child.stdout.on("data", (b) => (out += b));
      child.stderr.on("data", (b) => (err += b));
      child.on("close", (code) => resolve({ code, out, err }));
    });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out);
    expect(out.figures.copy_median_ms).toBeGreaterThan(0);
    expect(out.figures.refresh_median_ms).toBeGreaterThan(0);
    expect(out.figures.reference_copy_median_ms).toBeUndefined();
    expect(benchDirs()).toEqual(before);
  }, 300_000);
});
