// `npm run bench` end to end, with small numbers: it starts its own daemon, or measures a given socket.
import { spawnSync } from "node:child_process";
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

const bench = (...args: string[]) => spawnSync(process.execPath, [BENCH, "--requests", "100", "--duration", "1", "--connections", "4", ...args], { encoding: "utf8", timeout: 60_000 });

describe("bench", () => {
  it("measures its own daemon and compares with another socket (JSON)", () => {
    const r = bench("--json", "--compare", d.socket);
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
    const r = bench("--socket", d.socket);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/GET \/1\.0 p50 latency \(µs\)\s+[\d.]+\n/);
    expect(r.stdout).toMatch(/GET \/1\.0 throughput \(req\/s\)\s+\d+/);
  });
});
