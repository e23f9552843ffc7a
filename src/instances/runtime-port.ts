// What exec, console and file transfer need to know about one instance (the instances
// feature serves it through `InstancesPort.runtimeOf`). Not to be confused with the instances
// feature's own runtime class: this is the narrow read-only view handed across the port.

/** Maps ids between the container's view and the host's (identity for privileged containers). */
import type { Helper } from "../os/native.js";

/** A command to run inside a running instance. */
export interface CommandSpec {
  command: string[];
  env: Record<string, string>;
  cwd: string;
  user: number;
  group: number;
}

/**
 * How exec, console and file transfer reach an instance: programs and arguments the driver
 * built, and a host path to its filesystem. Callers never see the driver's own names.
 */
export interface AttachTarget {
  /** Run a command inside: helper program (os/native helperPath name) and its argv. */
  exec(spec: CommandSpec, gateFd?: number): { helper: Helper; args: string[] };
  /** The instance console on a terminal: a program (found on PATH) and its argv. */
  console(): { program: string; args: string[] };
  /** Host path of the root filesystem: /proc/PID/root while running, the volume's rootfs otherwise. */
  rootPath: string;
}


export interface IdMap {
  /** Container uid → host uid. */
  uid(containerUid: number): number;
  gid(containerGid: number): number;
  /** Host uid → container uid (-1 if unmapped). */
  reverseUid(hostUid: number): number;
  reverseGid(hostGid: number): number;
}

export interface InstanceRuntime {
  project: string;
  /** The instance name (URLs, log directory). */
  name: string;
  running: boolean;
  /** Frozen (paused) instances refuse exec. */
  frozen?: boolean;
  /** Host pid of the container's init, when running. */
  pid?: number;
  /** How to reach it (exec helper, console program, root path), as its driver builds them. */
  attach: AttachTarget;
  /** Host directory of the instance's logs (exec output is recorded there). */
  logDir: string;
  idmap: IdMap;
  /** The instance's expanded `environment.*` keys, without the prefix. */
  environment?: Record<string, string>;
}

/** The identity map, for privileged containers. */
export const identityIdMap: IdMap = {
  uid: (u) => u,
  gid: (g) => g,
  reverseUid: (u) => u,
  reverseGid: (g) => g,
};

/** A map of one contiguous range (LXD's default: container 0..size-1 → host base..base+size-1). */
export function rangeIdMap(uidBase: number, gidBase: number, size: number): IdMap {
  const back = (id: number, base: number) => (id >= base && id < base + size ? id - base : -1);
  return {
    uid: (u) => (u >= 0 && u < size ? uidBase + u : -1),
    gid: (g) => (g >= 0 && g < size ? gidBase + g : -1),
    reverseUid: (u) => back(u, uidBase),
    reverseGid: (g) => back(g, gidBase),
  };
}
