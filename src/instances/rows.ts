// Small facts about instance rows that every part of the instances feature shares (the
// service, the runtime, the routes) without importing one another.
import type { InstanceRow } from "../db/instance-repo.js";
import type { InitProcess } from "./drivers/types.js";
import { apiUrl } from "../shared/urls.js";

export type Devices = Record<string, Record<string, string>>;

export interface Expanded {
  config: Record<string, string>;
  devices: Devices;
}

export const STATUS = { Running: 103, Stopped: 102, Frozen: 110, Error: 112 } as const;

export const instanceUrl = (project: string, name: string) => apiUrl(project, "instances", name);

/** The root disk device of an expanded device set: LXD's error when absent. */
export function rootDisk(devices: Devices): { name: string; pool: string } {
  for (const [name, d] of Object.entries(devices)) {
    if (d.type === "disk" && d.path === "/" && !d.source) {
      if (!d.pool) throw new Error(`Failed getting root disk: Root disk entry must have a "pool" property set`);
      return { name, pool: d.pool };
    }
  }
  throw new Error("Failed getting root disk: No root device could be found");
}

/** The init process a row records, if any. */
export function initOf(row: Pick<InstanceRow, "init_pid" | "init_start">): InitProcess | undefined {
  return row.init_pid > 0 ? { pid: row.init_pid, startTime: row.init_start } : undefined;
}

/**
 * What the runtime needs from the owner of the rows (the instance service), as narrow values:
 * reads, the volatile setter, the init recorder. The runtime never writes a row otherwise.
 */
export interface InstanceRecords {
  get(project: string, name: string): InstanceRow | undefined;
  /** Throws NotFound("Instance not found"). */
  require(project: string, name: string): InstanceRow;
  /** Every row (daemon start and stop only). */
  all(): InstanceRow[];
  expanded(row: Pick<InstanceRow, "project" | "profiles" | "config" | "devices">): Expanded;
  /** Set volatile.* keys ("" removes one). A row deleted meanwhile is left alone. */
  setVolatile(project: string, name: string, changes: Record<string, string>): void;
  /** Record the running init process (undefined: stopped); a start also stamps last_used_at. */
  setInit(project: string, name: string, init: InitProcess | undefined, lastUsedAt?: string, volatile?: Record<string, string>): void;
  /** Whether the instance's volume holds a state dump its next stateful start restores. */
  setStateful(project: string, name: string, stateful: boolean): void;
  /** A new id map for the instance's security settings. */
  allocateIdmap(project: string, name: string, config: Record<string, string>): { base: number; map: string };
  /** Throws while the instance's create operation runs. */
  assertNotCreating(project: string, name: string, action: string): void;
  /** Delete a stopped instance (ephemeral instances after they stop). */
  destroy(row: InstanceRow): Promise<void>;
}
