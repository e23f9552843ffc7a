// GET /1.0/network-acls/{name}/log as LXD 5.0.2 answers it (acl common.GetLog): whatever the
// networks using the ACL, the log is read from ovn-controller's log file on the host; without
// that file the answer is the error "Only OVN log entries may be retrieved at this time" (bridge
// ACLs log through nftables `log` to the kernel log, which 5.0.2 does not serve). With the
// file, its ACL entries for this ACL (OVN ACL names "lxd_acl<ID>-...") are returned one JSON
// object a line, sorted, as ovnParseLogEntry formats them.
import { existsSync, readFileSync } from "node:fs";

export const OVN_CONTROLLER_LOG = "/var/log/ovn/ovn-controller.log";

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Go's json.Marshal escapes <, > and & in strings. */
export const goJson = (v: unknown) => JSON.stringify(v).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");

/** ovnParseLogEntry: one ovn-controller line → LXD's JSON entry, or undefined. */
export function parseOvnLogEntry(line: string, prefix: string): string | undefined {
  const fields = line.split("|");
  if (fields.length !== 5 || !fields[2].startsWith("acl_log")) return undefined;
  const entry: Record<string, string> = {};
  for (const part of fields[4].split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const pair = part.split("=");
    if (pair.length !== 2) continue;
    entry[pair[0].replace(/^"+|"+$/g, "")] = pair[1].replace(/^"+|"+$/g, "");
  }
  if (!(entry.name ?? "").startsWith(prefix)) return undefined;
  if (!RFC3339.test(fields[0])) return undefined;
  const time = new Date(fields[0]);
  if (Number.isNaN(time.getTime())) return undefined;
  const severity = (entry.severity ?? "").split(" ");
  if (severity.length !== 2) return undefined;
  const src = entry.nw_src ?? entry.ipv6_src;
  const dst = entry.nw_dst ?? entry.ipv6_dst;
  if (src === undefined || dst === undefined) return undefined;
  const out: Record<string, string> = { time: time.toISOString().replace(/\.\d{3}Z$/, "Z"), proto: severity[1], src, dst };
  if (entry.tp_src) out.src_port = entry.tp_src;
  if (entry.tp_dst) out.dst_port = entry.tp_dst;
  if (entry.icmp_type) out.icmp_type = entry.icmp_type;
  if (entry.icmp_code) out.icmp_code = entry.icmp_code;
  out.action = entry.verdict ?? "";
  return goJson(out);
}

/** The log text for ACL `aclId` (empty when no entry matches), or LXD's error. */
export function ovnAclLog(aclId: number, path = OVN_CONTROLLER_LOG): string {
  if (!existsSync(path)) throw new Error("Only OVN log entries may be retrieved at this time");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`Couldn't open OVN log file: ${(e as Error).message}`);
  }
  const entries = text
    .split("\n")
    .map((l) => parseOvnLogEntry(l.replace(/\r$/, ""), `lxd_acl${aclId}-`))
    .filter((e): e is string => e !== undefined);
  if (entries.length === 0) return "";
  entries.sort();
  return `${entries.join("\n")}\n`;
}
