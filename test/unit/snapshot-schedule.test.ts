// snapshots.schedule semantics (cron fields, aliases, lists) and the scheduler's run claims.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import type { SnapshotScheduleSource } from "../../src/ports.js";
import { openDatabase } from "../../src/db/database.js";
import { cronMatches, expandSchedule, INSTANCE_SCHEDULE_ALIASES, parseCron, scheduleIsDue, subjectTime, validateSchedule, VOLUME_SCHEDULE_ALIASES } from "../../src/snapshots/cron.js";
import { SnapshotScheduler } from "../../src/snapshots/scheduler.js";

// Local time, as the scheduler reads it: 2026-03-02 (a Monday) 14:30.
const at = (y: number, mo: number, d: number, h: number, mi: number) => new Date(y, mo - 1, d, h, mi, 0);
const mon1430 = at(2026, 3, 2, 14, 30);

describe("cron expressions", () => {
  it.each([
    ["* * * * *", true],
    ["30 14 * * *", true],
    ["31 14 * * *", false],
    ["*/15 * * * *", true],
    ["*/7 * * * *", false],
    ["0-30/10 14 * * *", true],
    ["25-35 * * * *", true],
    ["10,20,30 * * * *", true],
    ["30 14 2 3 *", true],
    ["30 14 * mar mon", true],
    ["30 14 * * tue", false],
    // Day of month and day of week both restricted: either one matching is enough (robfig).
    ["30 14 15 * 1", true],
    ["30 14 15 * 2", false],
    // One of them a star: both must match.
    ["30 14 15 * *", false],
    ["30 14 * * ?", true],
    ["30/20 * * * *", true],
    ["40/5 * * * *", false],
  ])("%s at Monday 14:30 → %s", (spec, expected) => {
    expect(cronMatches(parseCron(spec), mon1430)).toBe(expected);
  });

  it.each(["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 7", "a * * * *", "*/0 * * * *", "5-1 * * * *", "1/2/3 * * * *"])("refuses %s", (spec) => {
    expect(() => parseCron(spec)).toThrow();
  });
});

describe("snapshots.schedule values", () => {
  it("expands aliases at a minute and hour fixed per subject", () => {
    const { minute, hour } = subjectTime(42);
    expect(subjectTime(42)).toEqual({ minute, hour });
    expect(minute).toBeGreaterThanOrEqual(0);
    expect(minute).toBeLessThan(60);
    expect(hour).toBeLessThan(24);
    expect(expandSchedule("@hourly", 42)).toEqual([`${minute} * * * *`]);
    expect(expandSchedule("@daily", 42)).toEqual([`${minute} ${hour} * * *`]);
    expect(expandSchedule("@midnight", 42)).toEqual([`${minute} 0 * * *`]);
    expect(expandSchedule("@weekly", 42)).toEqual([`${minute} ${hour} * * 0`]);
    expect(expandSchedule("@never", 42)).toEqual([]);
    expect(scheduleIsDue("@hourly", 42, at(2026, 3, 2, 7, minute))).toBe(true);
    expect(scheduleIsDue("@hourly", 42, at(2026, 3, 2, 7, (minute + 1) % 60))).toBe(false);
    expect(scheduleIsDue("@daily", 42, at(2026, 3, 2, hour, minute))).toBe(true);
    expect(scheduleIsDue("@daily", 42, at(2026, 3, 2, (hour + 1) % 24, minute))).toBe(false);
  });

  it("takes lists separated by ', ' and skips parts that don't parse", () => {
    expect(expandSchedule("0 6 * * *, @never, 30 14 * * *", 1)).toEqual(["0 6 * * *", "30 14 * * *"]);
    expect(scheduleIsDue("0 6 * * *, 30 14 * * *", 1, mon1430)).toBe(true);
    expect(scheduleIsDue("0 6 * * *, 31 14 * * *", 1, mon1430)).toBe(false);
    expect(scheduleIsDue("bogus, 30 14 * * *", 1, mon1430)).toBe(true);
    expect(scheduleIsDue("", 1, mon1430)).toBe(false);
  });
});

describe("the scheduler", () => {
  const dir = mkdtempSync("/tmp/nodelxd-unit-sched-");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("takes a due snapshot once per minute, across a new scheduler on the same database, and prunes every pass", async () => {
    const file = join(dir, "db.sqlite");
    let now = at(2026, 3, 2, 14, 30).getTime() + 5000;
    const taken: string[] = [];
    let pruned = 0;
    const source: SnapshotScheduleSource = {
      scheduled: () => [
        { key: "instance:1", id: 1, schedule: "* * * * *", take: async () => void taken.push(`i1@${new Date(now).getMinutes()}`) },
        { key: "volume:1", id: 1, schedule: "0 * * * *", take: async () => void taken.push("v1") },
        { key: "volume:2", id: 2, schedule: "*/2 * * * *", take: async () => Promise.reject(new Error("disk full")) },
      ],
      pruneExpired: async () => void pruned++,
    };
    // A standalone daemon's cluster: not clustered, leads and owns everything.
    const cluster = { clustered: () => false, leads: () => true, owns: () => true, claimRun: async () => true, withWriteLock: <T>(fn: () => Promise<T>) => fn() };
    const make = () => new SnapshotScheduler({ db: openDatabase(file), log: pino({ level: "silent" }), cluster }, () => [source], () => now);
    const a = make();
    await a.tick();
    await a.tick();
    // A restarted daemon in the same minute: nothing taken twice.
    const b = make();
    await b.tick();
    expect(taken).toEqual(["i1@30"]);
    now += 60_000;
    await b.tick();
    await a.tick();
    expect(taken).toEqual(["i1@30", "i1@31"]);
    expect(pruned).toBe(5);
    // A failing take is claimed too (no retry storm within the minute) and doesn't stop the pass.
    expect(b.claim("volume:2", Math.floor(at(2026, 3, 2, 14, 30).getTime() / 60_000))).toBe(false);
  });
});

describe("schedule validation (LXD's validate.IsCron)", () => {
  const volume = (v: string) => validateSchedule(v, VOLUME_SCHEDULE_ALIASES);
  const instance = (v: string) => validateSchedule(v, INSTANCE_SCHEDULE_ALIASES);
  it("accepts cron lists, names, aliases in any case and ', '-separated triggers", () => {
    for (const ok of ["0,30 * * * *", "* * * * mon-fri", "@HOURLY, 0 6 * * *", "*/5 * * * *", "0 0 1 jan *"]) expect(() => volume(ok), ok).not.toThrow();
    expect(() => instance("@startup, @never")).not.toThrow();
  });
  it.each([
    ["60 * * * *", "Error parsing schedule: end of range (60) above maximum (59): 60"],
    ["5-1 * * * *", "Error parsing schedule: beginning of range (5) beyond end of range (1): 5-1"],
    ["*  * * * *", "Schedule must be of the form: <minute> <hour> <day-of-month> <month> <day-of-week>"],
    ["@startup", "Schedule must be of the form: <minute> <hour> <day-of-month> <month> <day-of-week>"],
    ["0 6 * *", "Schedule must be of the form: <minute> <hour> <day-of-month> <month> <day-of-week>"],
  ])("refuses %s on a volume as LXD does", (value, message) => {
    expect(() => volume(value)).toThrow(message);
  });
});
