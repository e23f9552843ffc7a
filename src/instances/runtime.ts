// Running instances through their driver: start (idmap shift, templates, devices, then the
// driver), stop, freeze, live updates, and the per-instance queue that keeps state changes
// from interleaving. Rows are the instance service's: the runtime reads them and writes only
// through InstanceRecords (volatile keys, the init process). Watching and adoption: watcher.ts.
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { BadRequest } from "../shared/errors.js";
import type { InstanceRow } from "../db/instance-repo.js";
import type { Device, RunConfig } from "../devices/types.js";
import { applyTemplates, type TemplateTrigger } from "../images/templates.js";
import { isTrue } from "./config-keys.js";
import { CriuMissing, type CheckpointPurpose, type InitProcess, type InstanceDriver, type PowerState } from "./drivers/types.js";
import { hostRoot, idmapJson, parseIdmapJson, sameIdmap } from "./idmap.js";
import type { InstanceDevices } from "./instance-devices.js";
import { loadKernelModules } from "./kernel-modules.js";
import { shiftTree } from "./lxc/shift.js";
import { initOf, instanceUrl, rootDisk, type Devices, type InstanceRecords } from "./rows.js";

/** Where a stateful stop or snapshot leaves the CRIU dump: the instance volume's `state` (LXD's StatePath). */
export const stateDir = (volume: string): string => join(volume, "state");

export interface RuntimeDeps {
  records: InstanceRecords;
  driver: InstanceDriver;
  devices: InstanceDevices;
  /** Mount the instance's root volume and return its directory (storage). */
  mountVolume(project: string, pool: string, name: string): Promise<string>;
  /** Runs before each start once the volume is mounted (the "@startup" snapshot schedule). */
  beforeStart?(project: string, name: string, config: Record<string, string>): Promise<void>;
  events: { lifecycle(action: string, source: string, opts?: { project?: string; context?: Record<string, unknown> }): void };
  log: Logger;
}

export class InstanceRuntime {
  readonly driver: InstanceDriver;
  /** Per-instance queue so state changes never interleave. */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Instances whose stop we are driving (the watcher leaves them alone). */
  private readonly transitioning = new Set<string>();
  /** Called when an instance starts (the watcher begins following it). */
  onStarted: (project: string, name: string, init: InitProcess) => void = () => {};

  constructor(private readonly deps: RuntimeDeps) {
    this.driver = deps.driver;
  }

  /** Whether a state change of the instance is queued or being driven (the watcher waits). */
  busy(project: string, name: string): boolean {
    const k = `${project}/${name}`;
    return this.queues.has(k) || this.transitioning.has(k);
  }

  /** Run `fn` after any state change already queued for the instance. */
  serialize<T>(project: string, name: string, fn: () => Promise<T>): Promise<T> {
    const k = `${project}/${name}`;
    const prev = this.queues.get(k) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.queues.set(k, next);
    void next.finally(() => {
      if (this.queues.get(k) === next) this.queues.delete(k);
    }).catch(() => {});
    return next;
  }

  isRunning(row: InstanceRow): boolean {
    return this.driver.alive(initOf(row));
  }

  status(row: InstanceRow): PowerState {
    return this.driver.state(initOf(row));
  }

  statuses(rows: InstanceRow[]): Promise<PowerState[]> {
    return rows.length ? this.driver.states(rows.map(initOf)) : Promise.resolve([]);
  }

  // ---- start ----

  /** `stateful`: from the state a stateful stop dumped (LXD's Start(stateful)). */
  start(project: string, name: string, opts: { stateful?: boolean } = {}): Promise<void> {
    return this.serialize(project, name, () => {
      this.deps.records.assertNotCreating(project, name, "start");
      return this.doStart(project, name, true, opts.stateful ?? false);
    });
  }

  /**
   * A live migration's target: start the new instance from the CRIU dump received into its
   * volume's state directory (it is still being created, so not through `start`).
   */
  startMigrated(project: string, name: string): Promise<void> {
    return this.serialize(project, name, () => this.doStart(project, name, true, true, "migration"));
  }

