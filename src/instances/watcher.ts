// Following running instances: noticing the ones that stop (or reboot) on their own, re-adopting
// running instances when the daemon starts, autostart, and stopping everything at `lxd shutdown`.
// The watcher follows an in-memory set of running instances (filled at start-up and by every
// start), not the instances table. With a driver that reports exits (lxc: a pidfd per init on
// the event loop) it looks only when an init exits, so its cost does not grow with the number of
// running instances; otherwise it asks the driver twice a second.
import type { Logger } from "pino";
import { cpus } from "node:os";
import { WARNING_TYPES, type WarningType } from "../daemon/host-warnings.js";
import type { InstanceRow } from "../db/instance-repo.js";
import { isTrue } from "./config-keys.js";
import type { InitProcess } from "./drivers/types.js";
import type { InstanceDevices } from "./instance-devices.js";
import { initOf, instanceUrl, type InstanceRecords } from "./rows.js";
import type { InstanceRuntime } from "./runtime.js";

export interface WatcherDeps {
  records: InstanceRecords;
  runtime: InstanceRuntime;
  devices: InstanceDevices;
  events: { lifecycle(action: string, source: string, opts?: { project?: string }): void };
  warnings: {
    record(type: WarningType, message: string, opts: { project: string; entity: string }): void;
    resolveEntity(code: number, project: string, entity: string): void;
  };
  log: Logger;
}

const TICK_MS = 500;

export class InstanceWatcher {
  /** "project/name" → the init process it was started or adopted with. */
  private readonly running = new Map<string, { project: string; name: string; init: InitProcess }>();
  private timer?: NodeJS.Timeout;
  private polling = false;
  /** An exit was reported while a poll was running: poll once more after it. */
  private again = false;
  private readonly eventDriven: boolean;
  /** Settles when the autostart run that adopt() began is over (never rejects). */
  autostarted: Promise<void> = Promise.resolve();

  constructor(private readonly deps: WatcherDeps) {
    deps.runtime.onStarted = (project, name, init) => this.follow(project, name, init);
    const driver = deps.runtime.driver;
    this.eventDriven = typeof driver.onExit === "function";
    driver.onExit?.(() => void this.poll());
  }

