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
}

/** Another container's isolated allocation, to avoid overlapping it. */
export interface UsedRange {
  base: number;
  size: number;
}

export class IdmapError extends Error {}

/**
 * Allocate a container map. Shared (the default): the whole delegation, base 0, as LXD.
 * Isolated: the first free block of `size` ids after the first 65536 of the delegation,
 * avoiding `used` blocks; base is the offset into the delegation.
 */
export function allocateIdmap(host: HostIdSet, req: IdmapRequest, used: UsedRange[] = []): { base: number; map: IdmapEntry[] } {
  if (req.privileged) return { base: 0, map: [] };
  const total = Math.min(host.uid.size, host.gid.size);
  if (!req.isolated) {
    const size = req.size ?? total;
    if (size > total) throw new IdmapError(`Not enough uid/gid available for the container`);
    return { base: 0, map: pair(host, 0, size) };
  }
  const size = req.size ?? DEFAULT_ISOLATED_SIZE;
  const sorted = [...used].sort((a, b) => a.base - b.base);
  let offset = DEFAULT_ISOLATED_SIZE;
  for (const r of sorted) {
    if (offset + size <= r.base) break;
    if (r.base + r.size > offset) offset = r.base + r.size;
  }
  if (offset + size > total) throw new IdmapError("Not enough uid/gid available for the container");
  return { base: offset, map: pair(host, offset, size) };
}

function pair(host: HostIdSet, offset: number, size: number): IdmapEntry[] {
  return [
    { Isuid: true, Isgid: false, Hostid: host.uid.start + offset, Nsid: 0, Maprange: size },
    { Isuid: false, Isgid: true, Hostid: host.gid.start + offset, Nsid: 0, Maprange: size },
  ];
}

/** lxc.idmap values: "u 0 100000 65536". */
export function lxcIdmapLines(map: IdmapEntry[]): string[] {
  const out: string[] = [];
  for (const e of map) {
    if (e.Isuid) out.push(`u ${e.Nsid} ${e.Hostid} ${e.Maprange}`);
    if (e.Isgid) out.push(`g ${e.Nsid} ${e.Hostid} ${e.Maprange}`);
  }
  return out;
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
