// Network ACL rules: LXD 5.0.2's validation (lxd/network/acl/driver_common.go) and their
// translation to nftables rules for bridge networks (lxd/firewall/drivers/drivers_nftables.go).
// Pure: no database, no host.
import { parseCidr, parseIp } from "../ipnet.js";

export interface AclRule {
  action: string;
  source?: string;
  destination?: string;
  protocol?: string;
  source_port?: string;
  destination_port?: string;
  icmp_type?: string;
  icmp_code?: string;
  description?: string;
  state: string;
}

export type Direction = "ingress" | "egress";

export const ACL_ACTIONS = ["allow", "drop", "reject"];
const STATES = ["enabled", "disabled", "logged"];
const PROTOCOLS = ["icmp4", "icmp6", "tcp", "udp"];
const INTERNAL = ["@internal", "#internal"];
const EXTERNAL = ["@external", "#external"];

const splitTrim = (v: string) => v.split(",").map((s) => s.trim());

/** api.NetworkACLRule.Normalise, with the omitempty fields dropped when empty (as Go's JSON shows them). */
export function normaliseRule(r: AclRule): AclRule {
  const out: AclRule = { action: (r.action ?? "").trim(), state: (r.state ?? "").trim() };
  const fields: [keyof AclRule, string][] = [
    ["source", splitTrim(r.source ?? "").join(",")],
    ["destination", splitTrim(r.destination ?? "").join(",")],
    ["protocol", (r.protocol ?? "").trim()],
    ["source_port", splitTrim(r.source_port ?? "").join(",")],
    ["destination_port", splitTrim(r.destination_port ?? "").join(",")],
    ["icmp_type", (r.icmp_type ?? "").trim()],
    ["icmp_code", (r.icmp_code ?? "").trim()],
    ["description", (r.description ?? "").trim()],
  ];
  for (const [k, v] of fields) if (v !== "") (out as unknown as Record<string, string>)[k] = v;
  return out;
}

const sameRule = (a: AclRule, b: AclRule) =>
  (["action", "source", "destination", "protocol", "source_port", "destination_port", "icmp_type", "icmp_code", "description", "state"] as const).every(
    (k) => (a[k] ?? "") === (b[k] ?? ""),
  );

