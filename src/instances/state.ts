// GET /1.0/instances/NAME/state: read from /proc and cgroup files through the driver, no spawns.
import type { InstanceRow } from "../db/instance-repo.js";
import type { PowerState } from "./drivers/types.js";
import { readNetworkState } from "./netstate.js";
import { initOf, rootDisk, STATUS } from "./rows.js";
import type { InstanceService } from "./service.js";

export function readInstanceState(svc: InstanceService, row: InstanceRow, known?: PowerState) {
  const status = known ?? svc.runtime.status(row);
  const base = { status, status_code: STATUS[status] };
  const init = initOf(row);
  if (status === "Stopped" || !init) {
    return { ...base, disk: {}, memory: { usage: 0, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 }, network: null, pid: 0, processes: 0, cpu: { usage: 0 } };
  }
  const usage = svc.runtime.driver.usage(init);
  const hostNames: Record<string, string> = {};
  let devices: Record<string, Record<string, string>> | undefined;
  for (const [k, v] of Object.entries(row.config)) {
    const m = /^volatile\.([^.]+)\.host_name$/.exec(k);
    if (m) hostNames[(devices ??= svc.expanded(row).devices)[m[1]]?.name ?? m[1]] = v;
  }
  return {
    ...base,
    disk: {},
    memory: usage.memory,
    network: readNetworkState(init.pid, hostNames),
    pid: init.pid,
    processes: usage.processes,
    cpu: { usage: usage.cpuNs },
  };
}

/**
 * The root disk's usage for /state, when the root disk has a size (a quota the pool's driver
 * can read back, e.g. a btrfs qgroup): `{ root: { usage } }`, else `{}`. Asked per /state
 * request only, not for instance lists.
 */
export async function readInstanceDisk(svc: InstanceService, row: InstanceRow): Promise<Record<string, { usage: number }>> {
  try {
    const devices = svc.expanded(row).devices;
    const root = rootDisk(devices);
    if (!devices[root.name]?.size) return {};
    const used = await svc.rootVolumeUsage(row, root.pool);
    return used === undefined ? {} : { [root.name]: { usage: used } };
  } catch {
    return {};
  }
}
