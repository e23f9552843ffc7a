// GET /1.0/instances/NAME/state: cgroup files through the driver and rtnetlink through the
// native addon, no spawns.
import type { InstanceRow } from "../db/instance-repo.js";
import type { PowerState } from "./drivers/types.js";
import { readNetworkStates, type NetInterfaceState } from "./netstate.js";
import { initOf, rootDisk, STATUS } from "./rows.js";
import type { InstanceService } from "./service.js";

type InstanceState = ReturnType<typeof stoppedState> & { network: Record<string, NetInterfaceState> | null };

const stoppedState = (status: PowerState) => ({
  status,
  status_code: STATUS[status],
  disk: {},
  memory: { usage: 0, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 },
  network: null as Record<string, NetInterfaceState> | null,
  pid: 0,
  processes: 0,
  cpu: { usage: 0 },
});

/**
 * The `state` of many instances (lists with recursion=2): cgroup figures per instance, and the
 * network namespaces of all running ones read in one native job.
 */
export async function readInstanceStates(svc: InstanceService, items: { row: InstanceRow; status?: PowerState }[]): Promise<InstanceState[]> {
  // Which are running (and their NICs' host names), with each profile read once for the list.
  const running = svc.batch(() =>
    items.map(({ row, status: known }) => {
      const status = known ?? svc.runtime.status(row);
      const init = initOf(row);
      if (status === "Stopped" || !init) return { status };
      const hostNames: Record<string, string> = {};
      let devices: Record<string, Record<string, string>> | undefined;
      for (const [k, v] of Object.entries(row.config)) {
        const m = /^volatile\.([^.]+)\.host_name$/.exec(k);
        if (m) hostNames[(devices ??= svc.expanded(row).devices)[m[1]]?.name ?? m[1]] = v;
      }
      return { status, init, hostNames };
    }),
  );
  const live = running.filter((r) => r.init);
  // The namespaces and the cgroup files are read off the event loop, on threads of their own.
  const [nets, usages] = await Promise.all([
    readNetworkStates(live.map((r) => r.init!.pid), live.map((r) => r.hostNames!)),
    live.length ? svc.runtime.driver.usage(live.map((r) => r.init!)) : [],
  ]);
  let i = 0;
  return running.map(({ status, init }) => {
    if (!init) return stoppedState(status);
    const usage = usages[i];
    const network = nets[i++];
    return { ...stoppedState(status), memory: usage.memory, pid: init.pid, processes: usage.processes, cpu: { usage: usage.cpuNs }, network };
  });
}

export async function readInstanceState(svc: InstanceService, row: InstanceRow, known?: PowerState): Promise<InstanceState> {
  return (await readInstanceStates(svc, [{ row, status: known }]))[0];
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