  private async doStart(project: string, name: string, event = true, stateful = false, purpose: CheckpointPurpose = "snapshot"): Promise<void> {
    const { records, driver } = this.deps;
    const ref = { project, name };
    let row = records.require(project, name);
    if (this.isRunning(row)) throw new BadRequest("The instance is already running");
    if (stateful && (!row.stateful || !driver.restore)) throw new Error("Container has no existing state to restore");
    if (row.init_pid > 0) {
      // It stopped on its own and the watcher has not caught up yet: finish that stop first.
      await driver.waitStopped(ref, 10);
      await this.finishStop(row);
      row = records.require(project, name);
    }
    const ex = records.expanded(row);
    try {
      driver.preflight?.(ex.config);
    } catch (e) {
      throw new Error(`Load go-lxc struct: ${(e as Error).message}`);
    }
    await loadKernelModules(ex.config["linux.kernel_modules"]);
    const volume = await this.deps.mountVolume(project, rootDisk(ex.devices).pool, name);
    if (!stateful) this.dropState(row, volume);
    driver.create(ref, volume);
    const next = await this.prepareIdmap(row, volume, ex.config);
    row = records.require(project, name);
    // Image templates: the pending trigger (create/copy/rename) once, then "start" every time.
    const owner = hostRoot(next);
    const tctx = { name, architecture: row.architecture, ephemeral: row.ephemeral, privileged: next.length === 0, config: ex.config, devices: ex.devices, rootUid: owner.uid, rootGid: owner.gid };
    const pending = row.config["volatile.apply_template"] as TemplateTrigger | undefined;
    if (pending) {
      await applyTemplates(volume, pending, tctx);
      records.setVolatile(project, name, { "volatile.apply_template": "" });
    }
    await applyTemplates(volume, "start", tctx);
    // snapshots.schedule "@startup": a snapshot on every start, before the container runs (as LXD).
    await this.deps.beforeStart?.(project, name, ex.config);
    row = records.require(project, name);

    const devices = this.deps.devices.of(row, records.expanded(row).devices);
    const started: Device[] = [];
    const runConfigs: RunConfig[] = [];
    try {
      for (const d of devices) {
        runConfigs.push(await d.start());
        started.push(d);
      }
      row = records.require(project, name);
      const spec = { volume, hostname: name, architecture: row.architecture, config: records.expanded(row).config, idmap: next, devices: runConfigs };
      const init = stateful ? await driver.restore!(ref, spec, stateDir(volume), purpose) : await driver.start(ref, spec);
      records.setInit(project, name, init, new Date().toISOString(), { "volatile.last_state.power": "RUNNING" });
      if (stateful) this.dropState(row, volume);
      for (const rc of runConfigs) await rc.postStart?.(init.pid);
      this.onStarted(project, name, init);
    } catch (e) {
      const cur = records.get(project, name);
      if (cur && this.isRunning(cur)) await driver.stop(ref, { force: true, timeout: 0 }).catch(() => {});
      if (cur) records.setInit(project, name, undefined);
      for (const d of started.reverse()) await d.stop().catch(() => {});
      throw e;
    }
    if (event) this.deps.events.lifecycle("instance-started", instanceUrl(project, name), { project });
  }

  /** Id map: recompute when the security settings changed, shift the rootfs when needed. */
  private async prepareIdmap(row: InstanceRow, volume: string, config: Record<string, string>) {
    const { records } = this.deps;
    const { project, name } = row;
    const wantPrivileged = isTrue(config["security.privileged"]);
    let next = parseIdmapJson(row.config["volatile.idmap.next"]);
    if (wantPrivileged !== (next.length === 0) || (isTrue(config["security.idmap.isolated"]) && next.length > 0 && row.config["volatile.idmap.base"] === "0")) {
      const alloc = records.allocateIdmap(project, name, config);
      records.setVolatile(project, name, { "volatile.idmap.next": alloc.map, "volatile.idmap.base": String(alloc.base) });
      next = parseIdmapJson(alloc.map);
    }
    const last = parseIdmapJson(row.config["volatile.last_state.idmap"]);
    if (!sameIdmap(last, next)) {
      if (isTrue(config["security.protection.shift"])) throw new Error("Container is protected against filesystem shifting");
      await shiftTree(join(volume, "rootfs"), last, next);
    }
    // One commit: the shifted ownership and the map the container runs with.
    records.setVolatile(project, name, { "volatile.last_state.idmap": idmapJson(next), "volatile.idmap.current": idmapJson(next) });
    return next;
  }

  // ---- stop ----

  /** `stateful`: dump the running state into the volume first and stop through CRIU (LXD's Stop(stateful)). */
  stop(project: string, name: string, opts: { force: boolean; timeout: number; stateful?: boolean }): Promise<void> {
    return this.serialize(project, name, () => (opts.stateful ? this.doStatefulStop(project, name) : this.doStop(project, name, opts)));
  }

