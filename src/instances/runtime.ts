// Running containers: start (idmap shift, templates, devices, liblxc config, lxc-start),
// stop, freeze, live updates, watching for containers that stop on their own, and
// re-adopting running containers when the daemon starts.
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readlinkSync, realpathSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { BadRequest } from "../shared/errors.js";
import { WARNING_TYPES } from "../daemon/host-warnings.js";
import type { Core } from "../daemon/feature.js";
import type { InstanceRow } from "../db/instance-repo.js";
import { deviceFactory } from "../devices/registry.js";
import { applyTemplates, type TemplateTrigger } from "../images/templates.js";
import type { Device, DeviceContext, RunConfig } from "../devices/types.js";
import { run } from "../os/exec.js";
import { isTrue } from "./config-keys.js";
import { hostRoot, idmapJson, parseIdmapJson, sameIdmap } from "./idmap.js";
import { controllerVersion, writeLimit } from "./lxc/cgroup.js";
import { loadKernelModules } from "./kernel-modules.js";
import { cpusetFor, generateLxcConfig, logDir, memoryLimitBytes, renderLxcConfig } from "./lxc/config.js";
import { needsSeccompPolicy, seccompPolicy } from "./lxc/seccomp.js";
import { isAlive, LxcDriver, procStartTime, type InitProcess } from "./lxc/driver.js";
import { shiftTree } from "./lxc/shift.js";
import { instanceUrl, InstanceService, type Devices } from "./service.js";

export class InstanceRuntime {
  readonly driver: LxcDriver;
  /** Per-instance queue so state changes never interleave. */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Instances whose stop we are driving (the watcher leaves them alone). */
  private readonly transitioning = new Set<string>();
  private watchTimer?: NodeJS.Timeout;
  private readonly seccompOk: boolean;
  private readonly apparmor = existsSync("/sys/kernel/security/apparmor");

  constructor(
    private readonly core: Core,
    private readonly svc: InstanceService,
  ) {
    this.driver = new LxcDriver(core.paths.dir);
    this.seccompOk = existsSync("/proc/self/status") && /^Seccomp:/m.test(safeRead("/proc/self/status"));
  }

  lxcName(project: string, name: string): string {
    return project === "default" ? name : `${project}_${name}`;
  }

