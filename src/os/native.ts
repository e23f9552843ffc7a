// The project's native addon (native/inroot.c, built by `npm ci` through node-gyp).
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
  ttyCanonical(fd: number): boolean;
  O_PATH: number;
}

export const native = createRequire(import.meta.url)("../../build/Release/nodelxd_native.node") as Native;
