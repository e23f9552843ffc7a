// Network zones: LXD 5.0.2's validation (lxd/network/zone/) and zone content as DNS records
// (the zone template: SOA, NS, instance records, extra records, SOA again). Pure.
import { isIP } from "node:net";
import { formatIp, parseIp } from "../ipnet.js";

export interface ZoneRecordEntry {
  type: string;
  ttl?: number;
  value: string;
}

/** A resource record as the DNS wire library encodes it. */
export interface ZoneRR {
  name: string;
  type: string;
  ttl: number;
  class: "IN";
  data: unknown;
}

export function zoneNameError(name: string): string | undefined {
  if (name === "") return "Name is required";
  if (name.startsWith("/")) return 'Name cannot start with "/"';
  return undefined;
}

/** validateConfig: dns.nameservers, network.nat, peers.NAME.address|key, user.*. */
export function validateZoneConfig(config: Record<string, string>): void {
  for (const [k, v] of Object.entries(config)) {
    if (k.startsWith("user.")) continue;
    if (k === "dns.nameservers") continue;
    if (k === "network.nat") {
      if (v !== "" && !["true", "false", "yes", "no", "on", "off", "1", "0"].includes(v.toLowerCase()))
        throw new Error(`Invalid value for config option "${k}": Invalid value for a boolean "${v}"`);
      continue;
    }
    if (k.startsWith("peers.")) {
      const fields = k.split(".");
      if (fields.length !== 3) throw new Error(`Invalid network zone configuration key "${k}"`);
      if (fields[2] === "address") {
        if (v !== "" && !isIP(v)) throw new Error(`Invalid value for config option "${k}": Not an IP address "${v}"`);
        continue;
      }
      if (fields[2] === "key") continue;
    }
    throw new Error(`Invalid config option "${k}"`);
  }
}

const fqdn = (n: string) => (n.endsWith(".") ? n.slice(0, -1) : n);
const isDomain = (n: string) => /^([A-Za-z0-9_*]([A-Za-z0-9_-]*[A-Za-z0-9_])?\.?)+$|^\.$/.test(n) && n.length <= 255;
const uint = (v: string, max: number) => /^[0-9]+$/.test(v) && Number(v) <= max;

/** The wire data of one record entry, or LXD's "Bad zone record entry" reason. */
export function entryData(type: string, value: string): unknown {
  const fields = value.trim().split(/\s+/);
  const bad = (why: string): never => {
    throw new Error(`Bad zone record entry: dns: ${why}: "${value}"`);
  };
  switch (type.toUpperCase()) {
    case "A":
      if (isIP(value) !== 4) bad("bad A A");
      return value;
    case "AAAA":
      if (isIP(value) !== 6) bad("bad AAAA AAAA");
      return formatIp(6, parseIp(value)!.ip);
    case "CNAME":
    case "NS":
    case "PTR":
    case "DNAME":
      if (fields.length !== 1 || !isDomain(fields[0])) bad(`bad ${type.toUpperCase()} ${type.toUpperCase()}`);
      return fqdn(fields[0]);
    case "MX":
      if (fields.length !== 2 || !uint(fields[0], 65535) || !isDomain(fields[1])) bad("bad MX Pref");
      return { preference: Number(fields[0]), exchange: fqdn(fields[1]) };
    case "SRV":
      if (fields.length !== 4 || !uint(fields[0], 65535) || !uint(fields[1], 65535) || !uint(fields[2], 65535) || !isDomain(fields[3])) bad("bad SRV Priority");
      return { priority: Number(fields[0]), weight: Number(fields[1]), port: Number(fields[2]), target: fqdn(fields[3]) };
    case "TXT": {
      const parts = [...value.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] ?? m[2]).replace(/\\(.)/g, "$1"));
      if (parts.length === 0) bad("bad TXT Txt");
      return parts;
    }
    case "CAA":
      if (fields.length < 3 || !uint(fields[0], 255) || !/^[a-zA-Z0-9]+$/.test(fields[1])) bad("bad CAA Flag");
      return { flags: Number(fields[0]), tag: fields[1], value: fields.slice(2).join(" ").replace(/^"|"$/g, "") };
    default:
      throw new Error(`Bad zone record entry: dns: unknown RR type: "${type}"`);
  }
}

/** validateEntries: every entry parses; no two with the same type and value. */
export function validateEntries(entries: ZoneRecordEntry[]): void {
  const seen = new Set<string>();
  for (const e of entries) {
    entryData(e.type, e.value);
    const id = `${e.type}/${e.value}`;
    if (seen.has(id)) throw new Error(`Duplicate record for type "${e.type}" and value "${e.value}"`);
    seen.add(id);
  }
}

