// Network address forwards: LXD 5.0.2's normalisation and validation (shared/api/network_forward.go,
// lxd/network/driver_common.go forwardValidate) and the DNAT/hairpin-SNAT rules a bridge gets
// (lxd/firewall/drivers/drivers_nftables.go NetworkApplyForwards). Pure.
import { contains, formatIp, parseCidr, parseIp } from "../ipnet.js";

export interface ForwardPort {
  description: string;
  protocol: string;
  listen_port: string;
  target_port: string;
  target_address: string;
}

export interface ForwardPut {
  description: string;
  config: Record<string, string>;
  ports: ForwardPort[];
}

const splitTrim = (v: string) => v.split(",").map((s) => s.trim());
const canonicalIp = (v: string): string => {
  const p = parseIp(v);
  return p ? formatIp(p.family, p.ip) : v;
};

/** The request in canonical form (NetworkForwardPut.Normalise). */
export function normaliseForward(put: ForwardPut): ForwardPut {
  const config = { ...put.config };
  if (config.target_address !== undefined) config.target_address = canonicalIp(config.target_address);
  return {
    description: put.description.trim(),
    config,
    ports: put.ports.map((p) => ({
      description: p.description.trim(),
      protocol: p.protocol.trim(),
      listen_port: splitTrim(p.listen_port).join(","),
      target_port: splitTrim(p.target_port).join(","),
      target_address: canonicalIp(p.target_address.trim()),
    })),
  };
}

/** ParseIPToNet's address, canonical; throws LXD's message for anything else. */
export function parseListenAddress(v: string): { family: 4 | 6; ip: bigint; text: string } {
  const p = parseIp(v);
  if (!p) throw new Error(`Failed parsing address forward listen address "${v}": invalid CIDR address: ${v}/${v.includes(":") ? 128 : 32}`);
  return { ...p, text: formatIp(p.family, p.ip) };
}

/** ParsePortRange: first port and count. */
function portRange(r: string): [number, number] {
  const e = r.split("-");
  if (e.length > 2) throw new Error(`Invalid port range "${r}"`);
  const num = (s: string) => {
    if (!/^[+-]?[0-9]+$/.test(s)) throw new Error(`strconv.ParseInt: parsing "${s}": invalid syntax`);
    return Number(s);
  };
  const base = num(e[0]);
  if (e.length === 1) return [base, 1];
  const end = num(e[1]);
  if (end <= base) throw new Error("End port should be higher than start port");
  return [base, end - base + 1];
}

export interface PortMap {
  protocol: string;
  listenPorts: number[];
  targetAddress: string;
  targetPorts: number[];
}

/**
 * forwardValidate: throws LXD's message; returns the expanded port maps. `subnets` are the
 * network's ipv4.address/ipv6.address (targets must lie inside the one of the listen family).
 */
