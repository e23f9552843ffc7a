// LXD's loadNvidiaContainer: the NVIDIA cards as `nvidia-container-cli info --csv` describes
// them (the only source of their UUIDs and CUDA/NVRM versions), when the tool is on the
// daemon's PATH and succeeds; undefined otherwise, and the caller falls back to /proc as LXD.
import { onPath, run } from "../os/exec.js";
import { parseNvidiaContainerInfo, type NvidiaCardInfo } from "./sysfs.js";

export async function nvidiaContainerCards(): Promise<Map<string, NvidiaCardInfo> | undefined> {
  if (!onPath("nvidia-container-cli")) return undefined;
  const r = await run("nvidia-container-cli", ["info", "--csv"], { reject: false });
  return r.exitCode === 0 ? parseNvidiaContainerInfo(r.stdout) : undefined;
}
