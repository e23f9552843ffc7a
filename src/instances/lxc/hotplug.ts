// Mounting into a running container (hot-plugged disks): bind the source below the shared
// shmounts/<name> tmpfs, which the container sees at /dev/.lxd-mounts, then move it into place
// from inside the container's mount namespace. Also $LXD_DIR/shmounts itself.
import { mkdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DeviceContext } from "../../devices/types.js";
import { injectUevent } from "../../devices/uevents.js";
import { run } from "../../os/exec.js";
import { native } from "../../os/native.js";
import { controllerVersion, writeLimit, type CgroupLayout } from "./cgroup.js";

const mounted = (dir: string): boolean => {
  try {
    return readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .some((l) => l.split(" ")[4] === dir);
  } catch {
    return false;
  }
};

/**
 * $LXD_DIR/shmounts as upstream keeps it: a small tmpfs with shared propagation, so mounts made
 * below shmounts/<name> on the host appear in the container at /dev/.lxd-mounts (hot-plug).
 */
export async function ensureShmounts(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  if (mounted(dir)) return;
  await run("mount", ["-t", "tmpfs", "-o", "size=100k,mode=0711", "tmpfs", dir]);
  await run("mount", ["--make-shared", dir]);
}

export async function releaseShmounts(dir: string): Promise<void> {
  if (mounted(dir)) await run("umount", ["-l", dir], { reject: false });
}

/**
 * Enter the container's mount and pid namespaces, and its user namespace when it has one:
 * the program run comes from the container's filesystem, so it must not run with host root
 * privileges over an unprivileged container.
 */
function nsenterArgs(pid: number): string[] {
  const args = ["-t", String(pid), "-m", "-p"];
  let own = "";
  let theirs = "";
  try {
    own = readlinkSync("/proc/self/ns/user");
    theirs = readlinkSync(`/proc/${pid}/ns/user`);
  } catch {
    /* no user namespaces */
  }
  if (own && theirs && own !== theirs) args.push("-U");
  return args;
}

/** Hot-plug for the container whose shmounts directory is `shmounts` (shmounts/<lxc name>). */
export function hotplugFor(shmounts: string, layout: CgroupLayout): NonNullable<DeviceContext["hotplug"]> {
  return {
    async mount(pid, source, target, opts) {
      const tmp = `.hotplug-${process.hrtime.bigint().toString(36)}`;
      const host = join(shmounts, tmp);
      if (opts.isDir) mkdirSync(host);
      else writeFileSync(host, "");
      try {
        if (opts.userns !== undefined) native.idmappedBind(source, opts.userns, host, opts.recursive);
        else await run("mount", ["--no-mtab", opts.recursive ? "--rbind" : "--bind", source, host]);
        if (opts.readonly) await run("mount", ["--no-mtab", "-o", "remount,bind,ro", host]);
        // Inside the container's mount namespace the shared tmpfs is /dev/.lxd-mounts.
        const inner = `/dev/.lxd-mounts/${tmp}`;
        // Paths travel as positional arguments, never inside the script text.
        const script = [
          opts.isDir ? 'mkdir -p "$1"' : 'mkdir -p "$(dirname "$1")" && touch "$1"',
          'mount --bind "$2" "$1"',
          ...(opts.readonly ? ['mount -o remount,bind,ro "$1"'] : []),
        ].join(" && ");
        await run("nsenter", [...nsenterArgs(pid), "--", "sh", "-c", script, "sh", target, inner]);
      } catch (e) {
        await run("umount", ["-l", host], { reject: false });
        throw new Error(`Failed to add mount: ${(e as Error).message}`);
      } finally {
        await run("umount", ["-l", host], { reject: false });
        await run("rm", ["-rf", "--one-file-system", host], { reject: false });
      }
    },
    async unmount(pid, target, opts) {
      await run("nsenter", [...nsenterArgs(pid), "--", "umount", "-l", target], { reject: false });
      if (opts?.remove) await run("nsenter", [...nsenterArgs(pid), "--", "rm", "-f", target], { reject: false });
    },
    allowDevice(pid, rule) {
      if (controllerVersion(layout, "devices") === "v1") writeLimit(layout, pid, "devices", { v1: "devices.allow", v2: "devices.allow" }, rule);
    },
    denyDevice(pid, rule) {
      if (controllerVersion(layout, "devices") === "v1") writeLimit(layout, pid, "devices", { v1: "devices.deny", v2: "devices.deny" }, rule);
    },
    uevent: (pid, parts) => injectUevent(pid, parts),
  };
}
