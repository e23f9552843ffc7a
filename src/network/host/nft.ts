// nftables, in LXD's layout: one shared "inet lxd" table, each managed network owning its
// chains named "<kind>.<network>" (in, out, fwd, pstrt, acl*, fwd* for address forwards), so
// `nft list chain inet lxd in.lxdbr0` reads as it does under LXD. A network's chains are
// replaced in one nft transaction and removed whole on stop.
import { run } from "../../os/exec.js";

export interface FirewallSpec {
  bridge: string;
  /** Subnets to masquerade when leaving through anything but the bridge. */
  nat4?: { subnet: string; address?: string };
  nat6?: { subnet: string; address?: string };
  /** Accept DHCP/DNS/core ICMP towards the host and forwarding (LXD's ipvX.firewall rules). */
  firewall4: boolean;
  firewall6: boolean;
  /** ACL rules (security.acls), already rendered by acls/rules.ts; undefined when none are set. */
  acl?: string[];
  /** Address forwards: DNAT rules (prerouting and output) and hairpin masquerade rules. */
  forwards?: { dnat: string[]; snat: string[] };
}

const FILTER = (hook: string) => `type filter hook ${hook} priority 0; policy accept;`;
/** Every chain a network may own, with its hook; base chains that jump to "acl" come before it. */
const CHAINS = {
  in: FILTER("input"),
  out: FILTER("output"),
  fwd: FILTER("forward"),
  pstrt: "type nat hook postrouting priority 100; policy accept;",
  aclin: FILTER("input"),
  aclout: FILTER("output"),
  aclfwd: FILTER("forward"),
  acl: "",
  fwdprert: "type nat hook prerouting priority -100; policy accept;",
  fwdout: "type nat hook output priority -100; policy accept;",
  fwdpstrt: "type nat hook postrouting priority 100; policy accept;",
} as const;
type ChainKind = keyof typeof CHAINS;

export const chainName = (kind: ChainKind, network: string) => `${kind}.${ident(network)}`;

/** Declares then deletes each chain of the network: succeeds whether or not they exist. */
function clearLines(network: string): string[] {
  const lines = ["add table inet lxd"];
  for (const [kind, hook] of Object.entries(CHAINS) as [ChainKind, string][]) {
    const c = chainName(kind, network);
    lines.push(hook ? `add chain inet lxd ${c} { ${hook} }` : `add chain inet lxd ${c}`, `flush chain inet lxd ${c}`);
  }
  for (const kind of Object.keys(CHAINS) as ChainKind[]) lines.push(`delete chain inet lxd ${chainName(kind, network)}`);
  // Tables of nodelxd versions before LXD's layout ("inet nodelxd-NAME") go too.
  lines.push(`table inet nodelxd-${ident(network)}`, `delete table inet nodelxd-${ident(network)}`);
  return lines;
}

