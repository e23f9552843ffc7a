// Project limits (limits.instances, limits.containers, limits.cpu/memory/disk/processes, ...):
// what a project's instances add up to, checks of a change against them (LXD's
// AllowInstanceCreation/AllowProjectUpdate totals), and the allocations `lxc project info` shows.
import { parseByteSize } from "../shared/units.js";
import { atoi, checkRestrictions, isTrue, q, type CheckedInstance, type Config, type Devices, type ProjectInfo } from "./restrictions.js";

export const AGGREGATE_LIMITS = ["limits.cpu", "limits.disk", "limits.memory", "limits.processes"];

const PARSERS: Record<string, (v: string) => number> = {
  "limits.memory": (v) => {
    if (v.endsWith("%")) throw new Error("Value can't be a percentage");
    return parseByteSize(v);
  },
  "limits.processes": (v) => atoi(v),
  "limits.cpu": (v) => {
    if (v.includes(",") || v.includes("-")) throw new Error("CPUs can't be pinned if project limits are used");
    return atoi(v);
  },
  "limits.disk": (v) => parseByteSize(v),
};

/** units.GetByteSizeStringIEC. */
export function byteSizeIEC(n: number, precision = 1): string {
  if (n < 1024) return `${n}B`;
  let v = n;
  for (const unit of ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]) {
    v /= 1024;
    if (v < 1024) return `${v.toFixed(precision)}${unit}`;
  }
  return `${v.toFixed(precision)}EB`;
}

const PRINTERS: Record<string, (n: number) => string> = {
  "limits.memory": (n) => byteSizeIEC(n),
  "limits.processes": (n) => String(n),
  "limits.cpu": (n) => String(n),
  "limits.disk": (n) => byteSizeIEC(n),
};

/** The root disk of an expanded device set (shared.GetRootDiskDevice). */
function rootDisk(devices: Devices): Record<string, string> {
  const roots = Object.values(devices).filter((d) => d.type === "disk" && d.path === "/" && !d.source);
  if (roots.length === 1) return roots[0];
  if (roots.length > 1) throw new Error("More than one root device found");
  throw new Error("No root device could be found");
}

function instanceLimits(project: string, inst: CheckedInstance, keys: string[], skipUnset: boolean): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of keys) {
    const parser = PARSERS[key];
    let limit: number;
    if (key === "limits.disk") {
      let dev: Record<string, string>;
      try {
        dev = rootDisk(inst.devices);
      } catch (e) {
        throw new Error(`Failed getting root disk device for instance ${q(inst.name)} in project ${q(project)}: ${(e as Error).message}`);
      }
      const v = dev.size;
      if (!v) {
        if (skipUnset) continue;
        throw new Error(`Instance ${q(inst.name)} in project ${q(project)} has no "size" config set on the root device either directly or via a profile`);
      }
      try {
        limit = parser(v);
      } catch {
        if (skipUnset) continue;
        throw new Error(`Failed parsing ${q(key)} for instance ${q(inst.name)} in project ${q(project)}`);
      }
    } else {
      const v = inst.config[key];
      if (!v) {
        if (skipUnset) continue;
        throw new Error(`Instance ${q(inst.name)} in project ${q(project)} has no ${q(key)} config, either directly or via a profile`);
      }
      try {
        limit = parser(v);
      } catch {
        if (skipUnset) continue;
        throw new Error(`Failed parsing ${q(key)} for instance ${q(inst.name)} in project ${q(project)}`);
      }
    }
    out[key] = limit;
  }
  return out;
}

/** getTotalsAcrossProjectEntities: usage per aggregate key over instances and custom volumes. */
export function totals(info: ProjectInfo, keys: string[], skipUnset: boolean): Record<string, number> {
  const t: Record<string, number> = {};
  for (const key of keys) {
    t[key] = 0;
    if (key !== "limits.disk") continue;
    for (const vol of info.volumes) {
      const v = vol.config.size;
      if (v === undefined) {
        if (skipUnset) continue;
        throw new Error(`Custom volume ${q(vol.name)} in project ${q(info.name)} has no "size" config set`);
      }
      try {
        t[key] += parseByteSize(v);
      } catch (e) {
        throw new Error(`Parse "size" for custom volume ${q(vol.name)} in project ${q(info.name)}: ${(e as Error).message}`);
      }
    }
  }
  for (const inst of info.instances) {
    const l = instanceLimits(info.name, inst, keys, skipUnset);
    for (const key of keys) t[key] += l[key] ?? 0;
  }
  return t;
}

function countLimit(config: Config, key: string): number {
  const v = config[key];
  if (v === undefined) return -1;
  let n: number;
  try {
    n = atoi(v);
  } catch {
    throw new Error(`Unexpected ${q(key)} value: ${q(v)}`);
  }
  if (n < 0) throw new Error(`Unexpected ${q(key)} value: ${q(v)}`);
  return n;
}

function totalLimit(config: Config): number {
  const v = config["limits.instances"];
  return v === undefined ? -1 : atoi(v);
}

