// A bridged NIC's MAC/IPv4/IPv6 filters (security.mac_filtering, security.ipvN_filtering), as
// LXD's nftablesInstanceBridgeFilter writes them: chains "in.<label>" and "fwd.<label>" in the
// shared "bridge lxd" table, where <label> is "<instance>.<device>" (project-prefixed outside
// the default project). NDP advertisements are matched by header offsets since nft has no
// "nd saddr": the target address at bit 384 of the network header, the source MAC at bit 528.
import { run } from "../../os/exec.js";
import { formatIp, parseCidr, type IpNet } from "../ipnet.js";

export interface BridgeFilterSpec {
  /** "<instance>.<device>", project-prefixed outside the default project. */
  label: string;
  hostName: string;
  hwaddr: string;
  /** undefined: the family is not filtered; []: everything of the family is dropped. */
  ipv4Nets?: string[];
  ipv6Nets?: string[];
}

const HOOK = (hook: string) => `type filter hook ${hook} priority -200; policy accept;`;

/** nft chain names: labels are instance and device names ([A-Za-z0-9_.-]). */
function label(text: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(text)) throw new Error(`Invalid bridge filter label "${text}"`);
  return text;
}

function iface(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new Error(`Invalid host interface name "${name}"`);
  return JSON.stringify(name);
}

function mac(hw: string): { text: string; hex: string } {
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(hw)) throw new Error(`Invalid MAC address "${hw}"`);
  return { text: hw.toLowerCase(), hex: `0x${hw.replace(/:/g, "").toLowerCase()}` };
}

/** The network's prefix bits as nft compares them at a header offset (LXD's subnetPrefixHex). */
function prefixHex(n: IpNet): string {
  const bits = BigInt(n.prefix);
  const value = n.ip >> (128n - bits);
  const digits = Math.ceil(n.prefix / 4);
  return `0x${value.toString(16).padStart(digits, "0")}`;
}

function net(text: string, family: 4 | 6): IpNet {
  const n = parseCidr(text);
  if (!n || n.family !== family) throw new Error(`Invalid IPv${family} network "${text}"`);
  return n;
}

/** The chain bodies (pure, unit-tested). */
export function bridgeFilterChains(spec: BridgeFilterSpec): { in: string[]; fwd: string[] } {
  const h = iface(spec.hostName);
  const m = mac(spec.hwaddr);
  const head = [`iifname ${h} ether saddr != ${m.text} drop`, `iifname ${h} ether type arp arp saddr ether != ${m.text} drop`, `iifname ${h} ether type ip6 icmpv6 type 136 @nh,528,48 != ${m.hex} drop`];
  const build = (input: boolean): string[] => {
    const rules = [...head];
    const v4 = spec.ipv4Nets;
    if (v4 && v4.length > 0) {
      if (input) rules.push(`iifname ${h} ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp dport 67 accept`);
      for (const n of v4) {
        const c = formatNet(net(n, 4));
        rules.push(`iifname ${h} ether type arp arp saddr ip ${c} accept`, `iifname ${h} ether type ip ip saddr ${c} accept`);
      }
    }
    if (v4) rules.push(`iifname ${h} ether type arp drop`, `iifname ${h} ether type ip drop`);
    const v6 = spec.ipv6Nets;
    if (v6 && v6.length > 0) {
      if (input) {
        rules.push(`iifname ${h} ether type ip6 ip6 saddr fe80::/10 ip6 daddr ff02::1:2 udp dport 547 accept`);
        rules.push(`iifname ${h} ether type ip6 ip6 saddr fe80::/10 ip6 daddr ff02::2 icmpv6 type 133 accept`);
      }
      rules.push(`iifname ${h} ether type ip6 icmpv6 type 134 drop`);
      for (const n of v6) {
        const p = net(n, 6);
        rules.push(`iifname ${h} ether type ip6 icmpv6 type 136 @nh,384,${p.prefix} ${prefixHex(p)} accept`, `iifname ${h} ether type ip6 ip6 saddr ${formatNet(p)} accept`);
      }
    }
    if (v6) rules.push(`iifname ${h} ether type ip6 drop`);
    if ((v4?.length ?? 0) + (v6?.length ?? 0) > 0) rules.push(`iifname ${h} ether type != { arp, ip, ip6 } drop`);
    return rules;
  };
  return { in: build(true), fwd: build(false) };
}

function formatNet(n: IpNet): string {
  const full = n.family === 4 ? 32 : 128;
  const base = formatIp(n.family, n.ip);
  return n.prefix === full ? base : `${base}/${n.prefix}`;
}

function clearLines(l: string): string[] {
  const lines = ["add table bridge lxd"];
  for (const [kind, hook] of [["in", "input"], ["fwd", "forward"]]) {
    lines.push(`add chain bridge lxd ${kind}.${l} { ${HOOK(hook)} }`, `flush chain bridge lxd ${kind}.${l}`, `delete chain bridge lxd ${kind}.${l}`);
  }
  return lines;
}

/** The nft script replacing the NIC's filter chains in one transaction (pure). */
export function bridgeFilterScript(spec: BridgeFilterSpec): string {
  const l = label(spec.label);
  const chains = bridgeFilterChains(spec);
  const lines = [...clearLines(l), "table bridge lxd {"];
  for (const [kind, hook] of [["in", "input"], ["fwd", "forward"]] as const) {
    lines.push(`\tchain ${kind}.${l} {`, `\t\t${HOOK(hook)}`, ...chains[kind].map((r) => `\t\t${r}`), "\t}");
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}

export async function applyBridgeFilter(spec: BridgeFilterSpec): Promise<void> {
  await run("nft", ["-f", "-"], { input: bridgeFilterScript(spec) });
}

export async function clearBridgeFilter(labelText: string): Promise<void> {
  await run("nft", ["-f", "-"], { input: clearLines(label(labelText)).join("\n") + "\n" });
}
