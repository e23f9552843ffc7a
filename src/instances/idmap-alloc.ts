// Choosing an instance's id map from its security settings. Isolated maps must not overlap
// other isolated instances' allocations, so only they look at the other rows (a shared map
// never scans the instances table: creating instance 500 costs what creating instance 1 does).
import type { InstanceRow } from "../db/instance-repo.js";
import { isTrue } from "./config-keys.js";
import { allocateIdmap, DEFAULT_ISOLATED_SIZE, idmapJson, parseIdmapJson, parseRawIdmap, type HostIdSet, type UsedRange } from "./idmap.js";
import type { Expanded } from "./rows.js";

/** The map with raw.idmap punched in; throws IdmapError or RawIdmapError with LXD's bare message. */
export function computeIdmap(
  host: HostIdSet,
  others: () => InstanceRow[],
  expanded: (row: InstanceRow) => Expanded,
  self: { project: string; name: string },
  config: Record<string, string>,
): { base: number; map: string } {
  const isolated = isTrue(config["security.idmap.isolated"]);
  const used: UsedRange[] = [];
  if (isolated) {
    for (const other of others()) {
      if (other.project === self.project && other.name === self.name) continue;
      const ex = expanded(other).config;
      if (!isTrue(ex["security.idmap.isolated"])) continue;
      // The allocation's size, not the first entry's: raw.idmap may have split it.
      if (parseIdmapJson(other.config["volatile.idmap.next"]).length > 0) used.push({ base: Number(other.config["volatile.idmap.base"] ?? 0), size: ex["security.idmap.size"] ? Number(ex["security.idmap.size"]) : DEFAULT_ISOLATED_SIZE });
    }
  }
  const size = config["security.idmap.size"] ? Number(config["security.idmap.size"]) : undefined;
  const privileged = isTrue(config["security.privileged"]);
  const raw = privileged ? [] : parseRawIdmap(config["raw.idmap"] ?? "");
  const base = config["security.idmap.base"] ? Number(config["security.idmap.base"]) : undefined;
  const r = allocateIdmap(host, { privileged, isolated, size, base, raw }, used);
  return { base: r.base, map: idmapJson(r.map) };
}
