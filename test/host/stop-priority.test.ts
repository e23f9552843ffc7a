// Issue 19: container_stop_priority. On SIGPWR (and `lxd shutdown`) the daemon stops instances
// by boot.stop.priority, highest first, a batch finished before the next begins (as LXD's
// instancesShutdown), and they come back at the next start.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;

beforeAll(async () => {
  d = await startInitialisedDaemon();
}, 120_000);

afterAll(async () => {
  if (d) await d.teardown();
});

async function pidOf(name: string): Promise<number> {
  return (await d.api("GET", `/1.0/instances/${name}/state`)).body.metadata.pid;
}

/** Poll until every pid is gone; the time each disappeared, relative to `t0`. */
async function exitTimes(pids: Record<string, number>, t0: number, limitMs: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  while (Object.keys(out).length < Object.keys(pids).length && Date.now() - t0 < limitMs) {
    for (const [n, pid] of Object.entries(pids)) if (out[n] === undefined && !existsSync(`/proc/${pid}`)) out[n] = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 10));
  }
  return out;
}

describe("boot.stop.priority", () => {
  it("orders the stops of a SIGPWR shutdown, highest priority first, batch by batch", async () => {
    // The busybox init ignores the halt signal, so each clean stop waits out its timeout (1 s) and
    // is then killed: the batches are a second apart and their order is visible.
    const common = { "boot.host_shutdown_timeout": "1" };
    const low = d.launch("low", { config: { ...common } }); // priority 0 (default)
    const high = d.launch("high", { config: { ...common, "boot.stop.priority": "10" } });
    const mid1 = d.launch("mid1", { config: { ...common, "boot.stop.priority": "5" } });
    const mid2 = d.launch("mid2", { config: { ...common, "boot.stop.priority": "5" } });
    const pids = { [low]: await pidOf(low), [high]: await pidOf(high), [mid1]: await pidOf(mid1), [mid2]: await pidOf(mid2) };
    for (const p of Object.values(pids)) expect(p).toBeGreaterThan(0);
    const t0 = Date.now();
    d.proc.kill("SIGPWR");
    const t = await exitTimes(pids, t0, 30_000);
    expect(Object.keys(t).sort()).toEqual(Object.keys(pids).sort());
    expect(t[high]).toBeLessThan(t[mid1]);
    expect(t[high]).toBeLessThan(t[mid2]);
    expect(Math.max(t[mid1], t[mid2])).toBeLessThan(t[low]);
    // Each batch waits for the one before (≈ one timeout apart); one batch's stops run together.
    expect(Math.min(t[mid1], t[mid2]) - t[high]).toBeGreaterThan(500);
    expect(t[low] - Math.max(t[mid1], t[mid2])).toBeGreaterThan(500);
    expect(Math.abs(t[mid1] - t[mid2])).toBeLessThan(700);
    await new Promise<void>((r) => (d.proc.exitCode !== null || d.proc.signalCode !== null ? r() : d.proc.once("exit", () => r())));
    // They were running at shutdown: the next start brings them back.
    await d.restart();
    for (const n of [low, high, mid1, mid2]) {
      let status = "";
      for (let i = 0; i < 80 && status !== "Running"; i++) {
        status = (await d.api("GET", `/1.0/instances/${n}`)).body.metadata.status;
        if (status !== "Running") await new Promise((r) => setTimeout(r, 250));
      }
      expect(status, n).toBe("Running");
    }
  }, 120_000);
});
