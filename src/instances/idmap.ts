// User-namespace id maps: reading /etc/subuid, allocating a container's map the way LXD
// does (volatile.idmap.*), and the id arithmetic used to shift a rootfs between maps.
// Pure functions, except ensureRootSubIds which edits /etc/subuid and /etc/subgid.
import { readFileSync, writeFileSync } from "node:fs";

/** One map entry, serialised with LXD's field names (volatile.idmap.* JSON). */
export interface IdmapEntry {
  Isuid: boolean;
  Isgid: boolean;
  Hostid: number;
  Nsid: number;
  Maprange: number;
}

export interface IdRange {
  start: number;
  size: number;
}

/** The uid and gid ranges the host delegates to root. */
export interface HostIdSet {
  uid: IdRange;
  gid: IdRange;
}

/** Upstream's default when root has no delegation yet. */
export const DEFAULT_ROOT_RANGE: IdRange = { start: 1_000_000, size: 1_000_000_000 };
export const DEFAULT_ISOLATED_SIZE = 65536;

/** The first range of `user` in a subuid/subgid file. */
export function parseSubIdFile(text: string, user = "root"): IdRange | undefined {
  for (const line of text.split("\n")) {
    const [name, start, size] = line.trim().split(":");
    if (name !== user || start === undefined || size === undefined) continue;
    const s = Number(start);
    const n = Number(size);
    if (Number.isInteger(s) && Number.isInteger(n) && n > 0) return { start: s, size: n };
  }
  return undefined;
}

/** Read root's delegation, adding `root:1000000:1000000000` to a file that lacks one (as upstream's packaging does). */
export function ensureRootSubIds(files = { uid: "/etc/subuid", gid: "/etc/subgid" }): HostIdSet {
  const read = (file: string): IdRange => {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      text = "";
    }
    const found = parseSubIdFile(text);
    if (found) return found;
    const line = `root:${DEFAULT_ROOT_RANGE.start}:${DEFAULT_ROOT_RANGE.size}\n`;
    writeFileSync(file, (text === "" || text.endsWith("\n") ? text : text + "\n") + line);
    return { ...DEFAULT_ROOT_RANGE };
  };
  return { uid: read(files.uid), gid: read(files.gid) };
}

export function parseIdmapJson(text: string | undefined): IdmapEntry[] {
  if (!text) return [];
  try {
    const v = JSON.parse(text);
    if (!Array.isArray(v)) return [];
    return v.filter((e) => e && typeof e.Hostid === "number" && typeof e.Nsid === "number" && typeof e.Maprange === "number");
  } catch {
    return [];
  }
}

export const idmapJson = (map: IdmapEntry[]): string => JSON.stringify(map);

export function sameIdmap(a: IdmapEntry[], b: IdmapEntry[]): boolean {
  return idmapJson(a) === idmapJson(b);
}

export interface IdmapRequest {
  privileged: boolean;
  isolated: boolean;
  /** security.idmap.size; undefined = the whole delegation (shared) or 65536 (isolated). */
  size?: number;
  /** security.idmap.base: the isolated map's first host id */
  base?: number;
  /** parsed raw.idmap entries, punched into the allocated map */
  raw?: IdmapEntry[];
}

/** Another container's isolated allocation (its volatile.idmap.base and size), to avoid overlapping it. */
export interface UsedRange {
  base: number;
  size: number;
}

export class IdmapError extends Error {}

/**
 * Allocate a container map. Shared (the default): the whole delegation, base 0, as LXD.
 * Isolated: `size` ids at security.idmap.base when given, else the first free block after the
 * first 65536 ids of the delegation, avoiding `used` blocks; base is that block's first host id
 * (volatile.idmap.base, as LXD). raw.idmap entries are punched into the result.
 */
