// Instance devices. A device validates its config and, when its instance starts, returns a
// RunConfig the instance driver applies (liblxc config lines, mounts, network interfaces).
// Devices touch the host only for their own resources (veth pairs, host paths, leases).
import type { Logger } from "pino";
import type { Ports } from "../ports.js";
import type { IdmapEntry } from "../instances/idmap.js";

export type DeviceConfig = Record<string, string>;

export interface DeviceContext {
  project: string;
  instance: string;
  /** The instance's database id (LXD's instance ID, e.g. in BGP owner names); undefined before the row exists. */
  instanceId?(): number | undefined;
  /** The instance's expanded config (profiles applied). */
  instanceConfig: Record<string, string>;
  /** Read and write the instance's volatile.* keys (persisted by the instance service). */
  volatile: { get(key: string): string | undefined; set(changes: Record<string, string>): Promise<void> };
  /** Host directory for this instance's device state: $LXD_DIR/devices/<instance> (<project>_<instance> outside default). */
  devicesDir: string;
  /** Host directory for the instance's logs: $LXD_DIR/logs/<instance> (proxy relays log there). */
  logDir: string;
  /** The instance's expanded devices (proxy nat=true looks for its static bridge address). */
  expandedDevices?: () => Record<string, DeviceConfig>;
  /** Host root of the instance's filesystem (rootfs path), for disk devices. */
  rootfs: string;
  /** Host uid/gid the container's root maps to (0 for privileged). */
  hostRootId: { uid: number; gid: number };
  /** The instance's id map ([] when privileged), to shift attached custom volumes. */
  idmap: IdmapEntry[];
  ports: Pick<Ports, "storage" | "projects" | "instances" | "networks">;
  log: Logger;
  /** Mounting into a running container (hot-plugged disks); provided by the instance driver. */
  hotplug?: {
    /** `userns`: idmap the bind through that process's user namespace (shift=true). */
    mount(pid: number, source: string, target: string, opts: { readonly: boolean; recursive: boolean; isDir: boolean; userns?: number }): Promise<void>;
    unmount(pid: number, target: string, opts?: { remove?: boolean }): Promise<void>;
    /** Allow a device in the container's device cgroup ("c 1:3 rwm"). */
    allowDevice?(pid: number, rule: string): void;
    /** Deny it again (a hot-unplugged node). */
    denyDevice?(pid: number, rule: string): void;
    /** Send a uevent into the container's network namespace (LXD's forkuevent inject). */
    uevent?(pid: number, parts: string[]): Promise<void>;
  };
}

export interface NetworkInterfaceConfig {
  /** liblxc lxc.net.N.* keys without the prefix, e.g. { type: "veth", link: "br0", name: "eth0", "veth.pair": "vethXYZ", hwaddr, mtu, flags: "up" }. */
  [key: string]: string;
}

export interface RunConfig {
  /** liblxc config entries, e.g. ["lxc.mount.entry", "/src dst none bind,create=dir 0 0"]. */
  lxc?: [string, string][];
  /** One entry per network interface liblxc should create/move in; index assigned by the driver. */
  networkInterfaces?: NetworkInterfaceConfig[];
  /**
   * NVIDIA devices for libnvidia-container (LXD's GPUDevice "nvidia.device" items, e.g.
   * "MIG-<gpu uuid>/<gi>/<ci>"): joined into NVIDIA_VISIBLE_DEVICES, which the nvidia hook reads.
   */
  nvidiaDevices?: string[];
  /** Runs after the container started (pid known): e.g. routes on the host side. */
  postStart?: (pid: number) => Promise<void>;
}

export interface Device {
  readonly name: string;
  readonly config: DeviceConfig;
  /** Validate the config; throw Error with LXD's message. Called before anything is saved. */
  validate(): void;
  /** Prepare host resources before the instance starts and describe what liblxc must do. */
  start(): Promise<RunConfig>;
  /** Release host resources after the instance stopped (idempotent). */
  stop(): Promise<void>;
  /** Attach to a running instance (hot-plug); absent = the device can't be hot-plugged. */
  attach?(pid: number): Promise<void>;
  /** Detach from a running instance. */
  detach?(pid: number): Promise<void>;
  /** The daemon started while the instance runs: take over (or redo) the device's host-side processes. */
  adopt?(pid: number): Promise<void>;
  /** The instance rebooted in place (liblxc recreated its interfaces): redo the host-side setup. */
  rebooted?(pid: number): Promise<void>;
  /**
   * Apply a config change to a running instance in place (LXD's updatable fields, e.g. a NIC's
   * limits and static addresses). Returns false when the change needs a detach and re-attach.
   */
  update?(pid: number, previous: DeviceConfig): Promise<boolean>;
  /**
   * LXD's Add: the device was added to an instance, running or not (device added, instance
   * created or renamed to this name), or its config changed while the instance is stopped
   * (`previous` is the config it replaces). Host state that must exist before any start, such
   * as a NIC's static DHCP host entry.
   */
  add?(previous?: DeviceConfig): Promise<void>;
  /** The device is being removed from the instance (or the instance deleted): forget state. */
  remove?(): Promise<void>;
}

export type DeviceFactory = (ctx: DeviceContext, name: string, config: DeviceConfig) => Device;

/**
 * A device check LXD makes only on an instance's expanded devices, when the device is added
 * (custom volume content type and path): reported as LXD's "Failed add validation for device".
 */
export class AddValidationError extends Error {}
