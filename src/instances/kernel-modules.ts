// linux.kernel_modules: the host modules a container needs, loaded before it starts (and when
// the key changes on a running container), as LXD's util.LoadModule does.
import { loadModule } from "../os/kernel-module.js";

/** The module names in a linux.kernel_modules value ("a, b" → ["a", "b"]; one leading space trimmed, as upstream). */
export function kernelModuleNames(value: string): string[] {
  if (value === "") return [];
  return value.split(",").map((m) => (m.startsWith(" ") ? m.slice(1) : m));
}

/**
 * Load each module not already present in /sys/module (built in or loaded) with `modprobe -b`.
 * Throws LXD's "Failed to load kernel module 'X': Failed to run: modprobe -b X: exit status N (stderr)".
 */
export async function loadKernelModules(value: string | undefined): Promise<void> {
  for (const module of kernelModuleNames(value ?? "")) {
    // Never a path below /sys/module or an option to modprobe.
    if (!/^([A-Za-z0-9_][A-Za-z0-9_.+-]*)?$/.test(module)) throw new Error(`Failed to load kernel module '${module}': Invalid module name`);
    try {
      await loadModule(module);
    } catch (e) {
      throw new Error(`Failed to load kernel module '${module}': ${(e as Error).message}`);
    }
  }
}

