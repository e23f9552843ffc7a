// The project's native code (built by `npm ci` through node-gyp): the addon (native/inroot.c,
// native/sealed.c, native/pty.c, native/spawn.c, native/ethtool.c, native/btrfs.c, native/idmap.c, native/netns.c, native/pidwatch.c, native/readfiles.c, native/memory.cc) and the helpers (native/start.c,
// native/attach.c, native/proxy.c, native/uevent.c, native/rsync.c).
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

export interface Native {
  openRoot(path: string): number;
  openInRoot(rootFd: number, path: string, flags: number, mode: number): number;
  mkdirAt(dirFd: number, name: string, mode: number): void;
  symlinkAt(target: string, dirFd: number, name: string): void;
  unlinkAt(dirFd: number, name: string, removeDir: boolean): void;
  renameAt(oldDirFd: number, oldName: string, newDirFd: number, newName: string): void;
  readlinkFd(fd: number): string;
  chownFd(fd: number, uid: number, gid: number): void;
  sealedExecutable(path: string): number;
  /** A pty in the devpts of process `pid`'s root: [master, slave], the slave owned by uid:gid. */
  openPtyInRoot(pid: number, uid: number, gid: number, cols: number, rows: number): [number, number];
  setWindowSize(fd: number, cols: number, rows: number): void;
  /** A connected unix stream socket pair, both ends close-on-exec: [parent end, child end]. */
  socketPair(): [number, number];
  /** posix_spawn; the child's fd i is fds[i] (-1: /dev/null); onExit runs once on the event loop. */
  spawn(path: string, argv: string[], fds: number[], cwd: string, env: string[], onExit: (code: number | null, signal: number | null) => void): number;
  /** SO_PEERCRED of a connected unix socket: [pid, uid, gid] (pid in our pid namespace). */
  peerCredentials(fd: number): [number, number, number];
  /** The ETHTOOL_GLINKSETTINGS ioctl on an interface; null when it has no answer. */
  ethtoolLinkSettings(ifname: string): { autoneg: number; duplex: number; speed: number; port: number; transceiver: number; supported: number[] } | null;
  /** BTRFS_IOC_SET_RECEIVED_SUBVOL: set a subvolume's Received UUID (36-character form). */
  btrfsSetReceivedUuid(path: string, uuid: string): void;
  /** "" when the filesystem holding `path` can be idmapped (open_tree + mount_setattr MOUNT_ATTR_IDMAP), else the errno text. */
  idmapMountError(path: string): string;
  /** lxc_has_api_extension of the installed liblxc (e.g. "idmapped_mounts_v2"). */
  liblxcHasExtension(name: string): boolean;
  /** lxc_get_version() of the installed liblxc; null without one. */
  liblxcVersion(): string | null;
  /** Bind `source` onto the existing `target`, idmapped through the user namespace of `pid`; throws "<step>: <errno text>". */
  idmappedBind(source: string, pid: number, target: string, recursive: boolean): void;
  /**
   * The links and addresses of each process's network namespace (rtnetlink dumps from a thread that
   * enters each namespace in turn); null for a process whose namespace cannot be entered.
   */
  netnsLinks(pids: number[]): Promise<(NetnsLinks | null)[]>;
  /** The text of each small file (up to 64 KiB), read on threads off the event loop; null when unreadable. */
  readSmallFiles(paths: string[]): Promise<(string | null)[]>;
  /** A pidfd of any process polled on the event loop: onExit runs once when it exits; null when there is no such process. */
  watchProcess(pid: number, onExit: () => void): ProcessWatch | null;
  unwatchProcess(watch: ProcessWatch): void;
  /** Whether the watched process has exited (a zombie has), without waiting for the event loop. */
  processExited(watch: ProcessWatch): boolean;
  /** V8's LowMemoryNotification (full collections, young generation shrunk to its initial size), then malloc_trim(0). */
  releaseIdleMemory(): void;
  O_PATH: number;
}

declare const processWatch: unique symbol;
export type ProcessWatch = { readonly [processWatch]: true };

export interface NetnsLinks {
  /** stats: rx bytes, packets, errors, dropped (+ missed, as /proc/net/dev); tx bytes, packets, errors, dropped. */
  links: { index: number; name: string; flags: number; type: number; mtu: number; address: string; stats: number[] }[];
  addrs: { index: number; family: 4 | 6; prefix: number; scope: number; address: string }[];
}

export const native = createRequire(import.meta.url)("../../build/Release/nodelxd_native.node") as Native;

export type Helper = "nodelxd-start" | "nodelxd-attach" | "nodelxd-proxy" | "nodelxd-uevent" | "nodelxd-rsync";
const sealedHelpers = new Map<Helper, string>();

/**
 * The path to run a liblxc helper by: its sealed in-memory copy (/proc/PID/fd/N, made once),
 * so nothing inside a container can ever write to the binary on disk.
 */
export function helperPath(name: Helper): string {
  let path = sealedHelpers.get(name);
  if (!path) {
    const fd = native.sealedExecutable(fileURLToPath(new URL(`../../build/Release/${name}`, import.meta.url)));
    path = `/proc/${process.pid}/fd/${fd}`;
    sealedHelpers.set(name, path);
  }
  return path;
}

/** Link settings of a host interface (undefined-safe when an older build of the addon lacks the call). */
export function linkSettings(ifname: string): ReturnType<Native["ethtoolLinkSettings"]> {
  if (typeof native.ethtoolLinkSettings !== "function") return null;
  try {
    return native.ethtoolLinkSettings(ifname);
  } catch {
    return null;
  }
}