/** The nft script replacing the network's chains (pure, unit-tested). */
export function firewallScript(network: string, spec: FirewallSpec): string {
  const br = JSON.stringify(spec.bridge);
  const lines = [...clearLines(network), "table inet lxd {"];
  const chain = (kind: ChainKind, rules: string[]) => {
    if (rules.length === 0) return;
    lines.push(`\tchain ${chainName(kind, network)} {`);
    if (CHAINS[kind]) lines.push(`\t\t${CHAINS[kind]}`);
    for (const r of rules) lines.push(`\t\t${r}`);
    lines.push("\t}");
  };
  const inRules: string[] = [];
  const outRules: string[] = [];
  const fwdRules: string[] = [];
  if (spec.firewall4 || spec.firewall6) {
    inRules.push(`iifname ${br} tcp dport 53 accept`, `iifname ${br} udp dport 53 accept`);
    outRules.push(`oifname ${br} tcp sport 53 accept`, `oifname ${br} udp sport 53 accept`);
  }
  if (spec.firewall4) {
    inRules.push(`iifname ${br} icmp type { 3, 11, 12 } accept`, `iifname ${br} udp dport 67 accept`);
    outRules.push(`oifname ${br} icmp type { 3, 11, 12 } accept`, `oifname ${br} udp sport 67 accept`);
    fwdRules.push(`ip version 4 oifname ${br} accept`, `ip version 4 iifname ${br} accept`);
  }
  if (spec.firewall6) {
    inRules.push(`iifname ${br} icmpv6 type { 1, 2, 3, 4, 133, 135, 136, 143 } accept`, `iifname ${br} udp dport 547 accept`);
    outRules.push(`oifname ${br} icmpv6 type { 1, 2, 3, 4, 128, 134, 135, 136, 143 } accept`, `oifname ${br} udp sport 547 accept`);
    fwdRules.push(`ip6 version 6 oifname ${br} accept`, `ip6 version 6 iifname ${br} accept`);
  }
  chain("in", inRules);
  chain("out", outRules);
  chain("fwd", fwdRules);
  const nat: string[] = [];
  for (const [fam, n] of [["ip", spec.nat4], ["ip6", spec.nat6]] as const) {
    if (!n) continue;
    const action = n.address ? `snat ${fam} to ${n.address}` : "masquerade";
    nat.push(`${fam} saddr ${n.subnet} ${fam} daddr != ${n.subnet} ${action}`);
  }
  chain("pstrt", nat);
  if (spec.acl) {
    const acl = aclChains(br, chainName("acl", network));
    chain("acl", ["ct state established,related accept", ...spec.acl]);
    chain("aclin", acl.in);
    chain("aclout", acl.out);
    chain("aclfwd", acl.fwd);
  }
  if (spec.forwards) {
    // Always declared when forwards exist (even empty), as LXD does.
    for (const [kind, rules] of [["fwdprert", spec.forwards.dnat], ["fwdout", spec.forwards.dnat], ["fwdpstrt", spec.forwards.snat]] as const) {
      lines.push(`\tchain ${chainName(kind, network)} {`, `\t\t${CHAINS[kind]}`, ...rules.map((r) => `\t\t${r}`), "\t}");
    }
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}

/**
 * LXD's bridge ACL chains (nftablesNetACLSetup/nftablesNetACLRules): traffic between the bridge
 * and the host or beyond goes through the network's "acl" chain; DHCP, DNS and core ICMP to and
 * from the host stay open.
 */
function aclChains(br: string, acl: string): { in: string[]; out: string[]; fwd: string[] } {
  return {
    in: [
      `iifname ${br} tcp dport 53 accept`,
      `iifname ${br} udp dport 53 accept`,
      `iifname ${br} udp dport 67 accept`,
      `iifname ${br} udp dport 547 accept`,
      `iifname ${br} icmp type { 3, 11, 12 } accept`,
      `iifname ${br} icmpv6 type { 1, 2, 3, 4, 133, 135, 136, 143 } accept`,
      `iifname ${br} jump ${acl}`,
    ],
    out: [
      `oifname ${br} udp sport 67 accept`,
      `oifname ${br} udp sport 547 accept`,
      `oifname ${br} icmp type { 3, 11, 12 } accept`,
      `oifname ${br} icmpv6 type { 1, 2, 3, 4, 128, 134, 135, 136, 143 } accept`,
      `oifname ${br} jump ${acl}`,
    ],
    fwd: [`iifname ${br} jump ${acl}`, `oifname ${br} jump ${acl}`],
  };
}

/** Network names become chain-name parts; they only hold [A-Za-z0-9_.-] (nft identifiers). */
function ident(name: string): string {
  if (!/^[a-zA-Z][a-zA-Z0-9_.-]*$/.test(name)) throw new Error(`Invalid nftables chain name part "${name}"`);
  return name;
}

export async function applyFirewall(network: string, spec: FirewallSpec): Promise<void> {
  await run("nft", ["-f", "-"], { input: firewallScript(network, spec) });
}

export async function removeFirewall(network: string): Promise<void> {
  await run("nft", ["-f", "-"], { input: clearLines(network).join("\n") + "\n" });
}