/** ValidName: a hostname-like name that can't be confused with an address or a reserved subject. */
export function aclNameError(name: string): string | undefined {
  if (name === "") return "Name is required";
  if (/^[@%#]/.test(name)) return `Name cannot start with reserved character "${name[0]}"`;
  if (name.length > 63) return "Name must be 1-63 characters long";
  if (name.startsWith("-")) return 'Name must not start with "-" character';
  if (name.endsWith("-")) return 'Name must not end with "-" character';
  if (/^[0-9]/.test(name)) return "Name must not start with a number";
  if (!/^[-a-zA-Z0-9]+$/.test(name)) return "Name can only contain alphanumeric and hyphen characters";
  return undefined;
}

const familyOfIp = (v: string): 4 | 6 | undefined => parseIp(v)?.family;

function familyOfCidr(v: string): 4 | 6 | undefined {
  if (!v.includes("/")) return undefined;
  return parseCidr(v)?.family;
}

/** validate.IsNetworkRange, returning the family (throws LXD's message). */
function familyOfRange(v: string): 4 | 6 {
  const ips = v.split("-");
  if (ips.length < 2) throw new Error("IP range must contain start and end IP addresses");
  const [a, b] = [ips[0], ips.slice(1).join("-")];
  const s = parseIp(a);
  if (!s) throw new Error(`Start not an IP address "${a}"`);
  const e = parseIp(b);
  if (!e) throw new Error(`End not an IP address "${b}"`);
  if (s.family !== e.family) throw new Error("Start and end IP addresses are not in same family");
  if (s.ip > e.ip) throw new Error("Start IP address must be before or equal to end IP address");
  return s.family;
}

function rangeFamily(v: string): 4 | 6 | undefined {
  try {
    return familyOfRange(v);
  } catch {
    return undefined;
  }
}

/** validate.IsNetworkPortRange. */
export function portRangeError(v: string): string | undefined {
  const parts = v.split("-");
  const isNum = (s: string) => /^[0-9]+$/.test(s) && Number(s) <= 0xffffffff;
  if (parts.length > 2) {
    // SplitN(..., 2): everything after the first "-" is the end, which then fails to parse.
    if (!isNum(parts[0])) return `Invalid port number "${v}"`;
    return `Invalid end port number "${v}"`;
  }
  if (!isNum(parts[0])) return `Invalid port number "${v}"`;
  if (parts.length === 2) {
    if (!isNum(parts[1])) return `Invalid end port number "${v}"`;
    if (Number(parts[0]) >= Number(parts[1])) return `Start port ${Number(parts[0])} must be lower than end port ${Number(parts[1])}`;
  }
  // Single ports and range ends above 65535 pass LXD's IsNetworkPortRange (uint32) but nft refuses
  // them; LXD then fails when applying. Refuse them up front with the IsNetworkPort message.
  for (const p of parts) if (Number(p) > 65535) return `Out of port number range (0-65535) "${p}"`;
  return undefined;
}

const isUint8 = (v: string) => /^[0-9]+$/.test(v) && Number(v) <= 255;

function subjects(field: "Source" | "Destination", direction: Direction, list: string[], aclNames: string[]) {
  const allowNames = (field === "Source" && direction === "ingress") || (field === "Destination" && direction === "egress");
  const names = [...INTERNAL, ...EXTERNAL, ...aclNames];
  let hasName = false;
  let v4 = false;
  let v6 = false;
  for (const s of list) {
    const fam = familyOfIp(s) ?? familyOfCidr(s) ?? rangeFamily(s);
    if (fam === 4) v4 = true;
    else if (fam === 6) v6 = true;
    else if (names.includes(s) || s.startsWith("@")) {
      if (!allowNames) throw new Error(`Named subjects not allowed in "${field}" for "${direction}" rules`);
      hasName = true;
    } else throw new Error(`Invalid subject "${s}"`);
  }
  return { hasName, v4, v6 };
}

/** validateRule: throws LXD's message for the first problem. `aclNames` are the project's ACLs. */
export function validateRule(direction: Direction, rule: AclRule, aclNames: string[]): void {
  if (!ACL_ACTIONS.includes(rule.action)) throw new Error(`Action must be one of: ${ACL_ACTIONS.join(", ")}`);
  if (!STATES.includes(rule.state)) throw new Error(`State must be one of: ${STATES.join(", ")}`);
  let src = { hasName: false, v4: false, v6: false };
  let dst = { hasName: false, v4: false, v6: false };
  if (rule.source) {
    try {
      src = subjects("Source", direction, splitTrim(rule.source), aclNames);
    } catch (e) {
      throw new Error(`Invalid Source: ${(e as Error).message}`);
    }
  }
  if (rule.destination) {
    try {
      dst = subjects("Destination", direction, splitTrim(rule.destination), aclNames);
    } catch (e) {
      throw new Error(`Invalid Destination: ${(e as Error).message}`);
    }
  }
  if (rule.source && rule.destination) {
    if ((src.v4 && !dst.v4 && !dst.hasName) || (dst.v4 && !src.v4 && !src.hasName) || (src.v6 && !dst.v6 && !dst.hasName) || (dst.v6 && !src.v6 && !src.hasName))
      throw new Error("Conflicting IP family types used for Source and Destination");
  }
  const proto = rule.protocol ?? "";
  if (proto !== "" && !PROTOCOLS.includes(proto)) throw new Error(`Protocol must be one of: ${PROTOCOLS.join(", ")}`);
  if (proto === "tcp" || proto === "udp") {
    if (rule.icmp_type) throw new Error("ICMP type cannot be used with non-ICMP protocol");
    if (rule.icmp_code) throw new Error("ICMP code cannot be used with non-ICMP protocol");
    for (const [field, label] of [
      [rule.source_port, "Source"],
      [rule.destination_port, "Destination"],
    ] as const) {
      if (!field) continue;
      for (const p of splitTrim(field)) {
        const err = portRangeError(p);
        if (err) throw new Error(`Invalid ${label} port: ${err}`);
      }
    }
  } else if (proto === "icmp4" || proto === "icmp6") {
    if (rule.source_port) throw new Error(`Source port cannot be used with "${proto}" protocol`);
    if (rule.destination_port) throw new Error(`Destination port cannot be used with "${proto}" protocol`);
    if (proto === "icmp4") {
      if (src.v6) throw new Error(`Cannot use IPv6 source addresses with "${proto}" protocol`);
      if (dst.v6) throw new Error(`Cannot use IPv6 destination addresses with "${proto}" protocol`);
    } else {
      if (src.v4) throw new Error(`Cannot use IPv4 source addresses with "${proto}" protocol`);
      if (dst.v4) throw new Error(`Cannot use IPv4 destination addresses with "${proto}" protocol`);
    }
    if (rule.icmp_type && !isUint8(rule.icmp_type)) throw new Error(`Invalid ICMP type: Invalid value for an integer "${rule.icmp_type}". Must be between 0 and 255`);
    if (rule.icmp_code && !isUint8(rule.icmp_code)) throw new Error(`Invalid ICMP code: Invalid value for an integer "${rule.icmp_code}". Must be between 0 and 255`);
  } else {
    if (rule.icmp_type) throw new Error("ICMP type cannot be used without specifying protocol");
    if (rule.icmp_code) throw new Error("ICMP code cannot be used without specifying protocol");
    if (rule.source_port) throw new Error("Source port cannot be used without specifying protocol");
    if (rule.destination_port) throw new Error("Destination port cannot be used without specifying protocol");
  }
}

/** validateConfig: config keys (user.* only) and both rule lists, duplicates refused. */
export function validateAcl(acl: { config: Record<string, string>; ingress: AclRule[]; egress: AclRule[] }, aclNames: string[]): void {
  for (const k of Object.keys(acl.config)) if (!k.startsWith("user.")) throw new Error(`Invalid config option "${k}"`);
  for (const direction of ["ingress", "egress"] as const) {
    const rules = acl[direction];
    rules.forEach((rule, i) => {
      try {
        validateRule(direction, rule, aclNames);
      } catch (e) {
        throw new Error(`Invalid ${direction} rule ${i}: ${(e as Error).message}`);
      }
      if (rules.some((r, j) => j !== i && sameRule(r, rule))) throw new Error(`Duplicate of ${direction} rule ${i}`);
    });
  }
}

/** A rule as the firewall applies it (ACL rules, then the network's default rules). */
export type FirewallAclRule = Omit<AclRule, "state" | "description"> & { direction: Direction; logName?: string };

/**
 * The rules of the ACLs a network names, ordered as LXD orders them (drop, reject, allow), then
 * the network's default egress and ingress rules (security.acls.default.*; reject unless set).
 */
export function networkAclRules(network: string, acls: { ingress: AclRule[]; egress: AclRule[] }[], config: Record<string, string>): FirewallAclRule[] {
  const byAction: Record<string, FirewallAclRule[]> = { drop: [], reject: [], allow: [] };
  for (const acl of acls) {
    for (const direction of ["ingress", "egress"] as const) {
      acl[direction].forEach((r, i) => {
        if (r.state === "disabled") return;
        const fr: FirewallAclRule = { ...r, direction };
        delete (fr as { state?: string }).state;
        delete (fr as { description?: string }).description;
        if (r.state === "logged") fr.logName = `${network}-${direction}-${i}`;
        byAction[r.action]?.push(fr);
      });
    }
  }
  const def = (direction: Direction): FirewallAclRule => {
    const action = config[`security.acls.default.${direction}.action`] || "reject";
    const logged = ["true", "yes", "on", "1"].includes((config[`security.acls.default.${direction}.logged`] ?? "").toLowerCase());
    return { direction, action, ...(logged ? { logName: `${network}-${direction}` } : {}) };
  };
  return [...byAction.drop, ...byAction.reject, ...byAction.allow, def("egress"), def("ingress")];
}

function subjectMatch(field: "saddr" | "daddr", family: 4 | 6, list: string[]): { match?: string; partial: boolean } {
  const parts: string[] = [];
  let partial = false;
  for (const s of list) {
    const fam = familyOfIp(s) ?? familyOfCidr(s) ?? rangeFamily(s);
    if (fam === undefined) throw new Error(`Unsupported nftables subject "${s}"`);
    if (fam !== family) {
      partial = true;
      continue;
    }
    parts.push(s);
  }
  if (parts.length === 0) return { partial };
  return { match: `${family === 4 ? "ip" : "ip6"} ${field} {${parts.join(",")}}`, partial };
}

function ruleFor(bridge: string, family: 4 | 6, r: FirewallAclRule): { rule?: string; partial: boolean } {
  const args = [r.direction === "ingress" ? `oifname ${JSON.stringify(bridge)}` : `iifname ${JSON.stringify(bridge)}`];
  let partial = false;
  for (const [field, value] of [
    ["saddr", r.source],
    ["daddr", r.destination],
  ] as const) {
    if (!value) continue;
    const m = subjectMatch(field, family, splitTrim(value));
    if (!m.match) return { partial: true };
    partial ||= m.partial;
    args.push(m.match);
  }
  if (r.protocol === "tcp" || r.protocol === "udp") {
    args.push(`meta l4proto ${r.protocol}`);
    if (r.source_port) args.push(`th sport {${splitTrim(r.source_port).join(",")}}`);
    if (r.destination_port) args.push(`th dport {${splitTrim(r.destination_port).join(",")}}`);
  } else if (r.protocol === "icmp4" || r.protocol === "icmp6") {
    const [name, fam] = r.protocol === "icmp4" ? (["icmp", 4] as const) : (["icmpv6", 6] as const);
    args.push(fam === 4 ? "ip protocol icmp" : "ip6 nexthdr icmpv6");
    if (fam !== family) {
      if (r.source || r.destination) throw new Error(`Invalid use of "${r.protocol}" protocol with non-IPv${family} source/destination criteria`);
      return { partial: true };
    }
    if (r.icmp_type) {
      args.push(`${name} type ${r.icmp_type}`);
      if (r.icmp_code) args.push(`${name} code ${r.icmp_code}`);
    }
  }
  if (r.logName) args.push(`log prefix "${r.logName} "`);
  args.push(r.action === "allow" ? "accept" : r.action);
  return { rule: args.join(" "), partial };
}

/** NetworkApplyACLRules: one or two nft rules per ACL rule (IPv4 first, IPv6 for what remains). */
export function aclNftRules(bridge: string, rules: FirewallAclRule[]): string[] {
  const out: string[] = [];
  for (const r of rules) {
    const v4 = ruleFor(bridge, 4, r);
    if (v4.rule) out.push(v4.rule);
    if (v4.partial) {
      const v6 = ruleFor(bridge, 6, r);
      if (!v6.rule) throw new Error("Invalid empty rule generated");
      out.push(v6.rule);
    } else if (!v4.rule) throw new Error("Invalid empty rule generated");
  }
  return out;
}

