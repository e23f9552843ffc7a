// nvidia.runtime for containers, as LXD 5.0.2's initLXC: with nvidia.runtime=true the container
// gets liblxc's `nvidia` mount hook (from $LXD_LXC_HOOK, else /usr/share/lxc/hooks), which runs
// libnvidia-container's nvidia-container-cli to bring the host's driver libraries and tools in,
// steered by NVIDIA_* environment variables. Both must be present or the start fails with
// LXD's message. Debian 12 main has no nvidia-container-cli, so on a stock host the start is
// refused; the config lines are what LXD writes.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { onPath } from "../../os/exec.js";
import { isTrue } from "../config-keys.js";

/** The liblxc nvidia hook LXD uses: $LXD_LXC_HOOK/nvidia, else /usr/share/lxc/hooks/nvidia. */
export function nvidiaHookPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.LXD_LXC_HOOK || "/usr/share/lxc/hooks", "nvidia");
}

/**
 * The hook to run for this config (undefined when nvidia.runtime is off); throws LXD's error
 * when the hook or nvidia-container-cli (looked up on the daemon's PATH) is missing.
 */
export function nvidiaRuntimeHook(config: Record<string, string>, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (!isTrue(config["nvidia.runtime"] ?? "")) return undefined;
  const hook = nvidiaHookPath(env);
  if (!existsSync(hook)) throw new Error("The NVIDIA LXC hook couldn't be found");
  if (!onPath("nvidia-container-cli")) throw new Error("The NVIDIA container tools couldn't be found");
  return hook;
}

/**
 * LXD's lines, in its order. As 5.0.2 writes them, NVIDIA_REQUIRE_CUDA and NVIDIA_REQUIRE_DRIVER
 * are set (empty) only when nvidia.require.cuda / nvidia.require.driver are NOT set, and a set
 * value is not passed on (its condition is inverted); kept as LXD does it.
 */
export function nvidiaConfigLines(config: Record<string, string>, hook: string): [string, string][] {
  const out: [string, string][] = [["lxc.environment", "NVIDIA_VISIBLE_DEVICES=none"]];
  out.push(["lxc.environment", `NVIDIA_DRIVER_CAPABILITIES=${config["nvidia.driver.capabilities"] || "compute,utility"}`]);
  if (!config["nvidia.require.cuda"]) out.push(["lxc.environment", "NVIDIA_REQUIRE_CUDA="]);
  if (!config["nvidia.require.driver"]) out.push(["lxc.environment", "NVIDIA_REQUIRE_DRIVER="]);
  out.push(["lxc.hook.mount", hook]);
  return out;
}