  /** Follow a running instance until it stops. */
  follow(project: string, name: string, init: InitProcess): void {
    this.running.set(`${project}/${name}`, { project, name, init });
    if (this.eventDriven) {
      // Asking arms the driver's exit report for this init; one that is already gone is handled now.
      if (!this.deps.runtime.driver.alive(init)) void this.poll();
      return;
    }
    if (this.timer) return;
    this.timer = setInterval(() => void this.poll(), TICK_MS);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    if (this.polling) {
      this.again = true;
      return;
    }
    this.polling = true;
    this.again = false;
    const { runtime, log } = this.deps;
    try {
      let skipped = false;
      for (const [k, e] of this.running) {
        if (runtime.busy(e.project, e.name)) {
          skipped = true;
          continue;
        }
        if (runtime.driver.alive(e.init)) continue;
        const row = this.deps.records.get(e.project, e.name);
        const current = row && initOf(row);
        if (!row || !current) {
          this.running.delete(k); // stopped or deleted through the API
          continue;
        }
        if (current.pid !== e.init.pid || current.startTime !== e.init.startTime) {
          this.follow(e.project, e.name, current); // restarted meanwhile
          continue;
        }
        await runtime.serialize(e.project, e.name, () => this.onExited(row)).catch((err) => log.error({ err }, "handling a stopped container failed"));
      }
      // An instance in the middle of an operation is looked at again shortly (its exit report has been spent).
      if (skipped && this.eventDriven) setTimeout(() => void this.poll(), TICK_MS).unref();
      if (this.running.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    } finally {
      this.polling = false;
    }
    if (this.again) await this.poll();
  }

  /** The init process died without us stopping it: a shutdown or reboot from inside. */
  private async onExited(stale: InstanceRow): Promise<void> {
    const { records, runtime, events, log } = this.deps;
    const k = `${stale.project}/${stale.name}`;
    const row = records.get(stale.project, stale.name);
    if (!row || row.init_pid !== stale.init_pid || runtime.isRunning(row)) return;
    const ref = { project: row.project, name: row.name };
    const init = await runtime.driver.runningInit(ref);
    if (init) {
      // the driver rebooted it (liblxc does on a reboot from inside)
      records.setInit(row.project, row.name, init);
      this.follow(ref.project, ref.name, init);
      for (const d of this.deps.devices.of(row, records.expanded(row).devices)) {
        await d.rebooted?.(init.pid).catch((e) => log.warn({ err: e, device: d.name }, "device setup after reboot failed"));
      }
      events.lifecycle("instance-restarted", instanceUrl(row.project, row.name), { project: row.project });
      return;
    }
    this.running.delete(k);
    await runtime.driver.waitStopped(ref, 10);
    await runtime.finishStop(row);
    events.lifecycle("instance-shutdown", instanceUrl(row.project, row.name), { project: row.project });
    await runtime.deleteIfEphemeral(row.project, row.name);
  }

  /**
   * A row that says Stopped while the driver runs the instance: the daemon died between the
   * start and recording it (kill -9 in the middle of a start). Record what the driver reports,
   * so the row and the process agree. Returns whether it was running.
   */
  async reconcileUnrecorded(row: InstanceRow): Promise<boolean> {
    const init = await this.deps.runtime.driver.runningInit({ project: row.project, name: row.name });
    if (!init) return false;
    this.deps.log.warn({ instance: row.name, project: row.project, pid: init.pid }, "adopting a container whose start was not recorded (daemon crash)");
    this.deps.records.setInit(row.project, row.name, init);
    this.deps.records.setVolatile(row.project, row.name, { "volatile.last_state.power": "RUNNING" });
    this.follow(row.project, row.name, init);
    return true;
  }

  /** Daemon start: re-adopt running instances, clean up ones that stopped while we were away, autostart. */
  async adopt(): Promise<void> {
    const { records, runtime, log } = this.deps;
    const toStart: InstanceRow[] = [];
    for (const row of records.all()) {
      const init = initOf(row);
      if (init) {
        if (runtime.isRunning(row)) {
          this.follow(row.project, row.name, init);
          // Host-side device processes (proxy relays) outlive the daemon: take them over.
          for (const d of this.deps.devices.of(row, records.expanded(row).devices)) {
            await d.adopt?.(init.pid).catch((e) => log.warn({ err: e, instance: row.name, device: d.name }, "device adoption failed"));
          }
          continue;
        }
        await this.onExited(row).catch((e) => log.error({ err: e, instance: row.name }, "cleanup of a stopped container failed"));
        continue;
      }
      if (await this.reconcileUnrecorded(row).catch((e) => (log.error({ err: e, instance: row.name }, "cannot ask the instance driver about an instance"), false))) continue;
      let ex: Record<string, string>;
      try {
        ex = records.expanded(row).config;
      } catch {
        continue;
      }
      const auto = ex["boot.autostart"];
      if (isTrue(auto) || (auto === undefined && row.config["volatile.last_state.power"] === "RUNNING")) toStart.push(row);
    }
    const cfg = (r: InstanceRow, k: string) => records.expanded(r).config[k];
    toStart.sort((a, b) => Number(cfg(b, "boot.autostart.priority") ?? 0) - Number(cfg(a, "boot.autostart.priority") ?? 0));
    this.autostarted = (async () => {
      for (const row of toStart) {
        const entity = instanceUrl(row.project, row.name);
        try {
          await runtime.start(row.project, row.name);
          this.deps.warnings.resolveEntity(WARNING_TYPES.instanceAutostartFailure.code, row.project, entity);
        } catch (e) {
          log.error({ err: e, instance: row.name }, "autostart failed");
          // As LXD: a warning on the instance, resolved by the next successful autostart.
          this.deps.warnings.record(WARNING_TYPES.instanceAutostartFailure, (e as Error).message, { project: row.project, entity });
        }
        const delay = Number(cfg(row, "boot.autostart.delay") ?? 0);
        if (delay > 0) await new Promise((r) => setTimeout(r, delay * 1000));
      }
    })();
  }

  /** Daemon stop: SIGTERM leaves instances running; `lxd shutdown` stops them (they come back at start). */
  async shutdown(stopInstances: boolean): Promise<void> {
    const { records, runtime, log } = this.deps;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (!stopInstances) {
      if (!records.all().some((r) => runtime.isRunning(r))) await runtime.driver.releaseHost?.();
      return;
    }
    // As LXD's instancesShutdown: by boot.stop.priority (higher first), each priority batch
    // stopped in parallel (at most one per CPU) and finished before the next begins.
    const running = records.all().filter((r) => runtime.isRunning(r));
    const stopPriority = (r: InstanceRow) => Number.parseInt(records.expanded(r).config["boot.stop.priority"] ?? "0", 10) || 0;
    for (const batch of stopBatches(running, stopPriority)) {
      await mapLimit(batch, Math.max(1, cpus().length), async (r) => {
        const timeout = Number(records.expanded(r).config["boot.host_shutdown_timeout"] ?? 30);
        log.info({ instance: r.name, project: r.project, stopPriority: stopPriority(r) }, "stopping instance for shutdown");
        await runtime.doStop(r.project, r.name, { force: false, timeout }, false).catch(() => runtime.doStop(r.project, r.name, { force: true, timeout: 0 }, false).catch(() => {}));
        records.setVolatile(r.project, r.name, { "volatile.last_state.power": "RUNNING" });
      });
    }
    await runtime.driver.releaseHost?.();
  }
}

/** Instances grouped by stop priority, highest first (LXD's instanceStopList order). */
export function stopBatches<T>(items: T[], priority: (t: T) => number): T[][] {
  const groups = new Map<number, T[]>();
  for (const t of items) {
    const p = priority(t);
    groups.set(p, [...(groups.get(p) ?? []), t]);
  }
  return [...groups.entries()].sort((a, b) => b[0] - a[0]).map(([, g]) => g);
}

async function mapLimit<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