  private key(row: { project: string; name: string }): string {
    return `${row.project}/${row.name}`;
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

  private init(row: InstanceRow): InitProcess | undefined {
    return row.init_pid > 0 ? { pid: row.init_pid, startTime: row.init_start } : undefined;
  }

  isRunning(row: InstanceRow): boolean {
    return isAlive(this.init(row));
  }

  status(row: InstanceRow): "Running" | "Stopped" | "Frozen" {
    const init = this.init(row);
    if (!isAlive(init)) return "Stopped";
    return this.driver.isFrozen(init.pid) ? "Frozen" : "Running";
  }

  pid(row: InstanceRow): number {
    return this.isRunning(row) ? row.init_pid : 0;
  }

  // ---- devices ----

  deviceContext(row: { project: string; name: string; config: Record<string, string> }): DeviceContext {
    const map = parseIdmapJson(row.config["volatile.idmap.current"] ?? row.config["volatile.idmap.next"]);
    const svc = this.svc;
    return {
      project: row.project,
      instance: row.name,
      instanceConfig: row.config,
      volatile: {
        get: (k) => svc.repo.get(row.project, row.name)?.config[k] ?? row.config[k],
        set: async (changes) => {
          if (svc.repo.get(row.project, row.name)) svc.repo.patchConfig(row.project, row.name, changes);
          for (const [k, v] of Object.entries(changes)) {
            if (v === "") delete row.config[k];
            else row.config[k] = v;
          }
        },
      },
      // As LXD: devices/<instance> (project-prefixed outside the default project).
      devicesDir: join(this.core.paths.devices, this.lxcName(row.project, row.name)),
      logDir: logDir(this.core.paths.dir, this.lxcName(row.project, row.name)),
      expandedDevices: () => {
        const cur = svc.repo.get(row.project, row.name);
        return cur ? svc.expanded(cur).devices : {};
      },
      rootfs: this.driver.rootfsLink(this.lxcName(row.project, row.name)),
      hostRootId: hostRoot(map),
      idmap: map,
      ports: this.core.ports,
      log: this.core.log.child({ instance: row.name, project: row.project }),
      hotplug: {
        mount: (pid, source, target, opts) => this.hotplugMount(row, pid, source, target, opts),
        unmount: (pid, target, opts) => this.hotplugUnmount(pid, target, opts?.remove ?? false),
        allowDevice: (pid, rule) => {
          if (controllerVersion(this.driver.layout, "devices") === "v1") writeLimit(this.driver.layout, pid, "devices", { v1: "devices.allow", v2: "devices.allow" }, rule);
        },
      },
    };
  }

  makeDevice(row: { project: string; name: string; config: Record<string, string> }, name: string, config: Record<string, string>): Device {
    return deviceFactory(config)(this.deviceContext(row), name, config);
  }

  /** Devices in start order (disks before nics, as LXD sorts by type then name). */
  private devicesOf(row: InstanceRow, devices: Devices): Device[] {
    const ctxRow = { project: row.project, name: row.name, config: this.svc.expanded(row).config };
    return Object.entries(devices)
      .sort(([a, x], [b, y]) => (x.type === y.type ? a.localeCompare(b) : x.type === "disk" ? -1 : y.type === "disk" ? 1 : a.localeCompare(b)))
      .map(([n, c]) => this.makeDevice(ctxRow, n, c));
  }

  async removeDevices(row: InstanceRow, ex: { devices: Devices }): Promise<void> {
    for (const d of this.devicesOf(row, ex.devices)) {
      await d.stop().catch(() => {});
      await d.remove?.().catch(() => {});
    }
  }

  // ---- start ----

  start(project: string, name: string): Promise<void> {
    return this.serialize(project, name, () => {
      this.svc.assertNotCreating(project, name, "start");
      return this.doStart(project, name);
    });
  }

  private async doStart(project: string, name: string, event = true): Promise<void> {
    let row = this.svc.require(project, name);
    if (this.isRunning(row)) throw new BadRequest("The instance is already running");
    const lxc = this.lxcName(project, name);
    if (row.init_pid > 0) {
      // It stopped on its own and the watcher has not caught up yet: finish that stop first.
      await this.driver.waitStopped(lxc, 10);
      await this.afterStop(row);
      row = this.svc.require(project, name);
    }
    const ex = this.svc.expanded(row);
    await loadKernelModules(ex.config["linux.kernel_modules"]);
    const root = InstanceService.rootDisk(ex.devices);
    const storage = this.core.ports.storage;
    if (!storage) throw new Error("Storage is not available (no storage feature loaded)");
    const volume = await storage.mountInstanceVolume(project, root.pool, name);
    this.driver.prepare(lxc, volume);
    await this.ensureShmounts().catch((e) => this.core.log.warn({ err: e }, "cannot set up shmounts: disk hot-plug unavailable"));

    // Id map: recompute when the security settings changed, shift the rootfs when needed.
    const wantPrivileged = isTrue(ex.config["security.privileged"]);
    let next = parseIdmapJson(row.config["volatile.idmap.next"]);
    if (wantPrivileged !== (next.length === 0) || (isTrue(ex.config["security.idmap.isolated"]) && next.length > 0 && row.config["volatile.idmap.base"] === "0")) {
      const alloc = this.svc.allocateIdmap(project, name, ex.config);
      this.svc.repo.patchConfig(project, name, { "volatile.idmap.next": alloc.map, "volatile.idmap.base": String(alloc.base) });
      next = parseIdmapJson(alloc.map);
    }
    const last = parseIdmapJson(row.config["volatile.last_state.idmap"]);
    if (!sameIdmap(last, next)) {
      if (isTrue(ex.config["security.protection.shift"])) throw new Error("Container is protected against filesystem shifting");
      await shiftTree(join(volume, "rootfs"), last, next);
      this.svc.repo.patchConfig(project, name, { "volatile.last_state.idmap": idmapJson(next) });
    }
    this.svc.repo.patchConfig(project, name, { "volatile.idmap.current": idmapJson(next) });

    row = this.svc.require(project, name);
    // Image templates: the pending trigger (create/copy/rename) once, then "start" every time.
    const owner = hostRoot(next);
    const tctx = { name, architecture: row.architecture, ephemeral: row.ephemeral, privileged: next.length === 0, config: ex.config, devices: ex.devices, rootUid: owner.uid, rootGid: owner.gid };
    const pending = row.config["volatile.apply_template"] as TemplateTrigger | undefined;
    if (pending) {
      await applyTemplates(volume, pending, tctx);
      this.svc.repo.patchConfig(project, name, { "volatile.apply_template": "" });
    }
    await applyTemplates(volume, "start", tctx);
    row = this.svc.require(project, name);

    const devices = this.devicesOf(row, this.svc.expanded(row).devices);
    const started: Device[] = [];
    const runConfigs: RunConfig[] = [];
    try {
      for (const d of devices) {
        runConfigs.push(await d.start());
        started.push(d);
      }
      row = this.svc.require(project, name);
      const shmounts = join(this.core.paths.shmounts, lxc);
      mkdirSync(shmounts, { recursive: true, mode: 0o711 });
      const config = this.svc.expanded(row).config;
      const policyFile = join(this.core.paths.security, "seccomp", lxc);
      let seccompProfile: string | undefined;
      if (this.seccompOk && needsSeccompPolicy(config)) {
        mkdirSync(dirname(policyFile), { recursive: true, mode: 0o700 });
        writeFileSync(policyFile, seccompPolicy(config, row.architecture), { mode: 0o600 });
        seccompProfile = policyFile;
      } else {
        rmSync(policyFile, { force: true }); // a policy an earlier start needed
      }
      const lines = generateLxcConfig({
        name: lxc,
        hostname: name,
        lxdDir: this.core.paths.dir,
        // liblxc refuses a symlinked rootfs path: give it the volume's real rootfs.
        rootfs: realpathSync(join(volume, "rootfs")),
        architecture: row.architecture,
        config,
        idmap: next,
        cgroup: (c) => controllerVersion(this.driver.layout, c),
        apparmor: this.apparmor,
        seccompProfile,
        hostMemoryBytes: totalmem(),
        devices: runConfigs,
      });
      lines.splice(lines.length - 1, 0, ["lxc.mount.auto", `shmounts:${shmounts}:/dev/.lxd-mounts`]);
      // The guest API (devlxd): the daemon's socket directory at /dev/lxd, as LXD mounts it.
      if (!["false", "0", "no", "off"].includes((config["security.devlxd"] ?? "").toLowerCase())) {
        lines.splice(lines.length - 1, 0, ["lxc.mount.entry", `${join(this.core.paths.dir, "devlxd").replace(/ /g, "\\040")} dev/lxd none bind,create=dir 0 0`]);
      }
      // The volume directory: 0100, traversable by the container's root only (as LXD's start).
      this.driver.lockVolumeDir(volume, { uid: owner.uid, gid: 0 });
      this.driver.writeConfig(lxc, renderLxcConfig(lines));
      const init = await this.driver.start(lxc);
      this.svc.repo.setRuntime(project, name, { pid: init.pid, start: init.startTime }, new Date().toISOString());
      this.svc.repo.patchConfig(project, name, { "volatile.last_state.power": "RUNNING" });
      for (const rc of runConfigs) await rc.postStart?.(init.pid);
    } catch (e) {
      const cur = this.svc.repo.get(project, name);
      if (cur && this.isRunning(cur)) await this.driver.stop(lxc, { force: true }).catch(() => {});
      if (cur) this.svc.repo.setRuntime(project, name, { pid: 0, start: "" });
      for (const d of started.reverse()) await d.stop().catch(() => {});
      throw e;
    }
    this.ensureWatching();
    if (event) this.core.events.lifecycle("instance-started", instanceUrl(project, name), { project });
  }

  // ---- stop ----

  stop(project: string, name: string, opts: { force: boolean; timeout: number }): Promise<void> {
    return this.serialize(project, name, () => this.doStop(project, name, opts));
  }

  private async doStop(project: string, name: string, opts: { force: boolean; timeout: number }, event = true): Promise<void> {
    const row = this.svc.require(project, name);
    if (!this.isRunning(row)) throw new BadRequest("The instance is already stopped");
    const k = this.key(row);
    this.transitioning.add(k);
    try {
      const lxc = this.lxcName(project, name);
      if (this.status(row) === "Frozen") await this.driver.unfreeze(row.init_pid).catch(() => {});
      await this.driver.stop(lxc, { force: opts.force, timeout: opts.timeout < 0 ? 30 : opts.timeout });
      await this.afterStop(row);
    } finally {
      this.transitioning.delete(k);
    }
    if (event) this.core.events.lifecycle(opts.force ? "instance-stopped" : "instance-shutdown", instanceUrl(project, name), { project });
    if (event) await this.deleteIfEphemeral(project, name);
  }

  /** Release devices and record the stop. */
  private async afterStop(row: InstanceRow): Promise<void> {
    const devices = this.devicesOf(row, this.svc.expanded(row).devices);
    for (const d of devices.reverse()) await d.stop().catch((e) => this.core.log.warn({ err: e, device: d.name }, "device stop failed"));
    this.svc.repo.setRuntime(row.project, row.name, { pid: 0, start: "" });
    if (this.svc.repo.get(row.project, row.name)) this.svc.repo.patchConfig(row.project, row.name, { "volatile.last_state.power": "STOPPED" });
    // What only a running container needs goes, as LXD's cleanup on stop removes it: the seccomp
    // policy file and the (by now empty) shmounts directory. rmdir, not a recursive removal: a
    // mount left behind there must never have its content deleted.
    const lxc = this.lxcName(row.project, row.name);
    rmSync(join(this.core.paths.security, "seccomp", lxc), { force: true });
    try {
      rmdirSync(join(this.core.paths.shmounts, lxc));
    } catch {
      /* absent, or not empty: left alone */
    }
    // As LXD's stop: ownership back to host root (the id may be reused by another map), still 0100.
    try {
      this.driver.lockVolumeDir(realpathSync(this.driver.dir(this.lxcName(row.project, row.name))));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.core.log.warn({ err: e, instance: row.name }, "cannot reset the volume directory's owner");
    }
  }

  private async deleteIfEphemeral(project: string, name: string): Promise<void> {
    const row = this.svc.repo.get(project, name);
    if (row?.ephemeral && !this.isRunning(row)) await this.svc.destroy(row);
  }

  restart(project: string, name: string, opts: { force: boolean; timeout: number }): Promise<void> {
    return this.serialize(project, name, async () => {
      await this.doStop(project, name, opts, false);
      await this.doStart(project, name, false);
      this.core.events.lifecycle("instance-restarted", instanceUrl(project, name), { project });
    });
  }

  freeze(project: string, name: string): Promise<void> {
    return this.serialize(project, name, async () => {
      const row = this.svc.require(project, name);
      const status = this.status(row);
      if (status === "Stopped") throw new BadRequest("The instance isn't running");
      if (status === "Frozen") throw new BadRequest("The instance is already frozen");
      await this.driver.freeze(row.init_pid);
      this.core.events.lifecycle("instance-paused", instanceUrl(project, name), { project });
    });
  }

  unfreeze(project: string, name: string): Promise<void> {
    return this.serialize(project, name, async () => {
      const row = this.svc.require(project, name);
      if (this.status(row) !== "Frozen") throw new BadRequest("The instance is not frozen");
      await this.driver.unfreeze(row.init_pid);
      this.core.events.lifecycle("instance-resumed", instanceUrl(project, name), { project });
    });
  }

  /** Keep a running container frozen while `fn` copies its volume (a consistent snapshot), as LXD does. */
  async frozenDuring<T>(row: InstanceRow, fn: () => Promise<T>): Promise<T> {
    if (this.status(row) !== "Running") return fn();
    const url = instanceUrl(row.project, row.name);
    await this.driver.freeze(row.init_pid);
    this.core.events.lifecycle("instance-paused", url, { project: row.project });
    try {
      return await fn();
    } finally {
      await this.driver.unfreeze(row.init_pid).catch((e) => this.core.log.error({ err: e, instance: row.name }, "cannot unfreeze after snapshot"));
      this.core.events.lifecycle("instance-resumed", url, { project: row.project });
    }
  }

  /**
   * Run `fn` with the instance stopped (killed first if it runs, without a stop event, as LXD's
   * restore does) and start it again afterwards, also when `fn` fails.
   */
  withStopped<T>(project: string, name: string, fn: () => Promise<T>): Promise<T> {
    return this.serialize(project, name, async () => {
      const wasRunning = this.isRunning(this.svc.require(project, name));
      if (wasRunning) await this.doStop(project, name, { force: true, timeout: -1 }, false);
      try {
        return await fn();
      } finally {
        if (wasRunning) await this.doStart(project, name);
      }
    });
  }

  // ---- live updates ----

  /** Apply config/device changes to a running container; throws (changing nothing persistent) if it can't. */
  async applyLive(next: InstanceRow, before: { config: Record<string, string>; devices: Devices }, after: { config: Record<string, string>; devices: Devices }): Promise<void> {
    const current = this.svc.require(next.project, next.name);
    if (!this.isRunning(current)) return;
    const pid = current.init_pid;
    const changed = (k: string) => (before.config[k] ?? "") !== (after.config[k] ?? "");
    if (changed("linux.kernel_modules")) await loadKernelModules(after.config["linux.kernel_modules"]);
    if (changed("limits.memory")) {
      const v = after.config["limits.memory"];
      const soft = after.config["limits.memory.enforce"] === "soft";
      const value = v ? String(memoryLimitBytes(v, totalmem())) : controllerVersion(this.driver.layout, "memory") === "v2" ? "max" : "-1";
      writeLimit(this.driver.layout, pid, "memory", soft ? { v1: "memory.soft_limit_in_bytes", v2: "memory.low" } : { v1: "memory.limit_in_bytes", v2: "memory.max" }, value);
    }
    if (changed("limits.cpu") && controllerVersion(this.driver.layout, "cpuset")) {
      const v = after.config["limits.cpu"];
      const all = `0-${cpus().length - 1}`;
      writeLimit(this.driver.layout, pid, "cpuset", { v1: "cpuset.cpus", v2: "cpuset.cpus" }, v ? cpusetFor(v) : all);
    }
    if (changed("limits.processes")) writeLimit(this.driver.layout, pid, "pids", { v1: "pids.max", v2: "pids.max" }, after.config["limits.processes"] || "max");
    const ctxRow = { project: next.project, name: next.name, config: after.config };
    const differs = (d: string) => JSON.stringify(before.devices[d]) !== JSON.stringify(after.devices[d]);
    // Changed devices that can take the change in place keep running (a NIC keeps its link).
    const updated = new Set<string>();
    for (const d of Object.keys(after.devices).filter((d) => d in before.devices && differs(d))) {
      const dev = this.makeDevice(ctxRow, d, after.devices[d]);
      if (dev.update && (await dev.update(pid, before.devices[d]))) updated.add(d);
    }
    const removed = Object.keys(before.devices).filter((d) => !updated.has(d) && (!(d in after.devices) || differs(d)));
    const added = Object.keys(after.devices).filter((d) => !updated.has(d) && (!(d in before.devices) || differs(d)));
    for (const d of removed) {
      const dev = this.makeDevice(ctxRow, d, before.devices[d]);
      if (!dev.detach) throw new Error(`Device "${d}" cannot be removed from a running instance`);
      await dev.detach(pid);
      await dev.stop();
      if (!(d in after.devices)) await dev.remove?.();
    }
    for (const d of added) {
      const dev = this.makeDevice(ctxRow, d, after.devices[d]);
      if (!dev.attach) throw new Error(`Device "${d}" cannot be added to a running instance`);
      await dev.attach(pid);
    }
  }

  // ---- hot-plugged mounts ----

  private async hotplugMount(row: { project: string; name: string }, pid: number, source: string, target: string, opts: { readonly: boolean; recursive: boolean; isDir: boolean }): Promise<void> {
    const lxc = this.lxcName(row.project, row.name);
    const shmounts = join(this.core.paths.shmounts, lxc);
    const tmp = `.hotplug-${process.hrtime.bigint().toString(36)}`;
    const host = join(shmounts, tmp);
    if (opts.isDir) mkdirSync(host);
    else writeFileSync(host, "");
    try {
      await run("mount", ["--no-mtab", opts.recursive ? "--rbind" : "--bind", source, host]);
      if (opts.readonly) await run("mount", ["--no-mtab", "-o", "remount,bind,ro", host]);
      // Inside the container's mount namespace the shared tmpfs is /dev/.lxd-mounts.
      const inner = `/dev/.lxd-mounts/${tmp}`;
      // Paths travel as positional arguments, never inside the script text.
      const script = [
        opts.isDir ? 'mkdir -p "$1"' : 'mkdir -p "$(dirname "$1")" && touch "$1"',
        'mount --bind "$2" "$1"',
        ...(opts.readonly ? ['mount -o remount,bind,ro "$1"'] : []),
      ].join(" && ");
      await run("nsenter", [...this.nsenterArgs(pid), "--", "sh", "-c", script, "sh", target, inner]);
    } catch (e) {
      await run("umount", ["-l", host], { reject: false });
      throw new Error(`Failed to add mount: ${(e as Error).message}`);
    } finally {
      await run("umount", ["-l", host], { reject: false });
      await run("rm", ["-rf", "--one-file-system", host], { reject: false });
    }
  }

  private async hotplugUnmount(pid: number, target: string, remove = false): Promise<void> {
    await run("nsenter", [...this.nsenterArgs(pid), "--", "umount", "-l", target], { reject: false });
    if (remove) await run("nsenter", [...this.nsenterArgs(pid), "--", "rm", "-f", target], { reject: false });
  }

  /**
   * Enter the container's mount and pid namespaces, and its user namespace when it has one:
   * the program run comes from the container's filesystem, so it must not run with host root
   * privileges over an unprivileged container.
   */
  private nsenterArgs(pid: number): string[] {
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

  // ---- watching and adoption ----

  private ensureWatching(): void {
    if (this.watchTimer) return;
    this.watchTimer = setInterval(() => void this.poll(), 500);
    this.watchTimer.unref();
  }

  private polling = false;

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      let any = false;
      for (const row of this.svc.repo.list()) {
        if (row.init_pid === 0) continue;
        any = true;
        if (this.transitioning.has(this.key(row)) || this.queues.has(this.key(row))) continue;
        if (!this.isRunning(row)) await this.serialize(row.project, row.name, () => this.onExited(row)).catch((e) => this.core.log.error({ err: e }, "handling a stopped container failed"));
      }
      if (!any && this.watchTimer) {
        clearInterval(this.watchTimer);
        this.watchTimer = undefined;
      }
    } finally {
      this.polling = false;
    }
  }

