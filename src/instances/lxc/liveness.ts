// Which containers' init processes are alive, known without reading /proc on every question: the
// first question about an init opens a pidfd to it (native pidfd_open, polled on the event loop)
// and checks its start time once; from then on the answer is in memory until the kernel says the
// process exited, which also tells the listeners (the instance watcher). The driver keeps the
// init's cgroup directories with it: liblxc never moves a container's init.
import { readFileSync } from "node:fs";
import { native, type ProcessWatch } from "../../os/native.js";
import type { InitProcess } from "../drivers/types.js";

/** A process's state letter and start time from /proc/PID/stat, or undefined when there is none. */
function procStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0], startTime: rest[19] };
  } catch {
    return undefined;
  }
}

export function procStartTime(pid: number): string | undefined {
  return procStat(pid)?.startTime;
}

interface Tracked {
  startTime: string;
  watch: ProcessWatch;
  /** What the driver keeps about the process while it lives (its cgroup directories). */
  data?: unknown;
}

export class InitLiveness {
  private readonly tracked = new Map<number, Tracked>();
  private readonly listeners = new Set<() => void>();

  /** Whether `init` is still the live init process (a /proc read only the first time). */
  alive(init: InitProcess | undefined): init is InitProcess {
    if (!init || init.pid <= 0) return false;
    const t = this.tracked.get(init.pid);
    if (t && t.startTime === init.startTime) return true;
    return this.track(init);
  }

  /** A value kept for the life of a live init, made on first use (undefined when not tracked). */
  perProcess<T>(init: InitProcess, make: () => T): T | undefined {
    const t = this.tracked.get(init.pid);
    if (!t || t.startTime !== init.startTime) return undefined;
    return (t.data ??= make()) as T;
  }

  /** `listener` runs after any tracked init exits. */
  onExit(listener: () => void): void {
    this.listeners.add(listener);
  }

  private track(init: InitProcess): boolean {
    const previous = this.tracked.get(init.pid);
    if (previous) {
      native.unwatchProcess(previous.watch); // the pid now names another process
      this.tracked.delete(init.pid);
    }
    const watch = native.watchProcess(init.pid, () => this.exited(init.pid, watch!));
    if (!watch) return false;
    // Checked after the pidfd is open: if the start time matches now, the pidfd is this init.
    // A zombie has exited (its pidfd is readable at once): not alive.
    const stat = procStat(init.pid);
    if (stat?.startTime !== init.startTime || stat.state === "Z" || stat.state === "X") {
      native.unwatchProcess(watch);
      return false;
    }
    this.tracked.set(init.pid, { startTime: init.startTime, watch });
    return true;
  }

  private exited(pid: number, watch: ProcessWatch): void {
    if (this.tracked.get(pid)?.watch === watch) this.tracked.delete(pid);
    for (const l of this.listeners) l();
  }
}
