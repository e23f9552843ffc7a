// Paths inside an instance's filesystem, resolved by the kernel so that nothing — a symlink,
// "..", an absolute link target — can lead out of it (openat2 RESOLVE_IN_ROOT, see
// native/inroot.c). A running container is entered through /proc/PID/root, so its own mounts
// (tmpfs /tmp, ...) are what the caller sees; a stopped one through its rootfs directory.
import { closeSync, constants, fstatSync, type Stats } from "node:fs";
import { posix } from "node:path";
import type { InstanceRuntime } from "../instances/runtime-port.js";
import { native } from "../os/native.js";


export const O_PATH = native.O_PATH;

/** Split an absolute in-container path into its parent and last component. */
export function splitPath(path: string): { parent: string; base: string } {
  const clean = posix.normalize("/" + path).replace(/\/+$/, "");
  if (clean === "" || clean === "/") return { parent: "/", base: "" };
  return { parent: posix.dirname(clean), base: posix.basename(clean) };
}

export class InstanceRoot {
  private constructor(private readonly fd: number) {}

  /** The root of a running instance's mount namespace, or a stopped one's rootfs. */
  static open(rt: InstanceRuntime): InstanceRoot {
    return new InstanceRoot(native.openRoot(rt.attach.rootPath));
  }

  /** open(2) of `path` inside the root; the caller closes the fd. */
  open(path: string, flags: number, mode = 0): number {
    return native.openInRoot(this.fd, path, flags, mode);
  }

  /** The entry at `path` itself (a symlink is not followed): its stats and an O_PATH fd. */
  lstat(path: string): { fd: number; stat: Stats } {
    const fd = this.open(path, O_PATH | constants.O_NOFOLLOW);
    try {
      return { fd, stat: fstatSync(fd) };
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Like lstat, but undefined when nothing is there. */
  tryLstat(path: string): { fd: number; stat: Stats } | undefined {
    try {
      return this.lstat(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  }

  /** Run `fn` with an fd on the parent directory of `path` and the last component's name. */
  inParent<T>(path: string, fn: (dirFd: number, name: string) => T): T {
    const { parent, base } = splitPath(path);
    if (!base) throw Object.assign(new Error("Path is the root directory"), { code: "EINVAL" });
    const dirFd = this.open(parent, O_PATH | constants.O_DIRECTORY);
    try {
      return fn(dirFd, base);
    } finally {
      closeSync(dirFd);
    }
  }

  mkdir(path: string, mode: number): void {
    this.inParent(path, (dir, name) => native.mkdirAt(dir, name, mode));
  }

  symlink(target: string, path: string): void {
    this.inParent(path, (dir, name) => native.symlinkAt(target, dir, name));
  }

  remove(path: string, isDir: boolean): void {
    this.inParent(path, (dir, name) => native.unlinkAt(dir, name, isDir));
  }

  rename(from: string, to: string): void {
    this.inParent(from, (oldDir, oldName) => this.inParent(to, (newDir, newName) => native.renameAt(oldDir, oldName, newDir, newName)));
  }

  readlink(fd: number): string {
    return native.readlinkFd(fd);
  }

  /** chown that never follows a symlink (works on O_PATH fds). */
  chown(fd: number, uid: number, gid: number): void {
    native.chownFd(fd, uid, gid);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Run `fn` with the instance's root open, closing it afterwards. */
export function withRoot<T>(rt: InstanceRuntime, fn: (root: InstanceRoot) => T): T {
  const root = InstanceRoot.open(rt);
  try {
    return fn(root);
  } finally {
    root.close();
  }
}
