// Choosing subnets from local facts only (routes, addresses, other networks) — never by
// probing the network — and the fan overlay address math. Pure functions, unit-tested.
import { formatCidr, formatIp, networkOf, nthAddress, overlaps, parseCidr, type Family, type IpNet } from "./ipnet.js";

export interface LocalFacts {
  /** Route destinations in CIDR form, e.g. "192.0.2.0/24", "default" or "0.0.0.0/0" (ignored). */
  routes: string[];
  /** Addresses configured on host interfaces, e.g. "192.0.2.2/24". */
  addresses: string[];
  /** Subnets of other managed networks (their ipv4.address / ipv6.address values). */
  networks: string[];
}

/** Subnets that must never be chosen regardless of the host's state (the uplink under test). */
export const RESERVED_V4 = ["192.0.2.0/24"];

function used(facts: LocalFacts, family: Family): IpNet[] {
  const out: IpNet[] = [];
  for (const text of [...facts.routes, ...facts.addresses, ...facts.networks, ...(family === 4 ? RESERVED_V4 : [])]) {
    const n = parseCidr(text);
    // A default route covers everything and says nothing about what is in use.
    if (!n || n.family !== family || n.prefix === 0) continue;
    out.push(networkOf(n));
  }
  return out;
}

export function isSubnetFree(candidate: string, facts: LocalFacts): boolean {
  const c = parseCidr(candidate);
  if (!c) return false;
  return !used(facts, c.family).some((u) => overlaps(u, c));
}

/**
 * A free IPv4 /24 in 10.0.0.0/8 as "10.A.B.1/24", LXD style: random candidates first, then
 * an ordered scan so a nearly full host still gets an answer. Throws LXD's message if none.
 */
export function chooseIPv4Subnet(facts: LocalFacts, random: () => number = Math.random): string {
  const taken = used(facts, 4);
  const free = (a: number, b: number) => {
    const c: IpNet = { family: 4, ip: BigInt((10 << 24) + (a << 16) + (b << 8)), prefix: 24 };
    return !taken.some((u) => overlaps(u, c));
  };
  for (let i = 0; i < 100; i++) {
    const a = Math.floor(random() * 255);
    const b = Math.floor(random() * 255);
    if (free(a, b)) return `10.${a}.${b}.1/24`;
  }
  for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) if (free(a, b)) return `10.${a}.${b}.1/24`;
  throw new Error("Failed to automatically find an unused IPv4 subnet, manual configuration required");
}

/** A free ULA /64 as "fd42:XXXX:XXXX:XXXX::1/64". */
export function chooseIPv6Subnet(facts: LocalFacts, random: () => number = Math.random): string {
  const taken = used(facts, 6);
  for (let i = 0; i < 100; i++) {
    const groups = [0, 1, 2].map(() => Math.floor(random() * 0x10000));
    const prefix = (0xfd42n << 112n) | (BigInt(groups[0]) << 96n) | (BigInt(groups[1]) << 80n) | (BigInt(groups[2]) << 64n);
    const c: IpNet = { family: 6, ip: prefix, prefix: 64 };
    if (!taken.some((u) => overlaps(u, c))) return `${formatIp(6, prefix + 1n)}/64`;
  }
  throw new Error("Failed to automatically find an unused IPv6 subnet, manual configuration required");
}

/**
 * The fan bridge address for this host (LXD's fanAddress): the overlay's leading octet(s)
 * followed by the host-specific octets of the underlay address, ending in .1.
 */
export function fanAddress(underlay: string, overlay: string, hostAddress: string): { cidr: string; address: string } {
  const u = parseCidr(underlay);
  const o = parseCidr(overlay);
  if (!u || u.family !== 4) throw new Error(`Invalid underlay subnet "${underlay}"`);
  if (!o || o.family !== 4) throw new Error(`Invalid overlay subnet "${overlay}"`);
  if (u.prefix !== 16 && u.prefix !== 24) throw new Error("Only /16 or /24 underlays are supported at this time");
  if (o.prefix !== 8 && o.prefix !== 16) throw new Error("Only /8 or /16 overlays are supported at this time");
  if (o.prefix + (32 - u.prefix) + 8 > 32) throw new Error("Underlay or overlay networks too large to accommodate the FAN");
  const host = parseCidr(`${hostAddress}/32`);
  if (!host || host.family !== 4 || !overlaps({ ...u }, host)) throw new Error(`Address "${hostAddress}" is not in the underlay subnet "${underlay}"`);
  const h = [24n, 16n, 8n, 0n].map((s) => Number((host.ip >> s) & 0xffn));
  const ov = [24n, 16n].map((s) => Number((o.ip >> s) & 0xffn));
  const out = [ov[0], 0, 0, 1];
  if (o.prefix === 16) {
    out[1] = ov[1];
    out[2] = h[3];
  } else if (u.prefix === 24) {
    out[1] = h[3];
    out[2] = 0;
  } else {
    out[1] = h[2];
    out[2] = h[3];
  }
  const address = out.join(".");
  return { address, cidr: `${address}/${o.prefix}` };
}

/** The VXLAN id LXD derives from the overlay: its network address shifted right by 8. */
export function fanVxlanId(overlay: string): number {
  const o = parseCidr(overlay);
  if (!o || o.family !== 4) throw new Error(`Invalid overlay subnet "${overlay}"`);
  return Number(networkOf(o).ip >> 8n);
}

/** The fan host subnet (the /24 the bridge serves DHCP from): address/24's network. */
export function fanHostRange(address: string): { first: string; last: string } {
  const n = networkOf(parseCidr(`${address}/24`)!);
  return { first: formatIp(4, nthAddress(n, 2)), last: formatIp(4, nthAddress(n, -2)) };
}

/** The subnet of the interface carrying the default route, for fan.underlay_subnet=auto. */
export function defaultUnderlay(defaultDev: string | undefined, addresses: { dev: string; cidr: string }[]): string {
  if (!defaultDev) throw new Error("Unable to find default gateway");
  const v4 = addresses.filter((a) => a.dev === defaultDev && parseCidr(a.cidr)?.family === 4);
  if (v4.length !== 1) throw new Error("More than one IPv4 address on the default gateway interface or none");
  return formatCidr(networkOf(parseCidr(v4[0].cidr)!));
}