  /** The init process died without us stopping it: a shutdown or reboot from inside. */
  private async onExited(stale: InstanceRow): Promise<void> {
    const row = this.svc.repo.get(stale.project, stale.name);
    if (!row || row.init_pid !== stale.init_pid || this.isRunning(row)) return;
    const lxc = this.lxcName(row.project, row.name);
    const init = await this.driver.runningInit(lxc);
    if (init) {
      // liblxc rebooted it
      this.svc.repo.setRuntime(row.project, row.name, { pid: init.pid, start: init.startTime });
      const pid = init.pid;
      for (const d of this.devicesOf(row, this.svc.expanded(row).devices)) {
        await d.rebooted?.(pid).catch((e) => this.core.log.warn({ err: e, device: d.name }, "device setup after reboot failed"));
      }
      this.core.events.lifecycle("instance-restarted", instanceUrl(row.project, row.name), { project: row.project });
      return;
    }
    await this.driver.waitStopped(lxc, 10);
    await this.afterStop(row);
    this.core.events.lifecycle("instance-shutdown", instanceUrl(row.project, row.name), { project: row.project });
    await this.deleteIfEphemeral(row.project, row.name);
  }

  /**
   * $LXD_DIR/shmounts as upstream keeps it: a small tmpfs with shared propagation, so mounts made
   * below shmounts/<name> on the host appear in the container at /dev/.lxd-mounts (hot-plug).
   */
  async ensureShmounts(): Promise<void> {
    const dir = this.core.paths.shmounts;
    mkdirSync(dir, { recursive: true, mode: 0o711 });
    const mounted = safeRead("/proc/self/mountinfo")
      .split("\n")
      .some((l) => l.split(" ")[4] === dir);
    if (mounted) return;
    await run("mount", ["-t", "tmpfs", "-o", "size=100k,mode=0711", "tmpfs", dir]);
    await run("mount", ["--make-shared", dir]);
  }