export const ARPA4 = "in-addr.arpa";
export const ARPA6 = "ip6.arpa";

/** The reverse (PTR) name of an address, "" when it can't have one. */
export function reverseName(ip: string): string {
  const p = parseIp(ip);
  if (!p) return "";
  if (p.family === 4) return `${ip.split(".").reverse().join(".")}.${ARPA4}`;
  const hex = p.ip.toString(16).padStart(32, "0");
  return `${[...hex].reverse().join(".")}.${ARPA6}`;
}

export interface ZoneSource {
  /** Leases of networks using this zone: hostname and address. */
  records: { name: string; type: "A" | "AAAA" | "PTR"; value: string }[];
  extra: { name: string; entries: ZoneRecordEntry[] }[];
  nameservers: string[];
  serial: number;
}

/** The zone's records in LXD's template order (SOA first and last, as AXFR sends them). */
export function zoneRecords(zone: string, src: ZoneSource): ZoneRR[] {
  const primary = src.nameservers[0] ?? `hostmaster.${zone}`;
  const soa: ZoneRR = {
    name: zone,
    type: "SOA",
    ttl: 3600,
    class: "IN",
    data: { mname: zone, rname: fqdn(primary), serial: src.serial, refresh: 120, retry: 60, expire: 86400, minimum: 30 },
  };
  const out: ZoneRR[] = [soa];
  for (const ns of src.nameservers) out.push({ name: zone, type: "NS", ttl: 300, class: "IN", data: fqdn(ns) });
  for (const r of src.records) out.push({ name: `${r.name}.${zone}`, type: r.type, ttl: 300, class: "IN", data: r.type === "PTR" ? fqdn(r.value) : r.value });
  for (const rec of src.extra) {
    for (const e of rec.entries) {
      out.push({ name: `${rec.name}.${zone}`, type: e.type.toUpperCase(), ttl: e.ttl && e.ttl > 0 ? e.ttl : 300, class: "IN", data: entryData(e.type, e.value) });
    }
  }
  out.push(soa);
  return out;
}

/**
 * The instance records a zone gets from one network's leases (Content()): A/AAAA in a forward
 * zone; PTR in a reverse zone of the lease's family, named "<host>.<forward zone>".
 */
export function leaseRecords(
  zone: string,
  leases: { hostname: string; address: string }[],
  opts: { includeV4: boolean; includeV6: boolean; forwardZone?: string },
): ZoneSource["records"] {
  const isRev4 = zone.endsWith(ARPA4);
  const isRev6 = zone.endsWith(ARPA6);
  const out: ZoneSource["records"] = [];
  for (const l of leases) {
    const fam = isIP(l.address);
    if (fam === 0 || (fam === 4 && !opts.includeV4) || (fam === 6 && !opts.includeV6)) continue;
    if (!isRev4 && !isRev6) {
      out.push({ name: l.hostname, type: fam === 4 ? "A" : "AAAA", value: fam === 4 ? l.address : formatIp(6, parseIp(l.address)!.ip) });
      continue;
    }
    if ((fam === 4 && !isRev4) || (fam === 6 && !isRev6) || !opts.forwardZone) continue;
    const rev = reverseName(l.address);
    if (!rev.endsWith(`.${zone}`)) continue;
    out.push({ name: rev.slice(0, -(zone.length + 1)), type: "PTR", value: `${l.hostname}.${opts.forwardZone}` });
  }
  return out;
}

/** Which peer (if any) may transfer the zone: address match, and a TSIG key name "<zone>_<peer>." when it has a key. */
export function allowedPeer(config: Record<string, string>, zone: string, remote: string, tsig?: { name: string; verified: boolean }): boolean {
  const peers = new Map<string, { address?: string; key?: string }>();
  for (const [k, v] of Object.entries(config)) {
    const m = /^peers\.([^.]+)\.(address|key)$/.exec(k);
    if (!m) continue;
    const p = peers.get(m[1]) ?? {};
    p[m[2] as "address" | "key"] = v;
    peers.set(m[1], p);
  }
  for (const [name, p] of peers) {
    if (p.address && p.address !== remote) continue;
    if (p.key && (!tsig || !tsig.verified)) continue;
    if (p.key && tsig!.name.replace(/\.$/, "") !== `${zone}_${name}`.toLowerCase()) continue;
    return true;
  }
  return false;
}
