// Loading a kernel module as LXD's util.LoadModule does.
import { existsSync } from "node:fs";
import { CommandError, run } from "./exec.js";

/**
 * LXD's util.LoadModule for a module name the daemon chose: nothing when /sys/module has it,
 * else `modprobe -b`; throws "Failed to run: modprobe -b X: exit status N (stderr)".
 */
export async function loadModule(module: string): Promise<void> {
  if (existsSync(`/sys/module/${module}`)) return;
  try {
    await run("modprobe", ["-b", module]);
  } catch (e) {
    throw new Error(e instanceof CommandError ? `Failed to run: ${e.command}: exit status ${e.exitCode} (${e.stderr.trim()})` : (e as Error).message);
  }
}
