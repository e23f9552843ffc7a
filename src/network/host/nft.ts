// nftables: one table per managed network ("inet nodelxd-NAME"), replaced atomically with
// an nft script and removed whole on stop, so nothing of ours lingers in shared tables.
import { run } from "../../os/exec.js";

export const tableName = (network: string) => `nodelxd-${network}`;

export interface FirewallSpec {
  bridge: string;
  /** Subnets to masquerade when leaving through anything but the bridge. */
  nat4?: { subnet: string; address?: string };
  nat6?: { subnet: string; address?: string };
  /** Accept DHCP/DNS towards the host and forwarding (LXD's ipvX.firewall rules). */
  firewall4: boolean;
  firewall6: boolean;
  /** ACL rules (security.acls), already rendered by acls/rules.ts; undefined when none are set. */
  acl?: string[];
  /** Address forwards: DNAT rules (prerouting and output) and hairpin masquerade rules. */
  forwards?: { dnat: string[]; snat: string[] };
}

/** The nft script defining the network's table (pure, unit-tested). */
export function firewallScript(network: string, spec: FirewallSpec): string {
  const t = `inet ${q(tableName(network))}`;
  const br = JSON.stringify(spec.bridge);
  const lines: string[] = [`table ${t}`, `delete table ${t}`, `table ${t} {`];
  const inRules: string[] = [];
  const outRules: string[] = [];
  const fwdRules: string[] = [];
  if (spec.firewall4) {
    inRules.push(`iifname ${br} tcp dport 53 accept`, `iifname ${br} udp dport 53 accept`, `iifname ${br} udp dport 67 accept`);
    outRules.push(`oifname ${br} tcp sport 53 accept`, `oifname ${br} udp sport 53 accept`, `oifname ${br} udp sport 67 accept`);
    fwdRules.push(`meta nfproto ipv4 oifname ${br} accept`, `meta nfproto ipv4 iifname ${br} accept`);
  }
  if (spec.firewall6) {
    inRules.push(`iifname ${br} udp dport 547 accept`, `iifname ${br} icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept`);
    outRules.push(`oifname ${br} udp sport 547 accept`, `oifname ${br} icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept`);
    fwdRules.push(`meta nfproto ipv6 oifname ${br} accept`, `meta nfproto ipv6 iifname ${br} accept`);
  }
  const chain = (name: string, hook: string, prio: string, rules: string[]) => {
    if (rules.length === 0) return;
    lines.push(`  chain ${name} {`, `    type ${hook === "postrouting" ? "nat" : "filter"} hook ${hook} priority ${prio}; policy accept;`);
    for (const r of rules) lines.push(`    ${r}`);
    lines.push("  }");
  };
  chain("lxd_in", "input", "filter", inRules);
  chain("lxd_out", "output", "filter", outRules);
  chain("lxd_fwd", "forward", "filter", fwdRules);
  const nat: string[] = [];
  for (const [fam, n] of [["ip", spec.nat4], ["ip6", spec.nat6]] as const) {
    if (!n) continue;
    const action = n.address ? `snat ${fam} to ${n.address}` : "masquerade";
    nat.push(`${fam} saddr ${n.subnet} ${fam} daddr != ${n.subnet} ${action}`);
  }
  chain("lxd_pstrt", "postrouting", "srcnat", nat);
  if (spec.acl) lines.push(...aclChains(br, spec.acl));
  if (spec.forwards) {
    const natChain = (name: string, hook: string, prio: string, rules: string[]) =>
      lines.push(`  chain ${name} {`, `    type nat hook ${hook} priority ${prio}; policy accept;`, ...rules.map((r) => `    ${r}`), "  }");
    natChain("fwdprert", "prerouting", "dstnat", spec.forwards.dnat);
    natChain("fwdout", "output", "-100", spec.forwards.dnat);
    natChain("fwdpstrt", "postrouting", "srcnat", spec.forwards.snat);
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}

/**
 * LXD's bridge ACL chains (nftablesNetACLSetup/nftablesNetACLRules): traffic between the bridge
 * and the host or beyond goes through "acl"; DHCP, DNS and core ICMP to and from the host stay open.
 */
function aclChains(br: string, rules: string[]): string[] {
  return [
    "  chain acl {",
    "    ct state established,related accept",
    ...rules.map((r) => `    ${r}`),
    "  }",
    "  chain aclin {",
    "    type filter hook input priority filter; policy accept;",
    `    iifname ${br} tcp dport 53 accept`,
    `    iifname ${br} udp dport 53 accept`,
    `    iifname ${br} udp dport 67 accept`,
    `    iifname ${br} udp dport 547 accept`,
    `    iifname ${br} icmp type { 3, 11, 12 } accept`,
    `    iifname ${br} icmpv6 type { 1, 2, 3, 4, 133, 135, 136, 143 } accept`,
    `    iifname ${br} jump acl`,
    "  }",
    "  chain aclout {",
    "    type filter hook output priority filter; policy accept;",
    `    oifname ${br} udp sport 67 accept`,
    `    oifname ${br} udp sport 547 accept`,
    `    oifname ${br} icmp type { 3, 11, 12 } accept`,
    `    oifname ${br} icmpv6 type { 1, 2, 3, 4, 128, 134, 135, 136, 143 } accept`,
    `    oifname ${br} jump acl`,
    "  }",
    "  chain aclfwd {",
    "    type filter hook forward priority filter; policy accept;",
    `    iifname ${br} jump acl`,
    `    oifname ${br} jump acl`,
    "  }",
  ];
}

/** Table names are unquoted identifiers in nft 1.0; network names only hold [A-Za-z0-9_.-]. */
function q(name: string): string {
  if (!/^[a-zA-Z][a-zA-Z0-9_.-]*$/.test(name)) throw new Error(`Invalid nftables table name "${name}"`);
  return name;
}

export async function applyFirewall(network: string, spec: FirewallSpec): Promise<void> {
  await run("nft", ["-f", "-"], { input: firewallScript(network, spec) });
}

export async function removeFirewall(network: string): Promise<void> {
  const t = `inet ${q(tableName(network))}`;
  // Declaring then deleting succeeds whether or not the table exists.
  await run("nft", ["-f", "-"], { input: `table ${t}\ndelete table ${t}\n` });
}

/** Names of the nodelxd tables present (for start-up cleanup and tests). */
export async function listTables(): Promise<string[]> {
  const out = await run("nft", ["-j", "list", "tables"]);
  const doc = JSON.parse(out.stdout) as { nftables: { table?: { family: string; name: string } }[] };
  return doc.nftables.flatMap((e) => (e.table && e.table.family === "inet" && e.table.name.startsWith("nodelxd-") ? [e.table.name] : []));
}
