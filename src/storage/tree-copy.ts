// Copying a volume's tree out to a new directory outside the pool (backup staging, publish),
// the cheapest way the host allows: hard links when the caller only reads and the target is on
// the same filesystem, else reflinks where the filesystem has them (btrfs, xfs), else a copy.
// Ownership by number, modes, xattrs and ACLs are kept. Storage drivers use it for exportVolume;
// no service copies trees itself.
import { rm } from "node:fs/promises";
import { run } from "../os/exec.js";

export async function copyTreeOut(source: string, target: string, opts: { link?: boolean; signal?: AbortSignal } = {}): Promise<void> {
  if (opts.link) {
    try {
      await run("cp", ["-a", "-l", "--", source, target], { signal: opts.signal });
      return;
    } catch {
      await rm(target, { recursive: true, force: true });
    }
  }
  await run("cp", ["-a", "--reflink=auto", "--", source, target], { signal: opts.signal });
}

/** Copy the content of `source` into the existing, empty directory `target` (reflinks where possible). */
export async function copyTreeInto(source: string, target: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
  await run("cp", ["-a", "--reflink=auto", "--", `${source}/.`, target], { signal: opts.signal });
}

/** exportVolume for block drivers: mount the volume for the copy when it wasn't, unmount after. */
export async function exportBlockVolume<V>(
  driver: { volumePath(v: V): string; mountVolume(v: V, o?: { signal?: AbortSignal }): Promise<string>; unmountVolume(v: V, o?: { signal?: AbortSignal }): Promise<boolean> },
  vol: V,
  target: string,
  opts: { link?: boolean; signal?: AbortSignal },
  isMounted: (path: string) => boolean,
): Promise<void> {
  const wasMounted = isMounted(driver.volumePath(vol));
  try {
    await copyTreeOut(await driver.mountVolume(vol, opts), target, opts);
  } finally {
    if (!wasMounted) await driver.unmountVolume(vol, opts);
  }
}
