// LXD's collection filter (`?filter=`): "field op value" clauses joined by and/or, with
// optional `not`; fields are JSON names, dotted for maps (properties.os). ops: eq, ne.
import { BadRequest } from "../shared/errors.js";

export interface Clause {
  prev: "and" | "or" | "";
  not: boolean;
  field: string;
  op: "eq" | "ne";
  value: string;
}

function tokenize(s: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|(\S+))/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    if (m[0].trim() === "") break;
    out.push(m[1] ?? m[2] ?? m[3]);
  }
  return out;
}

export function parseFilter(text: string): Clause[] {
  const tokens = tokenize(text);
  const clauses: Clause[] = [];
  let i = 0;
  while (i < tokens.length) {
    let prev: Clause["prev"] = "";
    if (clauses.length > 0) {
      const t = tokens[i++]?.toLowerCase();
      if (t !== "and" && t !== "or") throw new BadRequest(`Invalid filter: expected "and" or "or", got "${t ?? ""}"`);
      prev = t;
    }
    let not = false;
    if (tokens[i]?.toLowerCase() === "not") {
      not = true;
      i++;
    }
    const [field, op, value] = [tokens[i], tokens[i + 1]?.toLowerCase(), tokens[i + 2]];
    if (field === undefined || op === undefined || value === undefined) throw new BadRequest("Invalid filter: clause has insufficient tokens");
    if (op !== "eq" && op !== "ne") throw new BadRequest(`Invalid filter: invalid clause operator "${op}"`);
    clauses.push({ prev, not, field, op, value });
    i += 3;
  }
  return clauses;
}

function lookup(obj: unknown, field: string): unknown {
  if (obj && typeof obj === "object" && field in (obj as Record<string, unknown>)) return (obj as Record<string, unknown>)[field];
  const dot = field.indexOf(".");
  if (dot === -1 || !obj || typeof obj !== "object") return undefined;
  return lookup((obj as Record<string, unknown>)[field.slice(0, dot)], field.slice(dot + 1));
}

export function matchFilter(obj: unknown, clauses: Clause[]): boolean {
  let result = true;
  for (const c of clauses) {
    const v = lookup(obj, c.field);
    let match = v !== undefined && v !== null && typeof v !== "object" ? String(v) === c.value : false;
    if (c.op === "ne") match = !match;
    if (c.not) match = !match;
    result = c.prev === "or" ? result || match : c.prev === "and" ? result && match : match;
  }
  return result;
}