export function allocateIdmap(host: HostIdSet, req: IdmapRequest, used: UsedRange[] = []): { base: number; map: IdmapEntry[] } {
  if (req.privileged) return { base: 0, map: [] };
  const total = Math.min(host.uid.size, host.gid.size);
  const withRaw = (map: IdmapEntry[]) => (req.raw ?? []).reduce(addSafe, map);
  if (!req.isolated) {
    const size = req.size ?? total;
    if (size > total) throw new IdmapError(`Not enough uid/gid available for the container`);
    return { base: 0, map: withRaw(pair(host, 0, size)) };
  }
  const size = req.size ?? DEFAULT_ISOLATED_SIZE;
  if (req.base !== undefined) return { base: req.base, map: withRaw(pair({ uid: { start: req.base, size }, gid: { start: req.base, size } }, 0, size)) };
  // Offsets into the delegation; bases recorded by older versions of nodelxd were offsets already.
  const offsetOf = (base: number) => (base >= host.uid.start ? base - host.uid.start : base);
  const sorted = used.map((r) => ({ base: offsetOf(r.base), size: r.size })).sort((a, b) => a.base - b.base);
  let offset = DEFAULT_ISOLATED_SIZE;
  for (const r of sorted) {
    if (offset + size <= r.base) break;
    if (r.base + r.size > offset) offset = r.base + r.size;
  }
  if (offset + size > total) throw new IdmapError("Not enough uid/gid available for the container");
  return { base: host.uid.start + offset, map: withRaw(pair(host, offset, size)) };
}

function pair(host: HostIdSet, offset: number, size: number): IdmapEntry[] {
  return [
    { Isuid: true, Isgid: false, Hostid: host.uid.start + offset, Nsid: 0, Maprange: size },
    { Isuid: false, Isgid: true, Hostid: host.gid.start + offset, Nsid: 0, Maprange: size },
  ];
}

/** lxc.idmap values: "u 0 100000 65536", each line once (a raw.idmap "both" entry can appear twice in a map). */
export function lxcIdmapLines(map: IdmapEntry[]): string[] {
  const out: string[] = [];
  for (const e of map) {
    if (e.Isuid) out.push(`u ${e.Nsid} ${e.Hostid} ${e.Maprange}`);
    if (e.Isgid) out.push(`g ${e.Nsid} ${e.Hostid} ${e.Maprange}`);
  }
  return [...new Set(out)];
}

// ---- raw.idmap ----

/** An unusable raw.idmap; the message is LXD's. */
export class RawIdmapError extends Error {}

export const HOST_ID_IS_SUBID = "Host id is in the range of subids";

const between = (x: number, low: number, high: number) => x >= low && x < high;
const sameKind = (a: IdmapEntry, b: IdmapEntry) => (a.Isuid && b.Isuid) || (a.Isgid && b.Isgid);

/**
 * Whether two entries overlap on the host or in the namespace. Upstream compares against the
 * last id exclusively (high = start + range - 1), so a single-id entry never "contains" an id;
 * the maps it produces depend on that, so it is kept.
 */
function entriesIntersect(e: IdmapEntry, i: IdmapEntry): boolean {
  if (!sameKind(e, i)) return false;
  const eh = e.Hostid + e.Maprange - 1;
  const ih = i.Hostid + i.Maprange - 1;
  const en = e.Nsid + e.Maprange - 1;
  const inn = i.Nsid + i.Maprange - 1;
  return (
    between(e.Hostid, i.Hostid, ih) || between(i.Hostid, e.Hostid, eh) || between(eh, i.Hostid, ih) || between(ih, e.Hostid, eh) ||
    between(e.Nsid, i.Nsid, inn) || between(i.Nsid, e.Nsid, en) || between(en, i.Nsid, inn) || between(inn, e.Nsid, en)
  );
}

function hostIdsIntersect(e: IdmapEntry, i: IdmapEntry): boolean {
  if (!sameKind(e, i)) return false;
  const eEnd = e.Hostid + e.Maprange;
  const iEnd = i.Hostid + i.Maprange;
  return between(e.Hostid, i.Hostid, iEnd) || between(i.Hostid, e.Hostid, eEnd) || between(eEnd, i.Hostid, iEnd) || between(iEnd, e.Hostid, eEnd);
}

/**
 * LXD's IdmapSet.AddSafe: punch `i` into the map, splitting every entry it overlaps into the
 * part below and the part above it. Overlapping host ids are refused. As upstream, `i` is
 * inserted once per entry it splits (a "both" entry lands in the uid and in the gid range).
 */
export function addSafe(map: IdmapEntry[], i: IdmapEntry): IdmapEntry[] {
  const out: IdmapEntry[] = [];
  let added = false;
  for (const e of map) {
    if (!entriesIntersect(e, i)) {
      out.push(e);
      continue;
    }
    if (hostIdsIntersect(e, i)) throw new RawIdmapError(HOST_ID_IS_SUBID);
    added = true;
    const lowerRange = i.Nsid - e.Nsid;
    const lower: IdmapEntry = { Isuid: e.Isuid, Isgid: e.Isgid, Hostid: e.Hostid, Nsid: e.Nsid, Maprange: lowerRange };
    const upper: IdmapEntry = { Isuid: e.Isuid, Isgid: e.Isgid, Hostid: e.Hostid + lowerRange + i.Maprange, Nsid: i.Nsid + i.Maprange, Maprange: e.Maprange - i.Maprange - lowerRange };
    if (lower.Maprange > 0) out.push(lower);
    out.push({ ...i });
    if (upper.Maprange > 0) out.push(upper);
  }
  if (!added) out.push({ ...i });
  return out;
}

