// Static DHCP allocation for a NIC with IP filtering and no fixed address (LXD's dhcpalloc):
// keep what the NIC's static host file or a lease of its MAC already holds, else the first free
// address of the DHCP ranges (IPv6: the SLAAC address when free and the network is stateless).
// Pure: the caller reads the network's static host files and leases and writes the result.
import { contains, formatIp, nthAddress, parseCidr, parseIp, parseRange, type Family, type IpNet } from "./ipnet.js";

export interface Allocation {
  /** The static host file (entry) the address belongs to, when it is a static allocation. */
  entry?: string;
  hwaddr?: string;
  address: string;
}

export interface AllocRequest {
  family: Family;
  /** The network's config (ipvN.address, ipvN.dhcp, ipvN.dhcp.ranges, ipv6.dhcp.stateful). */
  network: Record<string, string>;
  /** Every address in use: static host files and leases. */
  used: Allocation[];
  /** This NIC's static host file name and MAC. */
  entry: string;
  hwaddr: string;
  /** What the NIC's own static host file holds now. */
  current?: string;
}

export class DhcpNotSupported extends Error {
  constructor() {
    super("DHCP not supported");
  }
}

/** The subnet DHCP serves, or undefined when the network hands out no addresses of this family. */
function dhcpSubnet(family: Family, cfg: Record<string, string>): IpNet | undefined {
  const addr = cfg[`ipv${family}.address`];
  if (!addr || addr === "none" || addr === "auto") return undefined;
  if (cfg[`ipv${family}.dhcp`] === "false") return undefined;
  return parseCidr(addr);
}

function ranges(family: Family, cfg: Record<string, string>): { start: bigint; end: bigint }[] {
  const text = cfg[`ipv${family}.dhcp.ranges`];
  if (!text) return [];
  return text.split(",").map((r) => parseRange(r.trim())).filter((r) => r.family === family);
}

function valid(subnet: IpNet, rs: { start: bigint; end: bigint }[], ip: bigint): boolean {
  if (!contains(subnet, subnet.family, ip)) return false;
  return rs.length === 0 || rs.some((r) => ip >= r.start && ip <= r.end);
}

/** The EUI-64 (SLAAC) address of a MAC in a /64. */
export function eui64(prefix: IpNet, hwaddr: string): bigint {
  const b = hwaddr.split(":").map((x) => parseInt(x, 16));
  if (b.length !== 6 || b.some((x) => Number.isNaN(x))) throw new Error(`Invalid MAC address "${hwaddr}"`);
  const id = [b[0] ^ 0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]].reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
  const net = prefix.ip & ~((1n << 64n) - 1n);
  return net | id;
}

export function allocate(req: AllocRequest): string {
  const { family, network: cfg } = req;
  const subnet = dhcpSubnet(family, cfg);
  if (!subnet) throw new DhcpNotSupported();
  const rs = ranges(family, cfg);
  const cur = req.current ? parseIp(req.current) : undefined;
  if (cur && cur.family === family && valid(subnet, rs, cur.ip)) return req.current!;

  const gateway = subnet.ip;
  const used = new Set<bigint>();
  for (const u of req.used) {
    const p = parseIp(u.address);
    if (!p || p.family !== family) continue;
    // Keep the NIC's own earlier allocation (its static file, or for IPv4 a lease of its MAC).
    const mine = u.entry === req.entry || (family === 4 && u.hwaddr !== undefined && u.hwaddr.toLowerCase() === req.hwaddr.toLowerCase());
    if (mine && valid(subnet, rs, p.ip)) return formatIp(family, p.ip);
    used.add(p.ip);
  }

  if (family === 6 && (cfg["ipv6.dhcp.stateful"] !== "true" || !cfg["ipv6.dhcp.ranges"])) {
    const slaac = eui64(subnet, req.hwaddr);
    if (!used.has(slaac) && slaac !== gateway) return formatIp(6, slaac);
  }

  const candidates = rs.length > 0 ? rs : [{ start: nthAddress(subnet, 1), end: nthAddress(subnet, family === 4 ? -2 : -1) }];
  for (const r of candidates) {
    // As LXD: the range's last address is never handed out.
    for (let ip = r.start; ip < r.end; ip++) {
      if (ip === gateway || used.has(ip)) continue;
      return formatIp(family, ip);
    }
  }
  throw new Error("No available IP could not be found");
}
