// The instance model the service shares with the modules it delegates to (snapshots, backups,
// queries, profile changes): request and view types, and InstanceOwner, the narrow view of the
// service they are given, so none of them imports the service itself.
import type { Logger } from "pino";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Db } from "../db/database.js";
import type { InstanceRepo, InstanceRow } from "../db/instance-repo.js";
import type { Ports } from "../ports.js";
import type { Devices, InstanceRecords } from "./rows.js";
import type { InstanceRuntime } from "./runtime.js";

export interface InstancePut {
  architecture?: string;
  config?: Record<string, string>;
  devices?: Devices;
  ephemeral?: boolean;
  profiles?: string[];
  description?: string;
}

export interface CreateRequest extends InstancePut {
  name: string;
  type?: string;
  /**
   * instanceOnly: a copy leaves the source's snapshots behind (`lxc copy --instance-only`);
   * project: the source instance's project (container_copy_project), this one when absent.
   */
  source: {
    type: string;
    alias?: string;
    fingerprint?: string;
    source?: string;
    instanceOnly?: boolean;
    project?: string;
    /** A remote image server (source type "image", mode "pull"): the image is pulled inside the operation. */
    remote?: { server: string; protocol?: string; certificate?: string; secret?: string; project?: string };
  };
  /** Internal (moves): the source's volatile keys are kept and no template trigger is set. */
  move?: boolean;
  /** Internal (live moves): the copy holds the source's CRIU dump and starts from it. */
  stateful?: boolean;
  /**
   * Internal (source type migration): fill the new, empty volume (and its snapshots) from a
   * peer. A live migration resolves to its last step, run once the instance exists (or called
   * with the error that stopped the create).
   */
  migrate?: (target: { dir: string; pool: string; signal: AbortSignal }) => Promise<LiveFinish | void>;
}


/** A live migration's last step on the target: start from the dump (`started` once it runs), then answer the source; or report `error`. */
export type LiveFinish = (error?: Error, started?: () => void) => Promise<void>;

export interface InstanceView {
  architecture: string;
  config: Record<string, string>;
  devices: Devices;
  ephemeral: boolean;
  profiles: string[];
  stateful: boolean;
  description: string;
  created_at: string;
  expanded_config: Record<string, string>;
  expanded_devices: Devices;
  name: string;
  status: string;
  status_code: number;
  last_used_at: string;
  location: string;
  type: string;
  project: string;
}

/** What the instance service needs, declared here and wired once by the instances feature. */
export interface InstanceServiceDeps {
  db: Db;
  /** The other features' ports (wired once by the daemon). */
  ports: Pick<Ports, "profiles" | "images" | "storage" | "projects" | "cluster">;
  events: { lifecycle(action: string, source: string, opts?: { project?: string; context?: Record<string, unknown> }): void };
  host: { kernel_architecture: string };
  /** $LXD_DIR/images (publish builds a snapshot's tree there); $LXD_DIR (creates in progress are marked under it). */
  paths: { images: string; dir: string };
  log: Logger;
}

/** What snapshots, backups, queries and profile changes use of the instance service. */
export interface InstanceOwner extends InstanceRecords {
  readonly repo: InstanceRepo;
  readonly runtime: InstanceRuntime;
  readonly deps: InstanceServiceDeps;
  validate(project: string, name: string, config: Record<string, string>, devices: Devices, profiles: string[], expandedOnly?: boolean): void;
  view(row: InstanceRow): InstanceView;
  /** The instance volume's mount path (mounted first when the driver needs it). */
  volumeDir(row: InstanceRow): Promise<string>;
}

/** Remove everything inside a directory (the directory stays). */
export async function emptyDir(dir: string): Promise<void> {
  for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true });
}

/** A volume's config as a copy gets it: its volatile keys stay with the source. */
export function volumeConfigForCopy(config: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).filter(([k]) => !k.startsWith("volatile.")));
}
