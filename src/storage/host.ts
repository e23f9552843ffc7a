// Host helpers shared by storage drivers: mount table lookups (read from /proc, never spawned),
// mount/umount, loop devices, and filesystem statistics.
import { readFileSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { run } from "../os/exec.js";
import type { PoolUsage } from "./drivers/types.js";

/** Decode the octal escapes (\040 for space, ...) of /proc/self/mountinfo fields. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

export function mountTable(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    if (!line) continue;
    const [left, right] = line.split(" - ");
    const fields = left.split(" ");
    const rest = (right ?? "").split(" ");
    out.push({ mountPoint: unescapeMountField(fields[4]), fsType: rest[0] ?? "", source: unescapeMountField(rest[1] ?? "") });
  }
  return out;
}

/** Mount points at or below `dir`, deepest first. */
export function mountsBelow(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : dir + "/";
  return mountTable()
    .map((m) => m.mountPoint)
    .filter((m) => m === dir || m.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

export function isMountPoint(path: string): boolean {
  return mountTable().some((m) => m.mountPoint === path);
}

export async function bindMount(source: string, target: string, signal?: AbortSignal): Promise<void> {
  await run("mount", ["--bind", source, target], { signal });
}

export async function mountFs(source: string, target: string, fsType: string, options: string, signal?: AbortSignal): Promise<void> {
  const args = ["-t", fsType, ...(options ? ["-o", options] : []), source, target];
  await run("mount", args, { signal });
}

/** Unmount every mount stacked on `target`; true if anything was unmounted. */
export async function unmountAll(target: string, signal?: AbortSignal): Promise<boolean> {
  let did = false;
  while (isMountPoint(target)) {
    await run("umount", [target], { signal });
    did = true;
  }
  return did;
}

/** The loop device backing `file`, if one is attached. */
export async function loopOf(file: string): Promise<string | undefined> {
  const r = await run("losetup", ["-n", "-O", "NAME", "-j", file], { reject: false });
  return r.exitCode === 0 ? r.stdout.split("\n")[0]?.trim() || undefined : undefined;
}

export async function fsUsage(path: string): Promise<PoolUsage> {
  const s = await statfs(path);
  return {
    space: { used: (s.blocks - s.bfree) * s.bsize, total: s.blocks * s.bsize },
    inodes: { used: s.files - s.ffree, total: s.files },
  };
}

/**
 * Refuse to recursively delete a tree something is mounted in: a recursive delete would
 * follow the mount onto whatever filesystem it shows.
 */
export function assertNoMountsUnder(path: string): void {
  const prefix = path.endsWith("/") ? path : path + "/";
  const inside = mountTable().find((m) => m.mountPoint.startsWith(prefix));
  if (inside) throw new Error(`Cannot delete "${path}": "${inside.mountPoint}" is mounted inside it`);
}