  /** Unmount shmounts when no container needs it (daemon stop with nothing running). */
  private async releaseShmounts(): Promise<void> {
    const dir = this.core.paths.shmounts;
    const mounted = safeRead("/proc/self/mountinfo")
      .split("\n")
      .some((l) => l.split(" ")[4] === dir);
    if (mounted) await run("umount", ["-l", dir], { reject: false });
  }

  /**
   * A row that says Stopped while liblxc runs the container: the daemon died between liblxc's
   * start and recording it (kill -9 in the middle of a start). Record what liblxc reports, so the
   * row and the process agree. Returns whether the container was running.
   */
  private async reconcileUnrecorded(row: InstanceRow): Promise<boolean> {
    const init = await this.driver.runningInit(this.lxcName(row.project, row.name));
    if (!init) return false;
    this.core.log.warn({ instance: row.name, project: row.project, pid: init.pid }, "adopting a container whose start was not recorded (daemon crash)");
    this.svc.repo.setRuntime(row.project, row.name, { pid: init.pid, start: init.startTime });
    this.svc.repo.patchConfig(row.project, row.name, { "volatile.last_state.power": "RUNNING" });
    return true;
  }
  /** Settles when the autostart run that adopt() began is over (never rejects). */
  autostarted: Promise<void> = Promise.resolve();

