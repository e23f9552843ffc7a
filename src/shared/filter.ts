// LXD's collection filter (`?filter=`, lxd/filter in 5.0.2): "field op value" clauses joined by
// and/or, each optionally preceded by `not`; fields are JSON names, dotted into maps
// (properties.os, config.image.os, expanded_devices.root.path).
import { InternalError } from "./errors.js";

export interface Clause {
  prev: "and" | "or";
  not: boolean;
  field: string;
  /** "ne" negates; any other operator compares for equality, as LXD (it checks no other). */
  op: string;
  value: string;
}

/** LXD answers a filter it cannot parse through SmartError: a 500 "Invalid filter: …". */
const invalid = (why: string) => new InternalError(`Invalid filter: ${why}`);

/** filter.Parse: whitespace-separated words; a value starting with `"` runs to the next word ending with `"`. */
export function parseFilter(text: string): Clause[] {
  const parts = text.split(/\s+/).filter((p) => p !== "");
  const clauses: Clause[] = [];
  let i = 0;
  let prev: Clause["prev"] = "and";
  while (i < parts.length) {
    let not = false;
    if (parts[i].toLowerCase() === "not") {
      not = true;
      if (++i === parts.length) throw invalid("incomplete not clause");
    }
    const field = parts[i];
    if (++i === parts.length) throw invalid("clause has no operator");
    const op = parts[i];
    if (++i === parts.length) throw invalid("clause has no value");
    let value = parts[i];
    if (value.startsWith('"')) {
      // As upstream: the closing quote is looked for from the next word on, so `"one"` alone is unterminated.
      value = value.slice(1);
      for (;;) {
        if (++i === parts.length) throw invalid("unterminated quote");
        if (parts[i].endsWith('"')) break;
        value += " " + parts[i];
      }
      value += " " + parts[i].slice(0, -1);
    }
    clauses.push({ prev, not, field, op, value });
    i++;
    if (i < parts.length) {
      const logical = parts[i];
      if (logical !== "and" && logical !== "or") throw invalid("invalid clause composition");
      prev = logical;
      if (++i === parts.length) throw invalid("unterminated compound clause");
    }
  }
  return clauses;
}

/** filter.ValueOf over the JSON view: a whole dotted key first (config.image.os), then one level at a time. */
function lookup(obj: unknown, field: string): unknown {
  if (obj && typeof obj === "object" && field in (obj as Record<string, unknown>)) return (obj as Record<string, unknown>)[field];
  const dot = field.indexOf(".");
  if (dot === -1 || !obj || typeof obj !== "object") return undefined;
  return lookup((obj as Record<string, unknown>)[field.slice(0, dot)], field.slice(dot + 1));
}

/** Go's strings.EqualFold, near enough for names and values. */
const equalFold = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * filter.Match: a string field matches the value as a case-insensitive regular expression,
 * anchored at both ends unless the value holds `^` or `$` itself; a value that is no valid
 * expression is compared case-insensitively as text. A field that is no string in LXD's Go
 * types (booleans, numbers, maps, and the top-level `*_at` times, time.Time there) never
 * equals the value, so `eq` on it is false and `ne` true.
 */
export function matchFilter(obj: unknown, clauses: Clause[]): boolean {
  let result = true;
  for (const c of clauses) {
    const v = lookup(obj, c.field);
    const isTime = !c.field.includes(".") && c.field.endsWith("_at");
    let match = false;
    if (typeof v === "string" && !isTime) {
      const pattern = c.value.includes("^") || c.value.includes("$") ? c.value : `^${c.value}$`;
      let re: RegExp | undefined;
      try {
        re = new RegExp(pattern, "i");
      } catch {
        re = undefined;
      }
      match = re ? re.test(v) : equalFold(v, c.value);
    }
    if (c.op === "ne") match = !match;
    if (c.not) match = !match;
    result = c.prev === "or" ? result || match : result && match;
  }
  return result;
}