export function validateForward(listen: { family: 4 | 6 }, put: ForwardPut, subnets: { 4?: string; 6?: string }): PortMap[] {
  const subnetText = subnets[listen.family];
  const subnet = subnetText ? parseCidr(subnetText) : undefined;
  for (const k of Object.keys(put.config)) if (k !== "target_address" && !k.startsWith("user.")) throw new Error(`Invalid option "${k}"`);
  const defText = put.config.target_address ?? "";
  const def = defText ? parseIp(defText) : undefined;
  if (defText) {
    if (!def) throw new Error("Invalid default target address");
    if (def.family !== listen.family) throw new Error("Cannot mix IP versions in listen address and default target address");
    if (subnet && !contains(subnet, def.family, def.ip)) throw new Error("Default target address is not within the network subnet");
  }
  const used: Record<string, Set<number>> = { tcp: new Set(), udp: new Set() };
  return put.ports.map((spec, i) => {
    if (!["tcp", "udp"].includes(spec.protocol)) throw new Error(`Invalid port protocol in port specification ${i}, protocol must be one of: tcp, udp`);
    const target = parseIp(spec.target_address);
    if (!target) throw new Error(`Invalid target address in port specification ${i}`);
    if (def && target.family === def.family && target.ip === def.ip) throw new Error(`Target address is same as default target address in port specification ${i}`);
    if (target.family !== listen.family) throw new Error(`Cannot mix IP versions in listen address and port specification ${i} target address`);
    if (subnet && !contains(subnet, target.family, target.ip)) throw new Error(`Target address is not within the network subnet in port specification ${i}`);
    const listenRanges = splitTrim(spec.listen_port).filter((s) => s !== "");
    if (listenRanges.length === 0) throw new Error(`Missing listen port in port specification ${i}`);
    const listenPorts: number[] = [];
    for (const pr of listenRanges) {
      let first: number;
      let count: number;
      try {
        [first, count] = portRange(pr);
      } catch (e) {
        throw new Error(`Invalid listen port in port specification ${i}: ${(e as Error).message}`);
      }
      for (let p = first; p < first + count; p++) {
        if (used[spec.protocol].has(p)) throw new Error(`Duplicate listen port ${p} for protocol "${spec.protocol}" in port specification ${i}`);
        used[spec.protocol].add(p);
        listenPorts.push(p);
      }
    }
    const targetPorts: number[] = [];
    for (const pr of splitTrim(spec.target_port).filter((s) => s !== "")) {
      let first: number;
      let count: number;
      try {
        [first, count] = portRange(pr);
      } catch {
        throw new Error(`Invalid target port in port specification ${i}`);
      }
      for (let p = first; p < first + count; p++) targetPorts.push(p);
    }
    if (targetPorts.length > 0 && targetPorts.length !== 1 && targetPorts.length !== listenPorts.length)
      throw new Error(`Mismatch of listen port(s) and target port(s) count in port specification ${i}`);
    // nft accepts 0-65535 only; LXD fails when applying, we refuse up front.
    for (const p of [...listenPorts, ...targetPorts]) if (p < 0 || p > 65535) throw new Error(`Out of port number range (0-65535) "${p}"`);
    return { protocol: spec.protocol, listenPorts, targetAddress: formatIp(target.family, target.ip), targetPorts };
  });
}

/** DNAT rules (for the prerouting and output chains) and hairpin SNAT rules, in LXD's order. */
export function forwardNftRules(forwards: { listen: string; family: 4 | 6; defaultTarget?: string; ports: PortMap[] }[]): { dnat: string[]; snat: string[] } {
  const dnat: string[] = [];
  const snat: string[] = [];
  // Port-specific rules first, then default targets, so the specific ones match first.
  for (const f of forwards) {
    const fam = f.family === 4 ? "ip" : "ip6";
    for (const m of f.ports) {
      m.listenPorts.forEach((lp, i) => {
        const tp = m.targetPorts.length === 0 ? lp : m.targetPorts.length === 1 ? m.targetPorts[0] : m.targetPorts[i];
        const dest = fam === "ip6" ? `[${m.targetAddress}]:${tp}` : `${m.targetAddress}:${tp}`;
        dnat.push(`${fam} daddr ${f.listen} ${m.protocol} dport ${lp} dnat to ${dest}`);
        if (i === 0 || m.targetPorts.length !== 1) snat.push(`${fam} saddr ${m.targetAddress} ${fam} daddr ${m.targetAddress} ${m.protocol} dport ${tp} masquerade`);
      });
    }
  }
  for (const f of forwards) {
    if (!f.defaultTarget) continue;
    const fam = f.family === 4 ? "ip" : "ip6";
    dnat.push(`${fam} daddr ${f.listen} dnat to ${fam === "ip6" ? `[${f.defaultTarget}]` : f.defaultTarget}`);
    snat.push(`${fam} saddr ${f.defaultTarget} ${fam} daddr ${f.defaultTarget} masquerade`);
  }
  return { dnat, snat };
}