  /** Daemon start: re-adopt running containers, clean up ones that stopped while we were away, autostart. */
  async adopt(): Promise<void> {
    const toStart: InstanceRow[] = [];
    for (const row of this.svc.repo.list()) {
      if (row.init_pid > 0) {
        if (this.isRunning(row)) {
          // Host-side device processes (proxy relays) outlive the daemon: take them over.
          for (const d of this.devicesOf(row, this.svc.expanded(row).devices)) {
            await d.adopt?.(row.init_pid).catch((e) => this.core.log.warn({ err: e, instance: row.name, device: d.name }, "device adoption failed"));
          }
          continue;
        }
        await this.onExited(row).catch((e) => this.core.log.error({ err: e, instance: row.name }, "cleanup of a stopped container failed"));
        continue;
      }
      if (await this.reconcileUnrecorded(row).catch((e) => (this.core.log.error({ err: e, instance: row.name }, "cannot ask liblxc about a container"), false))) continue;
      let ex: Record<string, string>;
      try {
        ex = this.svc.expanded(row).config;
      } catch {
        continue;
      }
      const auto = ex["boot.autostart"];
      if (isTrue(auto) || (auto === undefined && row.config["volatile.last_state.power"] === "RUNNING")) toStart.push(row);
    }
    this.ensureWatching();
    toStart.sort((a, b) => Number(this.svc.expanded(b).config["boot.autostart.priority"] ?? 0) - Number(this.svc.expanded(a).config["boot.autostart.priority"] ?? 0));
    this.autostarted = (async () => {
      for (const row of toStart) {
        const entity = instanceUrl(row.project, row.name);
        try {
          await this.start(row.project, row.name);
          this.core.warnings.resolveEntity(WARNING_TYPES.instanceAutostartFailure.code, row.project, entity);
        } catch (e) {
          this.core.log.error({ err: e, instance: row.name }, "autostart failed");
          // As LXD: a warning on the instance, resolved by the next successful autostart.
          this.core.warnings.record(WARNING_TYPES.instanceAutostartFailure, (e as Error).message, { project: row.project, entity });
        }
        const delay = Number(this.svc.expanded(row).config["boot.autostart.delay"] ?? 0);
        if (delay > 0) await new Promise((r) => setTimeout(r, delay * 1000));
      }
    })();
  }

