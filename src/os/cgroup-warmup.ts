// Moving a process into a cgroup (what liblxc's attach does for every exec) takes the kernel's
// global cgroup_threadgroup_rwsem for writing, and the first writer after a quiet spell waits
// out an RCU grace period (5-20 ms here); writers that follow within about one grace period
// pass straight through. The daemon starts that wait when an exec request arrives, by writing
// its own pid into the cgroup it is already in (a no-op move), so the grace period runs while
// the client connects its websockets and the helper starts, not after them.
import { closeSync, constants, openSync, readFileSync, write } from "node:fs";
import { posix } from "node:path";

/** The cgroup.procs file of this process's own cgroup, from /proc/self/cgroup and /proc/self/mountinfo. */
export function ownCgroupProcsFile(procCgroup: string, mountinfo: string): string | undefined {
  const mounts = mountinfo
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [left, right = ""] = line.split(" - ");
      const f = left.split(" ");
      const [fsType, , superOptions = ""] = right.split(" ");
      return { root: f[3] ?? "", mountPoint: (f[4] ?? "").replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), fsType, options: superOptions.split(",") };
    });
  const memberships = procCgroup
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [, controllers = "", ...path] = line.split(":");
      return { controllers: controllers ? controllers.split(",") : [], path: path.join(":") };
    });
  // The unified hierarchy first, then any v1 hierarchy that is mounted here.
  const ordered = [...memberships.filter((m) => m.controllers.length === 0), ...memberships.filter((m) => m.controllers.length > 0)];
  for (const m of ordered) {
    const mount = mounts.find((t) =>
      m.controllers.length === 0 ? t.fsType === "cgroup2" : t.fsType === "cgroup" && m.controllers.every((c) => t.options.includes(c)),
    );
    if (!mount || !m.path.startsWith("/")) continue;
    const relative = posix.relative(mount.root, m.path);
    if (relative.startsWith("..")) continue;
    return posix.join(mount.mountPoint, relative, "cgroup.procs");
  }
  return undefined;
}

// The file stays open: a write is then a single thread-pool job that starts at once, where
// writeFile's open, write and close would each wait for the event loop in between.
let procsFd: number | null | undefined;
const ownPid = Buffer.from(String(process.pid));

/** Start the grace period now, without waiting for it; harmless where it cannot be done. */
export function warmCgroupMigration(): void {
  if (procsFd === undefined) {
    try {
      const file = ownCgroupProcsFile(readFileSync("/proc/self/cgroup", "utf8"), readFileSync("/proc/self/mountinfo", "utf8"));
      procsFd = file ? openSync(file, constants.O_WRONLY) : null;
    } catch {
      procsFd = null;
    }
  }
  const fd = procsFd;
  if (fd === null) return;
  write(fd, ownPid, (err) => {
    if (err && procsFd === fd) {
      closeSync(fd);
      procsFd = null;
    }
  });
}
