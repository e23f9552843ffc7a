// snapshots.schedule with the real scheduler and a real wait (one test, about two minutes):
// a running container and a custom volume snapshotted every minute across a kill -9 and
// restart without duplicates, stopped containers only with snapshots.schedule.stopped, and
// expired snapshots pruned.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
beforeAll(async () => {
  d = await startInitialisedDaemon();
});
afterAll(async () => {
  if (!d) return;
  await d.api("DELETE", "/1.0/storage-pools/default/volumes/custom/sched");
  await d.teardown();
});

const ok = (...args: string[]) => {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r.stdout;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const instanceSnaps = async (name: string) => ((await d.api("GET", `/1.0/instances/${name}/snapshots?recursion=1`)).body.metadata ?? []) as { name: string; created_at: string }[];
const volumeSnaps = async () => ((await d.api("GET", "/1.0/storage-pools/default/volumes/custom/sched/snapshots")).body.metadata ?? []) as string[];
const minuteOf = (iso: string) => Math.floor(new Date(iso).getTime() / 60_000);

describe("scheduled snapshots", () => {
  it("snapshots every minute without duplicates across a restart, honours schedule.stopped, prunes expired ones", { timeout: 240_000 }, async () => {
    const running = d.launch("run", { config: { "snapshots.schedule": "* * * * *" } });
    const stopped = d.launch("off", { init: true, config: { "snapshots.schedule": "* * * * *" } });
    const stoppedToo = d.launch("offok", { init: true, config: { "snapshots.schedule": "* * * * *", "snapshots.schedule.stopped": "true" } });
    ok("storage", "volume", "create", "default", "sched", "snapshots.schedule=* * * * *", "snapshots.pattern=auto%d");
    // Snapshots that expire in a few seconds go at the next pass.
    const soon = new Date(Date.now() + 3000).toISOString();
    for (const url of [`/1.0/instances/${running}/snapshots`, "/1.0/storage-pools/default/volumes/custom/sched/snapshots"]) {
      const r = await d.api("POST", url, { name: "soon", expires_at: soon });
      expect((await d.api("GET", `${r.body.operation}/wait?timeout=30`)).body.metadata.status).toBe("Success");
    }

    const until = async (cond: () => Promise<boolean>, ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        if (await cond()) return;
        await sleep(500);
      }
      throw new Error("timed out");
    };
    const auto = async () => (await instanceSnaps(running)).filter((s) => s.name !== "soon");
    await until(async () => (await auto()).length >= 1, 75_000);
    // Crash and restart within the same minute: the run is already claimed.
    await d.kill9();
    await d.restart();
    await sleep(4000);
    let snaps = await auto();
    expect(new Set(snaps.map((s) => minuteOf(s.created_at))).size).toBe(snaps.length);
    await until(async () => (await auto()).length >= 2 && (await volumeSnaps()).filter((u) => u.includes("/auto")).length >= 2, 70_000);
    await sleep(3000);

    snaps = await auto();
    expect(snaps.map((s) => s.name).slice(0, 2)).toEqual(["snap0", "snap1"]);
    expect(new Set(snaps.map((s) => minuteOf(s.created_at))).size).toBe(snaps.length);
    const vol = (await volumeSnaps()).map((u) => u.split("/").pop());
    expect(vol.slice(0, 2)).toEqual(["auto0", "auto1"]);
    // One volume snapshot per minute too (created_at from the database: the API shows none, as upstream).
    const rows = d.cli("sql", "global", "SELECT created_at FROM storage_volumes WHERE name LIKE 'sched/auto%'");
    expect(rows.code, rows.stderr).toBe(0);
    const times = [...rows.stdout.matchAll(/\d{4}-\d\d-\d\dT[\d:.]+Z/g)].map((m) => minuteOf(m[0]));
    expect(times.length).toBe(vol.length);
    expect(new Set(times).size).toBe(times.length);
    // Stopped: only with snapshots.schedule.stopped.
    expect(await instanceSnaps(stopped)).toEqual([]);
    expect((await instanceSnaps(stoppedToo)).length).toBeGreaterThanOrEqual(1);
    // The expired ones are gone.
    expect((await instanceSnaps(running)).some((s) => s.name === "soon")).toBe(false);
    expect(vol).not.toContain("soon");
  });

  it("@startup snapshots on every start, before the container runs (and not while stopped)", async () => {
    const name = d.launch("boot", { init: true, config: { "snapshots.schedule": "@startup, 10 2,5-8/2 * * *" } });
    expect(await instanceSnaps(name)).toEqual([]);
    ok("start", name);
    expect((await instanceSnaps(name)).map((s) => s.name)).toEqual(["snap0"]);
    ok("restart", "-f", name);
    expect((await instanceSnaps(name)).map((s) => s.name)).toEqual(["snap0", "snap1"]);
    ok("stop", "-f", name);
    expect((await instanceSnaps(name)).length).toBe(2);
  });
});