const INT64_MAX = 2n ** 63n - 1n;

/** Go's strconv.ParseInt(s, 10, 64), with its error text. */
function parseInt64(s: string): number {
  if (!/^[+-]?[0-9]+$/.test(s)) throw new RawIdmapError(`strconv.ParseInt: parsing ${goQuote(s)}: invalid syntax`);
  const n = BigInt(s);
  if (n > INT64_MAX || n < -INT64_MAX - 1n) throw new RawIdmapError(`strconv.ParseInt: parsing ${goQuote(s)}: value out of range`);
  return Number(n);
}

const goQuote = (s: string) => JSON.stringify(s);

const RAW_KINDS = new Map([
  ["both", { Isuid: true, Isgid: true }],
  ["uid", { Isuid: true, Isgid: false }],
  ["gid", { Isuid: false, Isgid: true }],
]);

function parseIdRange(r: string): { base: number; size: number } {
  const parts = r.split("-");
  if (parts.length > 2) throw new RawIdmapError(`Invalid ID Map range ${goQuote(r)}`);
  const base = parseInt64(parts[0]);
  let size = 1;
  if (parts.length > 1) size = parseInt64(parts[1]) - base + 1;
  return { base, size };
}

/**
 * raw.idmap as LXD reads it: lines of "uid|gid|both HOST[-HOSTEND] NS[-NSEND]", fields split by
 * single spaces. The entries are combined with addSafe, so they may not overlap each other.
 */
export function parseRawIdmap(text: string): IdmapEntry[] {
  let map: IdmapEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const fields = line.split(" ");
    if (fields.length !== 3) throw new RawIdmapError(`Invalid ID map line ${goQuote(line)}`);
    const outside = parseIdRange(fields[1]);
    const inside = parseIdRange(fields[2]);
    if (inside.size !== outside.size) throw new RawIdmapError(`The ID map ranges are of different sizes ${goQuote(line)}`);
    const kind = RAW_KINDS.get(fields[0]);
    if (!kind) throw new RawIdmapError(`Invalid ID map type ${goQuote(line)}`);
    map = addSafe(map, { ...kind, Hostid: outside.base, Nsid: inside.base, Maprange: inside.size });
  }
  return map;
}

type Kind = "uid" | "gid";
const applies = (e: IdmapEntry, kind: Kind) => (kind === "uid" ? e.Isuid : e.Isgid);

/** Host id for a namespace id, or undefined when the map does not cover it. An empty map is the identity. */
export function toHost(map: IdmapEntry[], kind: Kind, nsid: number): number | undefined {
  if (map.length === 0) return nsid;
  for (const e of map) if (applies(e, kind) && nsid >= e.Nsid && nsid < e.Nsid + e.Maprange) return e.Hostid + (nsid - e.Nsid);
  return undefined;
}

/** Namespace id for a host id, or undefined when unmapped. An empty map is the identity. */
export function toNs(map: IdmapEntry[], kind: Kind, hostid: number): number | undefined {
  if (map.length === 0) return hostid;
  for (const e of map) if (applies(e, kind) && hostid >= e.Hostid && hostid < e.Hostid + e.Maprange) return e.Nsid + (hostid - e.Hostid);
  return undefined;
}

/**
 * The host id a file owned by `hostid` under map `from` gets under map `to`
 * (unshift through the namespace id, then shift). Ids the old map does not cover are
 * treated as namespace ids already; ids the new map cannot hold become the overflow id.
 */
export function remapId(from: IdmapEntry[], to: IdmapEntry[], kind: Kind, hostid: number): number {
  const nsid = toNs(from, kind, hostid) ?? hostid;
  return toHost(to, kind, nsid) ?? toHost(to, kind, 65534) ?? 65534;
}

/** The host uid/gid the container's root maps to. */
export function hostRoot(map: IdmapEntry[]): { uid: number; gid: number } {
  return { uid: toHost(map, "uid", 0) ?? 0, gid: toHost(map, "gid", 0) ?? 0 };
}
