// IP address and subnet arithmetic over bigint, for both families. Pure functions only.
import { isIP } from "node:net";

export type Family = 4 | 6;

export interface IpNet {
  family: Family;
  /** The address as written (host bits kept). */
  ip: bigint;
  prefix: number;
}

const bits = (f: Family) => (f === 4 ? 32 : 128);

export function parseIp(text: string): { family: Family; ip: bigint } | undefined {
  const fam = isIP(text);
  if (fam === 4) {
    const p = text.split(".").map(Number);
    return { family: 4, ip: BigInt(((p[0] << 24) >>> 0) + (p[1] << 16) + (p[2] << 8) + p[3]) };
  }
  if (fam === 6) {
    let t = text.toLowerCase();
    // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
    if (v4) {
      const n = Number(parseIp(v4[1])!.ip);
      t = t.slice(0, -v4[1].length) + `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
    }
    const [head, tail] = t.includes("::") ? t.split("::") : [t, undefined];
    const h = head ? head.split(":") : [];
    const tl = tail !== undefined && tail !== "" ? tail.split(":") : [];
    const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - tl.length).fill("0"), ...tl];
    let v = 0n;
    for (const g of groups) v = (v << 16n) | BigInt(parseInt(g || "0", 16));
    return { family: 6, ip: v };
  }
  return undefined;
}

export function formatIp(family: Family, ip: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((ip >> s) & 0xffn)).join(".");
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((ip >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run (length >= 2) of zero groups, as Go and inet_ntop do.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

/** Parse "addr/prefix"; undefined when malformed. */
export function parseCidr(text: string): IpNet | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const a = parseIp(m[1]);
  const prefix = Number(m[2]);
  if (!a || prefix > bits(a.family)) return undefined;
  return { family: a.family, ip: a.ip, prefix };
}

export function mask(family: Family, prefix: number): bigint {
  const n = BigInt(bits(family));
  return ((1n << n) - 1n) ^ ((1n << (n - BigInt(prefix))) - 1n);
}

export function networkOf(n: IpNet): IpNet {
  return { family: n.family, ip: n.ip & mask(n.family, n.prefix), prefix: n.prefix };
}

export function formatCidr(n: IpNet): string {
  return `${formatIp(n.family, n.ip)}/${n.prefix}`;
}

export function contains(net: IpNet, family: Family, ip: bigint): boolean {
  return net.family === family && (ip & mask(family, net.prefix)) === (net.ip & mask(family, net.prefix));
}

export function overlaps(a: IpNet, b: IpNet): boolean {
  if (a.family !== b.family) return false;
  const p = Math.min(a.prefix, b.prefix);
  const m = mask(a.family, p);
  return (a.ip & m) === (b.ip & m);
}

/** The n-th address of a subnet; negative counts from the end (-1 = broadcast for IPv4). */
export function nthAddress(net: IpNet, n: number): bigint {
  const base = net.ip & mask(net.family, net.prefix);
  const size = 1n << BigInt(bits(net.family) - net.prefix);
  return n >= 0 ? base + BigInt(n) : base + size + BigInt(n);
}

/** Parse an "a-b" range of addresses; LXD's messages. */
export function parseRange(text: string): { family: Family; start: bigint; end: bigint } {
  const parts = text.split("-");
  if (parts.length !== 2) throw new Error("IP range must contain start and end IP addresses");
  const s = parseIp(parts[0].trim());
  const e = parseIp(parts[1].trim());
  if (!s) throw new Error(`Start IP "${parts[0]}" is invalid`);
  if (!e) throw new Error(`End IP "${parts[1]}" is invalid`);
  if (s.family !== e.family) throw new Error("Start and end IP must be of the same family");
  if (s.ip > e.ip) throw new Error(`Start IP "${parts[0]}" must be less than End IP "${parts[1]}"`);
  return { family: s.family, start: s.ip, end: e.ip };
}
