// snapshots.schedule as LXD reads it: standard 5-field cron (robfig/cron's ParseStandard:
// numbers, names, ranges, steps, lists, `*` and `?`), the aliases @hourly/@daily/@midnight/
// @weekly/@monthly/@annually/@yearly/@never with a minute (and hour) fixed per subject, and
// several schedules separated by ", ". Pure: the scheduler asks whether a minute matches.

const FIELDS = [
  { min: 0, max: 59, names: [] as string[] },
  { min: 0, max: 23, names: [] },
  { min: 1, max: 31, names: [] },
  { min: 1, max: 12, names: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"] },
  { min: 0, max: 6, names: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] },
];

/** As upstream's SnapshotScheduleAliases: "%m" is the subject's minute, "%h" its hour. */
const ALIASES: Record<string, string> = {
  "@hourly": "%m * * * *",
  "@daily": "%m %h * * *",
  "@midnight": "%m 0 * * *",
  "@weekly": "%m %h * * 0",
  "@monthly": "%m %h 1 * *",
  "@annually": "%m %h 1 1 *",
  "@yearly": "%m %h 1 1 *",
  "@never": "",
};

interface Field {
  values: Set<number>;
  /** Written as `*` or `?` (robfig's star bit: day-of-month and day-of-week then both must match). */
  star: boolean;
}

export interface CronSpec {
  fields: Field[];
}

function parseValue(s: string, f: (typeof FIELDS)[number]): number {
  const named = f.names.indexOf(s.toLowerCase());
  if (named >= 0) return named + f.min;
  if (!/^\d+$/.test(s)) throw new Error(`failed to parse int from ${s}: strconv.Atoi: parsing "${s}": invalid syntax`);
  return Number(s);
}

function parseField(expr: string, f: (typeof FIELDS)[number]): Field {
  const values = new Set<number>();
  let star = false;
  for (const part of expr.split(",")) {
    const [range, stepStr, extra] = part.split("/");
    if (extra !== undefined) throw new Error(`too many slashes: ${part}`);
    let start: number;
    let end: number;
    let isStar = false;
    if (range === "*" || range === "?") {
      [start, end, isStar] = [f.min, f.max, true];
    } else {
      const [a, b, more] = range.split("-");
      if (more !== undefined) throw new Error(`too many hyphens: ${range}`);
      start = parseValue(a, f);
      end = b === undefined ? start : parseValue(b, f);
    }
    let step = 1;
    if (stepStr !== undefined) {
      step = parseValue(stepStr, { min: 0, max: 0, names: [] });
      if (step === 0) throw new Error(`step of range should be a positive number: ${part}`);
      // "N/step" means N through the end of the field.
      if (!isStar && !range.includes("-")) end = f.max;
      if (step > 1) isStar = false;
    }
    if (start < f.min) throw new Error(`beginning of range (${start}) below minimum (${f.min}): ${part}`);
    if (end > f.max) throw new Error(`end of range (${end}) above maximum (${f.max}): ${part}`);
    if (start > end) throw new Error(`beginning of range (${start}) beyond end of range (${end}): ${part}`);
    for (let v = start; v <= end; v += step) values.add(v);
    star ||= isStar;
  }
  return { values, star };
}

/** Parse one standard cron expression (5 fields); throws on anything robfig would refuse. */
export function parseCron(spec: string): CronSpec {
  const parts = spec.trim().split(/\s+/);
  if (parts.length !== 5) throw new Error(`expected exactly 5 fields, found ${parts.length}: ${spec}`);
  return { fields: parts.map((p, i) => parseField(p, FIELDS[i])) };
}

/** Whether `date`'s minute (local time, as LXD's time.Now()) matches. */
export function cronMatches(spec: CronSpec, date: Date): boolean {
  const [min, hour, dom, month, dow] = spec.fields;
  if (!min.values.has(date.getMinutes()) || !hour.values.has(date.getHours()) || !month.values.has(date.getMonth() + 1)) return false;
  const domOk = dom.values.has(date.getDate());
  const dowOk = dow.values.has(date.getDay());
  return dom.star || dow.star ? domOk && dowOk : domOk || dowOk;
}

/** The subject's fixed minute and hour for aliases (stable per subject, spreading the load). */
export function subjectTime(subjectId: number): { minute: number; hour: number } {
  // A small integer hash (not upstream's math/rand sequence, which only needs to be stable).
  let x = (subjectId * 2654435761) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return { minute: x % 60, hour: Math.floor(x / 60) % 24 };
}

/** The cron expressions a snapshots.schedule value stands for (aliases expanded, @never dropped). */
export function expandSchedule(value: string, subjectId: number): string[] {
  const parts = value.includes(", ") ? value.split(",").map((s) => s.trim()).filter(Boolean) : [value.trim()];
  const { minute, hour } = subjectTime(subjectId);
  const out: string[] = [];
  for (const p of parts) {
    const alias = ALIASES[p.toLowerCase()];
    const spec = alias === undefined ? p : alias.replace("%m", String(minute)).replace("%h", String(hour));
    if (spec) out.push(spec);
  }
  return out;
}

/** Whether a snapshots.schedule value is due in `date`'s minute; unparsable parts never are (as upstream). */
export function scheduleIsDue(value: string, subjectId: number, date: Date): boolean {
  if (!value.trim()) return false;
  return expandSchedule(value, subjectId).some((s) => {
    try {
      return cronMatches(parseCron(s), date);
    } catch {
      return false;
    }
  });
}

/** Aliases LXD accepts in an instance's snapshots.schedule. */
export const INSTANCE_SCHEDULE_ALIASES = ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@annually", "@yearly", "@startup", "@never"];
/** Aliases LXD accepts in a custom volume's snapshots.schedule. */
export const VOLUME_SCHEDULE_ALIASES = ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@annually", "@yearly"];

/** LXD's validate.IsCron: lower-cased, ", "-separated triggers, each an alias or 5 space-separated fields cron accepts. */
export function validateSchedule(value: string, aliases: string[]): void {
  for (const trigger of value.toLowerCase().split(", ")) {
    if (aliases.includes(trigger)) continue;
    if (trigger.split(" ").length !== 5) throw new Error("Schedule must be of the form: <minute> <hour> <day-of-month> <month> <day-of-week>");
    try {
      parseCron(trigger);
    } catch (e) {
      throw new Error(`Error parsing schedule: ${(e as Error).message}`);
    }
  }
}
