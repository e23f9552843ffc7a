// First-party caveat conditions our bakery understands (bakery's standard checkers in the
// namespace we mint with: "time-before", "declared", "error"; httpbakery's "http:client-ip-addr"),
// and the declared attributes a macaroon slice carries (bakery's InferDeclared).
import { isIP } from "node:net";

export interface CheckContext {
  now: Date;
  /** Attributes declared by the whole slice (conflicting declarations dropped). */
  declared: Map<string, string>;
  /** The client's IP address. */
  clientIp: string;
}

function parseCondition(cond: string): { name: string; arg: string } {
  const i = cond.indexOf(" ");
  return i < 0 ? { name: cond, arg: "" } : { name: cond.slice(0, i), arg: cond.slice(i + 1) };
}

/** RFC 3339 with optional fractional seconds, as Go's time.Parse(time.RFC3339Nano) takes it. */
function parseTime(text: string): number {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(text)) return NaN;
  return Date.parse(text);
}

/** Why a condition does not hold, or null when it does. */
export function checkCondition(cond: string, ctx: CheckContext): string | null {
  const { name, arg } = parseCondition(cond);
  switch (name) {
    case "time-before": {
      const t = parseTime(arg);
      if (Number.isNaN(t)) return `caveat "${cond}" not satisfied: cannot parse time`;
      return ctx.now.getTime() < t ? null : `caveat "${cond}" not satisfied: macaroon has expired`;
    }
    case "declared": {
      const parts = arg.split(" ");
      if (parts.length < 2) return `caveat "${cond}" not satisfied: declared caveat has no value`;
      const key = parts[0];
      const want = arg.slice(key.length + 1);
      const got = ctx.declared.get(key);
      if (got === undefined) return `caveat "${cond}" not satisfied: got ${key}=null, expected "${want}"`;
      return got === want ? null : `caveat "${cond}" not satisfied: got ${key}="${got}", expected "${want}"`;
    }
    case "error":
      return `caveat "${cond}" not satisfied: ${arg}`;
    case "http:client-ip-addr": {
      if (isIP(arg) === 0) return `caveat "${cond}" not satisfied: cannot parse IP address in caveat`;
      return normaliseIp(arg) === normaliseIp(ctx.clientIp) ? null : `caveat "${cond}" not satisfied: client IP address mismatch, got ${ctx.clientIp}`;
    }
    default:
      return `caveat "${cond}" not satisfied: caveat not recognized`;
  }
}

function normaliseIp(ip: string): string {
  return ip.startsWith("::ffff:") && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip.toLowerCase();
}

/** The "declared key value" conditions among `conditions`; a key declared with two values is dropped. */
export function inferDeclared(conditions: string[]): Map<string, string> {
  const info = new Map<string, string>();
  const conflicts = new Set<string>();
  for (const cond of conditions) {
    const { name, arg } = parseCondition(cond);
    if (name !== "declared") continue;
    const i = arg.indexOf(" ");
    if (i < 0) continue;
    const key = arg.slice(0, i);
    const value = arg.slice(i + 1);
    const old = info.get(key);
    if (old !== undefined && old !== value) {
      conflicts.add(key);
      continue;
    }
    info.set(key, value);
  }
  for (const k of conflicts) info.delete(k);
  return info;
}