  /** Daemon stop: SIGTERM leaves containers running; `lxd shutdown` stops them (they come back at start). */
  async shutdown(stopInstances: boolean): Promise<void> {
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    if (!stopInstances) {
      if (!this.svc.repo.list().some((r) => this.isRunning(r))) await this.releaseShmounts();
      return;
    }
    // As LXD's instancesShutdown: by boot.stop.priority (higher first), each priority batch
    // stopped in parallel (at most one per CPU) and finished before the next begins.
    const running = this.svc.repo.list().filter((r) => this.isRunning(r));
    const stopPriority = (r: InstanceRow) => Number.parseInt(this.svc.expanded(r).config["boot.stop.priority"] ?? "0", 10) || 0;
    for (const batch of stopBatches(running, stopPriority)) {
      await mapLimit(batch, Math.max(1, cpus().length), async (r) => {
        const timeout = Number(this.svc.expanded(r).config["boot.host_shutdown_timeout"] ?? 30);
        this.core.log.info({ instance: r.name, project: r.project, stopPriority: stopPriority(r) }, "stopping instance for shutdown");
        await this.doStop(r.project, r.name, { force: false, timeout }, false).catch(() => this.doStop(r.project, r.name, { force: true, timeout: 0 }, false).catch(() => {}));
        this.svc.repo.patchConfig(r.project, r.name, { "volatile.last_state.power": "RUNNING" });
      });
    }
    await this.releaseShmounts();
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

function safeRead(f: string): string {
  try {
    return readFileSync(f, "utf8");
  } catch {
    return "";
  }
}