export function hasLimitsOrRestrictions(config: Config): boolean {
  return Object.entries(config).some(([k, v]) => k.startsWith("limits.") || (k === "restricted" && isTrue(v)));
}

/** checkRestrictionsAndAggregateLimits over the project with the change applied (instances expanded). */
export function checkRestrictionsAndLimits(info: ProjectInfo): void {
  const aggregate = Object.keys(info.config).filter((k) => AGGREGATE_LIMITS.includes(k));
  const restricted = isTrue(info.config.restricted);
  if (aggregate.length === 0 && !restricted) return;
  if (aggregate.length > 0) {
    let t: Record<string, number>;
    try {
      t = totals(info, aggregate, false);
    } catch (e) {
      throw new Error(`Failed getting usage of project entities: ${(e as Error).message}`);
    }
    for (const key of aggregate) {
      const max = PARSERS[key](info.config[key]);
      if (t[key] > max) throw new Error(`Reached maximum aggregate value ${q(info.config[key])} for ${q(key)} in project ${q(info.name)}`);
    }
  }
  if (restricted) checkRestrictions(info, info.instances, info.profiles);
}

/** The instance-count checks of AllowInstanceCreation (before the new instance is added). */
export function checkInstanceCounts(info: ProjectInfo, type: string): void {
  const key = type === "virtual-machine" ? "limits.virtual-machines" : "limits.containers";
  const limit = countLimit(info.config, key);
  const count = info.instances.filter((i) => i.type === type).length;
  if (limit >= 0 && count >= limit) throw new Error(`Reached maximum number of instances of type ${q(type)} in project ${q(info.name)}`);
  const total = totalLimit(info.config);
  if (total >= 0 && info.instances.length >= total) throw new Error(`Reached maximum number of instances in project ${q(info.name)}`);
}

/** AllowProjectUpdate: the new config against what the project holds now. */
export function checkProjectUpdate(info: ProjectInfo, config: Config, changed: string[]): void {
  const aggregate: string[] = [];
  for (const key of changed) {
    // LXD checks only restricted.* changes; turning `restricted` itself on is checked too, so a
    // project cannot be restricted over instances that already break its restrictions.
    if (key.startsWith("restricted.") || (key === "restricted" && isTrue(config.restricted))) {
      try {
        checkRestrictions({ name: info.name, config }, info.instances, info.profiles);
      } catch (e) {
        throw new Error(`Conflict detected when changing ${q(key)} in project ${q(info.name)}: ${(e as Error).message}`);
      }
      continue;
    }
    switch (key) {
      case "limits.instances": {
        const v = config[key] ?? "";
        if (v === "") break;
        const limit = atoi(v);
        if (limit < info.instances.length) throw new Error(`Can't change limits.instances in project ${q(info.name)}: "limits.instances" is too low: there currently are ${info.instances.length} total instances in project ${q(info.name)}`);
        break;
      }
      case "limits.containers":
      case "limits.virtual-machines": {
        const v = config[key] ?? "";
        if (v === "") break;
        const type = key === "limits.containers" ? "container" : "virtual-machine";
        const limit = atoi(v);
        const count = info.instances.filter((i) => i.type === type).length;
        if (limit < count) throw new Error(`Can't change ${q(key)} in project ${q(info.name)}: ${q(key)} is too low: there currently are ${count} instances of type ${type} in project ${q(info.name)}`);
        break;
      }
      case "limits.processes":
      case "limits.cpu":
      case "limits.memory":
      case "limits.disk":
        aggregate.push(key);
    }
  }
  if (aggregate.length === 0) return;
  const t = totals(info, aggregate, false);
  for (const key of aggregate) {
    const v = config[key] ?? "";
    if (v === "") continue;
    let limit: number;
    try {
      limit = PARSERS[key](v);
    } catch (e) {
      throw new Error(`Invalid value ${q(v)} for limit ${q(key)}: ${(e as Error).message}`);
    }
    if (limit < t[key]) throw new Error(`${q(key)} is too low: current total is ${q(PRINTERS[key](t[key]))}`);
  }
}

export interface StateResource {
  Limit: number;
  Usage: number;
}

/** GetCurrentAllocations: GET /1.0/projects/{name}/state resources (networks counted by the caller). */
export function currentAllocations(info: ProjectInfo, networks: number): Record<string, { limit: number; usage: number }> {
  const t = totals(info, AGGREGATE_LIMITS, true);
  const out: Record<string, { limit: number; usage: number }> = {};
  for (const key of AGGREGATE_LIMITS) {
    const v = info.config[key];
    out[key.slice("limits.".length)] = { limit: v ? PARSERS[key](v) : -1, usage: t[key] };
  }
  out.instances = { limit: totalLimit(info.config), usage: info.instances.length };
  out.containers = { limit: countLimit(info.config, "limits.containers"), usage: info.instances.filter((i) => i.type === "container").length };
  out["virtual-machines"] = { limit: countLimit(info.config, "limits.virtual-machines"), usage: info.instances.filter((i) => i.type === "virtual-machine").length };
  const n = info.config["limits.networks"];
  out.networks = { limit: n !== undefined ? atoi(n) : -1, usage: networks };
  return out;
}