  private async doStatefulStop(project: string, name: string): Promise<void> {
    const { records } = this.deps;
    const row = records.require(project, name);
    if (!this.isRunning(row)) throw new BadRequest("The instance is already stopped");
    const k = `${project}/${name}`;
    this.transitioning.add(k);
    try {
      const dir = await this.dumpState(row, { stop: true, purpose: "snapshot" });
      await this.driver.waitStopped({ project, name }, 30);
      await this.finishStop(row);
      records.setStateful(project, name, existsSync(dir));
    } finally {
      this.transitioning.delete(k);
    }
    this.deps.events.lifecycle("instance-stopped", instanceUrl(project, name), { project });
  }

  /**
   * CRIU dump of a running instance into its volume's `state` directory (made afresh, 0700), as
   * LXD's stateful stop and snapshot do; returns the directory. The dump's failure is thrown as is.
   */
  async dumpState(row: InstanceRow, opts: { stop: boolean; purpose: CheckpointPurpose }): Promise<string> {
    if (!this.driver.checkpoint) throw new CriuMissing();
    const volume = await this.deps.mountVolume(row.project, rootDisk(this.deps.records.expanded(row).devices).pool, row.name);
    const dir = stateDir(volume);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { mode: 0o700 });
    try {
      await this.driver.checkpoint({ project: row.project, name: row.name }, { dir, ...opts });
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return dir;
  }

  /**
   * A live migration's source: the final CRIU dump into `dir`; `onDumped` sends it and says
   * whether the target restored it. True: the instance stops here (recorded as stopped); false:
   * it keeps running and this throws.
   */
  migrationDump(project: string, name: string, dir: string, onDumped: () => Promise<boolean>): Promise<void> {
    return this.serialize(project, name, async () => {
      const row = this.deps.records.require(project, name);
      if (!this.driver.liveDump) throw new CriuMissing();
      if (!this.isRunning(row)) throw new BadRequest("The instance isn't running");
      const k = `${project}/${name}`;
      this.transitioning.add(k);
      try {
        await this.driver.liveDump({ project, name }, dir, onDumped).catch((e) => {
          if (this.isRunning(row)) throw e;
          this.deps.log.warn({ err: e, instance: k }, "CRIU failed after the target restored the instance");
        });
        await this.driver.waitStopped({ project, name }, 30);
        await this.finishStop(row);
      } finally {
        this.transitioning.delete(k);
      }
      this.deps.events.lifecycle("instance-stopped", instanceUrl(project, name), { project });
    });
  }

  /** A stateless start or stop forgets a dumped state (LXD removes StatePath). */
  private dropState(row: InstanceRow, volume: string): void {
    rmSync(stateDir(volume), { recursive: true, force: true });
    if (row.stateful) this.deps.records.setStateful(row.project, row.name, false);
  }

  /** Stop (no queue); `event` false: no lifecycle event and no ephemeral delete (restarts, shutdown). */
  async doStop(project: string, name: string, opts: { force: boolean; timeout: number }, event = true): Promise<void> {
    const row = this.deps.records.require(project, name);
    if (!this.isRunning(row)) throw new BadRequest("The instance is already stopped");
    const k = `${project}/${name}`;
    this.transitioning.add(k);
    try {
      const init = initOf(row)!;
      if (this.status(row) === "Frozen") await this.driver.unfreeze?.(init).catch(() => {});
      await this.driver.stop({ project, name }, { force: opts.force, timeout: opts.timeout });
      await this.finishStop(row);
    } finally {
      this.transitioning.delete(k);
    }
    if (event) this.deps.events.lifecycle(opts.force ? "instance-stopped" : "instance-shutdown", instanceUrl(project, name), { project });
    if (event) await this.deleteIfEphemeral(project, name);
  }

  /** Release devices, the driver's host state, and record the stop. */
  async finishStop(row: InstanceRow): Promise<void> {
    const { records } = this.deps;
    const devices = this.deps.devices.of(row, records.expanded(row).devices);
    for (const d of devices.reverse()) await d.stop().catch((e) => this.deps.log.warn({ err: e, device: d.name }, "device stop failed"));
    records.setInit(row.project, row.name, undefined, undefined, { "volatile.last_state.power": "STOPPED" });
    this.driver.stopped({ project: row.project, name: row.name });
  }

  async deleteIfEphemeral(project: string, name: string): Promise<void> {
    const row = this.deps.records.get(project, name);
    if (row?.ephemeral && !this.isRunning(row)) await this.deps.records.destroy(row);
  }

  restart(project: string, name: string, opts: { force: boolean; timeout: number }): Promise<void> {
    return this.serialize(project, name, async () => {
      await this.doStop(project, name, opts, false);
      await this.doStart(project, name, false);
      this.deps.events.lifecycle("instance-restarted", instanceUrl(project, name), { project });
    });
  }

  // ---- freeze ----

