// The instance driver contract: a driver runs instances on the host, through InstanceRef and
// StartSpec values. It knows nothing of the database, profiles or API objects (the instance
// service does: it owns the rows and hands the driver what one call needs). Capabilities a
// driver may lack are optional methods and flags in `info`, as the storage drivers do.
import type { Logger } from "pino";
import type { DeviceContext, RunConfig } from "../../devices/types.js";
import type { IdmapEntry } from "../idmap.js";
import type { AttachTarget } from "../runtime-port.js";

export type { AttachTarget, CommandSpec } from "../runtime-port.js";

/** Which instance: the driver derives its own host names from these (e.g. "proj_c1"). */
export interface InstanceRef {
  project: string;
  name: string;
}

/** A running instance's first process, with its /proc starttime (a recycled pid is not ours). */
export interface InitProcess {
  pid: number;
  startTime: string;
}

export type PowerState = "Running" | "Frozen" | "Stopped";

/** What a start needs, computed by the instance service from the row. */
export interface StartSpec {
  /** The mounted instance volume (holds rootfs/). */
  volume: string;
  hostname: string;
  architecture: string;
  /** The expanded config (profiles applied). */
  config: Record<string, string>;
  /** The id map the instance runs with ([] when privileged). */
  idmap: IdmapEntry[];
  /** The devices' run configurations, in start order. */
  devices: RunConfig[];
}

/** Usage counters for GET /state, read without spawning. */
export interface InstanceUsage {
  memory: { usage: number; usage_peak: number; swap_usage: number; swap_usage_peak: number };
  cpuNs: number;
  processes: number;
}

/** The driver can't dump or restore state here (no CRIU); callers word it as LXD does for their action. */
export class CriuMissing extends Error {
  constructor() {
    super("Unable to perform container live migration. CRIU isn't installed");
  }
}

/** What a CRIU dump or restore is for (LXD names its logs and errors after it). */
export type CheckpointPurpose = "snapshot" | "migration";

export interface InstanceDriverInfo {
  /** Registry key (e.g. "lxc"). */
  name: string;
  /** The instance type it runs (LXD's "container" or "virtual-machine"). */
  type: "container" | "virtual-machine";
  /** Can pause (freeze/unfreeze). */
  freeze: boolean;
  /** Can apply limits.* changes to a running instance (updateLive). */
  liveLimits: boolean;
}

export interface InstanceDriverEnv {
  /** $LXD_DIR */
  lxdDir: string;
  /** $LXD_DIR/shmounts, $LXD_DIR/security, $LXD_DIR/devices */
  paths: { shmounts: string; security: string; devices: string };
  log: Logger;
}

export interface InstanceDriver {
  readonly info: InstanceDriverInfo;

  /** Create from a volume: lay out what the driver needs around the instance volume (idempotent). */
  create(ref: InstanceRef, volume: string): void;
  /** Checks of the expanded config before a start touches anything (LXD's initLXC errors); throws the message. */
  preflight?(config: Record<string, string>): void;
  /** Start; resolves with the init process once the instance runs. Undoes its own partial work. */
  start(ref: InstanceRef, spec: StartSpec): Promise<InitProcess>;
  /** Clean shutdown within `timeout` seconds, then kill; `force` kills at once. */
  stop(ref: InstanceRef, opts: { timeout: number; force: boolean }): Promise<void>;
  /** Wait until the instance's runtime has finished tearing down (after it stopped on its own). */
  waitStopped(ref: InstanceRef, timeoutS: number): Promise<void>;
  /** Host-side clean-up once stopped (policy files, shared mount dirs, volume owner back to root). */
  stopped(ref: InstanceRef): void;
  /** The state of the instance whose init is `init` (read from /proc and cgroups, never spawned). */
  state(init: InitProcess | undefined): PowerState;
  /** As `state`, for many instances at once (what it reads is read off the event loop). */
  states(inits: (InitProcess | undefined)[]): Promise<PowerState[]>;
  /** Whether `init` is still the live init process. */
  alive(init: InitProcess | undefined): boolean;
  /**
   * Optional: `listener` runs when an init that `alive` answered for exits (the instance watcher
   * then needs no polling); returns false when the host cannot report exits. Without it (or on
   * false) the watcher asks `alive` twice a second.
   */
  onExit?(listener: () => void): boolean;
  /** What the runtime itself reports (crash recovery and reboots): the init process, or undefined. */
  runningInit(ref: InstanceRef): Promise<InitProcess | undefined>;
  /** Usage counters of running instances, one per init (read off the event loop for a whole list). */
  usage(inits: InitProcess[]): Promise<InstanceUsage[]>;
  /** Apply changed limits.* keys to a running instance; throws (changing nothing) when it can't. */
  updateLive(init: InitProcess, before: Record<string, string>, after: Record<string, string>): Promise<void>;
  /** How exec, console and files reach the instance (`init` when running). */
  attach(ref: InstanceRef, init?: InitProcess): AttachTarget;
  /** Forget a deleted instance's host state (never the volume). */
  delete(ref: InstanceRef): void;
  /** Follow a rename (the volume was renamed by storage). */
  rename(from: InstanceRef, to: InstanceRef): void;
  /** Host directory of the instance's logs. */
  logDir(ref: InstanceRef): string;
  /** Host directory for the instance's device state. */
  devicesDir(ref: InstanceRef): string;
  /** Host path of the instance's rootfs (through the driver's own link). */
  rootfs(ref: InstanceRef): string;
  /** Mounting into / device access for a running instance (device hot-plug). */
  hotplug(ref: InstanceRef): NonNullable<DeviceContext["hotplug"]>;
  /** Set-up a first start needs on the host (shared mounts). Idempotent. */
  prepareHost?(): Promise<void>;
  /** Release host set-up when nothing runs any more (daemon stop). */
  releaseHost?(): Promise<void>;

  /**
   * Optional (CRIU): dump the running instance's state into `dir` (`stop`: and stop it). Throws
   * with CRIU's errors as LXD words them ("<purpose> dump failed" and the log's Error/Warn lines).
   */
  checkpoint?(ref: InstanceRef, opts: { dir: string; stop: boolean; purpose: CheckpointPurpose }): Promise<void>;
  /**
   * Optional (CRIU): a live migration's final dump into `dir`. Once the dump is written,
   * `onDumped` says whether the target has restored it: true stops the instance, false leaves
   * it running (and this throws). CRIU's failures are thrown as `checkpoint`'s.
   */
  liveDump?(ref: InstanceRef, dir: string, onDumped: () => Promise<boolean>): Promise<void>;
  /** Optional (CRIU): start the instance from the dump in `dir` instead of booting it. */
  restore?(ref: InstanceRef, spec: StartSpec, dir: string, purpose: CheckpointPurpose): Promise<InitProcess>;
  /** Optional capability (info.freeze): pause and resume. */
  /** Optional: load raw driver config (`raw.lxc`) as the next start would, refusing what the driver rejects. */
  checkRawConfig?(text: string): Promise<void>;
  freeze?(init: InitProcess, timeoutMs?: number): Promise<void>;
  unfreeze?(init: InitProcess): Promise<void>;
}

export interface InstanceDriverDefinition {
  info: InstanceDriverInfo;
  /** Why the driver can't run here (tools or kernel support missing), or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  load(env: InstanceDriverEnv): InstanceDriver;
}
