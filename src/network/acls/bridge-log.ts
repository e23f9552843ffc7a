// ACL log entries of bridge networks. A bridge's logged ACL rules carry nftables
// `log prefix "<network>-<direction>-<index> "` (as LXD 5.0.2 writes them), so the packets they
// matched are in the kernel log. 5.0.2 serves only OVN's log; for an ACL used by bridges and no
// OVN log on the host, these kernel entries are answered in the same JSON-lines form instead of
// its "Only OVN log entries" error.
import type { KernelRecord } from "../../os/kmsg.js";
import { goJson } from "./ovn-log.js";
import type { AclRule, Direction } from "./rules.js";


const PROTOS: Record<string, string> = { TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPv6: "icmp6" };
const RULE_PROTOS: Record<string, string> = { tcp: "tcp", udp: "udp", icmp4: "icmp", icmp6: "icmp6" };

export interface LoggedRule {
  prefix: string;
  rule: AclRule;
}

/** The log prefixes of `acl`'s logged rules on each bridge that names it. */
export function loggedRules(networks: string[], acl: Record<Direction, AclRule[]>): LoggedRule[] {
  const out: LoggedRule[] = [];
  for (const net of networks) {
    for (const direction of ["ingress", "egress"] as const) {
      acl[direction].forEach((rule, i) => {
        if (rule.state === "logged") out.push({ prefix: `${net}-${direction}-${i} `, rule });
      });
    }
  }
  return out;
}

/** KEY=value fields of a netfilter log line (flags without "=" are left out). */
function fields(message: string): Record<string, string> {
  const f: Record<string, string> = {};
  for (const word of message.split(" ")) {
    const eq = word.indexOf("=");
    if (eq > 0 && !(word.slice(0, eq) in f)) f[word.slice(0, eq)] = word.slice(eq + 1);
  }
  return f;
}

function portIn(list: string | undefined, port: string | undefined): boolean {
  if (!list) return true;
  if (port === undefined) return false;
  const p = Number(port);
  return list.split(",").some((part) => {
    const [lo, hi] = part.trim().split("-").map(Number);
    return hi === undefined ? p === lo : p >= lo && p <= hi;
  });
}

/**
 * Two ACLs on one bridge can share a prefix (the index is per ACL), so an entry is kept only if
 * the packet fits the rule's protocol, ports and ICMP type/code.
 */
function fits(rule: AclRule, f: Record<string, string>, proto: string): boolean {
  if (rule.protocol && RULE_PROTOS[rule.protocol] !== proto) return false;
  if (!portIn(rule.destination_port, f.DPT) || !portIn(rule.source_port, f.SPT)) return false;
  if (rule.icmp_type && rule.icmp_type !== f.TYPE) return false;
  if (rule.icmp_code && rule.icmp_code !== f.CODE) return false;
  return true;
}

/** The entries of `records` for `rules`, one JSON object a line, sorted (as the OVN log's). */
export function bridgeAclLog(rules: LoggedRule[], records: KernelRecord[]): string {
  const entries: string[] = [];
  for (const rec of records) {
    const f = fields(rec.message);
    const proto = PROTOS[f.PROTO] ?? (f.PROTO ?? "").toLowerCase();
    const match = rules.find((r) => rec.message.startsWith(r.prefix) && fits(r.rule, f, proto));
    if (!match) continue;
    const entry: Record<string, string> = { time: rec.time.toISOString().replace(/\.\d{3}Z$/, "Z"), proto, src: f.SRC ?? "", dst: f.DST ?? "" };
    if (f.SPT) entry.src_port = f.SPT;
    if (f.DPT) entry.dst_port = f.DPT;
    if (proto.startsWith("icmp") && f.TYPE) entry.icmp_type = f.TYPE;
    if (proto.startsWith("icmp") && f.CODE) entry.icmp_code = f.CODE;
    entry.action = match.rule.action;
    entries.push(goJson(entry));
  }
  if (entries.length === 0) return "";
  entries.sort();
  return `${entries.join("\n")}\n`;
}