  private freezer() {
    const { freeze, unfreeze } = this.driver;
    if (!this.driver.info.freeze || !freeze || !unfreeze) throw new BadRequest("The instance type cannot be paused");
    return { freeze: freeze.bind(this.driver), unfreeze: unfreeze.bind(this.driver) };
  }

  freeze(project: string, name: string): Promise<void> {
    return this.serialize(project, name, async () => {
      const row = this.deps.records.require(project, name);
      const status = this.status(row);
      if (status === "Stopped") throw new BadRequest("The instance isn't running");
      if (status === "Frozen") throw new BadRequest("The instance is already frozen");
      await this.freezer().freeze(initOf(row)!);
      this.deps.events.lifecycle("instance-paused", instanceUrl(project, name), { project });
    });
  }

  unfreeze(project: string, name: string): Promise<void> {
    return this.serialize(project, name, async () => {
      const row = this.deps.records.require(project, name);
      if (this.status(row) !== "Frozen") throw new BadRequest("The instance is not frozen");
      await this.freezer().unfreeze(initOf(row)!);
      this.deps.events.lifecycle("instance-resumed", instanceUrl(project, name), { project });
    });
  }

  /** Keep a running instance frozen while `fn` copies its volume (a consistent snapshot), as LXD does. */
  async frozenDuring<T>(row: InstanceRow, fn: () => Promise<T>): Promise<T> {
    if (this.status(row) !== "Running" || !this.driver.info.freeze) return fn();
    const url = instanceUrl(row.project, row.name);
    const init = initOf(row)!;
    const { freeze, unfreeze } = this.freezer();
    await freeze(init);
    this.deps.events.lifecycle("instance-paused", url, { project: row.project });
    try {
      return await fn();
    } finally {
      await unfreeze(init).catch((e) => this.deps.log.error({ err: e, instance: row.name }, "cannot unfreeze after snapshot"));
      this.deps.events.lifecycle("instance-resumed", url, { project: row.project });
    }
  }

  /**
   * Run `fn` with the instance stopped (killed first if it runs, without a stop event, as LXD's
   * restore does) and start it again afterwards, also when `fn` fails.
   */
  withStopped<T>(project: string, name: string, fn: () => Promise<T>): Promise<T> {
    return this.serialize(project, name, async () => {
      const wasRunning = this.isRunning(this.deps.records.require(project, name));
      if (wasRunning) await this.doStop(project, name, { force: true, timeout: -1 }, false);
      try {
        return await fn();
      } finally {
        if (wasRunning) await this.doStart(project, name);
      }
    });
  }

  // ---- live updates ----

  /** Apply config/device changes to a running instance; throws (changing nothing persistent) if it can't. */
  async applyLive(next: InstanceRow, before: { config: Record<string, string>; devices: Devices }, after: { config: Record<string, string>; devices: Devices }): Promise<void> {
    const current = this.deps.records.require(next.project, next.name);
    if (!this.isRunning(current)) {
      await this.deps.devices.applyStopped({ project: next.project, name: next.name, config: after.config }, before.devices, after.devices);
      return;
    }
    const init = initOf(current)!;
    const pid = init.pid;
    if ((before.config["linux.kernel_modules"] ?? "") !== (after.config["linux.kernel_modules"] ?? "")) await loadKernelModules(after.config["linux.kernel_modules"]);
    await this.driver.updateLive(init, before.config, after.config);
    const devs = this.deps.devices;
    const ctxRow = { project: next.project, name: next.name, config: after.config };
    const differs = (d: string) => JSON.stringify(before.devices[d]) !== JSON.stringify(after.devices[d]);
    // Changed devices that can take the change in place keep running (a NIC keeps its link).
    const updated = new Set<string>();
    for (const d of Object.keys(after.devices).filter((d) => d in before.devices && differs(d))) {
      const dev = devs.make(ctxRow, d, after.devices[d]);
      if (dev.update && (await dev.update(pid, before.devices[d]))) updated.add(d);
    }
    const removed = Object.keys(before.devices).filter((d) => !updated.has(d) && (!(d in after.devices) || differs(d)));
    const added = Object.keys(after.devices).filter((d) => !updated.has(d) && (!(d in before.devices) || differs(d)));
    for (const d of removed) {
      const dev = devs.make(ctxRow, d, before.devices[d]);
      if (!dev.detach) throw new Error(`Device "${d}" cannot be removed from a running instance`);
      await dev.detach(pid);
      await dev.stop();
      if (!(d in after.devices)) await dev.remove?.();
    }
    for (const d of added) {
      const dev = devs.make(ctxRow, d, after.devices[d]);
      if (!dev.attach) throw new Error(`Device "${d}" cannot be added to a running instance`);
      await dev.attach(pid);
    }
  }
}
