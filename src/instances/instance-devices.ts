// An instance's devices as device drivers see them: the DeviceContext (volatile keys through
// the row owner, host paths and hot-plug from the instance driver) and start ordering.
import type { Logger } from "pino";
import type { Ports } from "../ports.js";
import type { InstanceRow } from "../db/instance-repo.js";
import { deviceFactory } from "../devices/registry.js";
import type { Device, DeviceContext } from "../devices/types.js";
import type { InstanceDriver } from "./drivers/types.js";
import { hostRoot, parseIdmapJson } from "./idmap.js";
import type { Devices, InstanceRecords } from "./rows.js";

type RowLike = { project: string; name: string; config: Record<string, string> };

export class InstanceDevices {
  constructor(
    private readonly deps: { records: InstanceRecords; driver: InstanceDriver; ports: Ports; log: Logger },
  ) {}

  context(row: RowLike): DeviceContext {
    const { records, driver } = this.deps;
    const map = parseIdmapJson(row.config["volatile.idmap.current"] ?? row.config["volatile.idmap.next"]);
    const ref = { project: row.project, name: row.name };
    return {
      project: row.project,
      instance: row.name,
      instanceId: () => records.get(row.project, row.name)?.id,
      instanceConfig: row.config,
      volatile: {
        get: (k) => records.get(row.project, row.name)?.config[k] ?? row.config[k],
        set: async (changes) => {
          records.setVolatile(row.project, row.name, changes);
          for (const [k, v] of Object.entries(changes)) {
            if (v === "") delete row.config[k];
            else row.config[k] = v;
          }
        },
      },
      devicesDir: driver.devicesDir(ref),
      logDir: driver.logDir(ref),
      expandedDevices: () => {
        const cur = records.get(row.project, row.name);
        return cur ? records.expanded(cur).devices : {};
      },
      rootfs: driver.rootfs(ref),
      hostRootId: hostRoot(map),
      idmap: map,
      ports: this.deps.ports,
      log: this.deps.log.child({ instance: row.name, project: row.project }),
      hotplug: driver.hotplug(ref),
    };
  }

  make(row: RowLike, name: string, config: Record<string, string>): Device {
    return deviceFactory(config)(this.context(row), name, config);
  }

  /** Devices in start order (disks before nics, as LXD sorts by type then name). */
  of(row: InstanceRow, devices: Devices): Device[] {
    const ctxRow = { project: row.project, name: row.name, config: this.deps.records.expanded(row).config };
    return Object.entries(devices)
      .sort(([a, x], [b, y]) => (x.type === y.type ? a.localeCompare(b) : x.type === "disk" ? -1 : y.type === "disk" ? 1 : a.localeCompare(b)))
      .map(([n, c]) => this.make(ctxRow, n, c));
  }

  /** LXD's Add for every device of an instance just created or renamed (static DHCP entries etc.). */
  async add(row: InstanceRow, ex: { devices: Devices }): Promise<void> {
    for (const d of this.of(row, ex.devices)) await d.add?.();
  }

  /**
   * Device changes on a stopped instance (LXD's Update with isRunning=false): a removed device
   * forgets its host state, an added or changed one (re)writes it.
   */
  async applyStopped(row: RowLike, before: Devices, after: Devices): Promise<void> {
    for (const [n, c] of Object.entries(before)) {
      const next = after[n];
      if (next && next.type === c.type && JSON.stringify(next) === JSON.stringify(c)) continue;
      if (!next || next.type !== c.type || (next.nictype ?? "") !== (c.nictype ?? "") || !!next.network !== !!c.network) await this.make(row, n, c).remove?.();
    }
    for (const [n, c] of Object.entries(after)) {
      const prev = before[n];
      if (prev && JSON.stringify(prev) === JSON.stringify(c)) continue;
      const sameKind = prev && prev.type === c.type && (prev.nictype ?? "") === (c.nictype ?? "") && !!prev.network === !!c.network;
      await this.make(row, n, c).add?.(sameKind ? prev : undefined);
    }
  }

  /** LXD's Remove only (the instance is stopped and keeps its devices): e.g. before a rename. */
  async forget(row: InstanceRow, ex: { devices: Devices }): Promise<void> {
    for (const d of this.of(row, ex.devices)) await d.remove?.().catch(() => {});
  }

  async remove(row: InstanceRow, ex: { devices: Devices }): Promise<void> {
    for (const d of this.of(row, ex.devices)) {
      await d.stop().catch(() => {});
      await d.remove?.().catch(() => {});
    }
  }
}
