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
 * The `state` of many instances (lists with recursion=2): cgroup figures and network namespaces of
 * every running one, read off the event loop in two native jobs. The reads start at once, beside
 * the read of the statuses (`statuses`, when the caller has started it for its views), which are
 * awaited only to tell Frozen from Running.
 */
export async function readInstanceStates(svc: InstanceService, rows: InstanceRow[], statuses = svc.readStatuses(rows)): Promise<InstanceState[]> {
  const driver = svc.runtime.driver;
  // Which are alive (and their NICs' host names), with each profile read once for the list.
  const alive = svc.batch(() =>
    rows.map((row) => {
      const init = initOf(row);
      if (!init || !driver.alive(init)) return undefined;
      const hostNames: Record<string, string> = {};
      let devices: Record<string, Record<string, string>> | undefined;
      for (const [k, v] of Object.entries(row.config)) {
        const m = /^volatile\.([^.]+)\.host_name$/.exec(k);
        if (m) hostNames[(devices ??= svc.expanded(row).devices)[m[1]]?.name ?? m[1]] = v;
      }
      return { init, hostNames };
    }),
  );
  const live = alive.filter((a) => a !== undefined);
  const [known, nets, usages] = await Promise.all([
    statuses,
    readNetworkStates(live.map((a) => a.init.pid), live.map((a) => a.hostNames)),
    live.length ? driver.usage(live.map((a) => a.init)) : [],
  ]);
  let i = 0;
  return rows.map((row, k) => {
    const a = alive[k];
    if (!a) return stoppedState((known.get(row) as PowerState | undefined) ?? "Stopped");
    const at = i++;
    const status = (known.get(row) as PowerState | undefined) ?? "Running";
    if (status === "Stopped") return stoppedState(status);
    const usage = usages[at];
    return { ...stoppedState(status), memory: usage.memory, pid: a.init.pid, processes: usage.processes, cpu: { usage: usage.cpuNs }, network: nets[at] };
  });
}

export async function readInstanceState(svc: InstanceService, row: InstanceRow): Promise<InstanceState> {
  return (await readInstanceStates(svc, [row]))[0];
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
