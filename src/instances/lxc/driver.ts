// The liblxc container driver (InstanceDriver "lxc"): lays out $LXD_DIR/containers/<name>/
// (lxc.conf + rootfs symlink), starts it daemonized through the liblxc API (native/start.c; the
// container outlives the daemon), stops, freezes, and reads state from /proc and cgroup files
// rather than spawning lxc-info per request. liblxc's names (project-prefixed container names,
// lxcpath) stay inside this folder: callers pass InstanceRef values.
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, rmdirSync, rmSync, symlinkSync, writeFileSync, readlinkSync, renameSync, mkdtempSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { onPath, run } from "../../os/exec.js";
import { runHelper } from "../../os/helper-process.js";
import { helperPath, native } from "../../os/native.js";
import { CriuMissing, type AttachTarget, type CheckpointPurpose, type CommandSpec, type InitProcess, type InstanceDriver, type InstanceDriverDefinition, type InstanceDriverEnv, type InstanceRef, type InstanceUsage, type PowerState, type StartSpec } from "../drivers/types.js";
import { hostRoot } from "../idmap.js";
import { cgroupDirs, controllerVersion, hostCgroupLayout, parseUsage, processCount, usageFiles, writeLimit, type CgroupDirs, type CgroupLayout } from "./cgroup.js";
import { InitLiveness, procStartTime } from "./liveness.js";
import { criuFailure, keepCriuLog } from "./criu.js";
import { actionScript } from "./criu-action.js";
import { cpusetFor, generateLxcConfig, logDir, memoryLimitBytes, renderLxcConfig } from "./config.js";
import { shiftTree } from "./shift.js";
import { ensureShmounts, hotplugFor, releaseShmounts } from "./hotplug.js";
import { needsSeccompPolicy, seccompPolicy } from "./seccomp.js";
import { nvidiaRuntimeHook } from "./nvidia.js";

export type { InitProcess } from "../drivers/types.js";
export { procStartTime } from "./liveness.js";

/** Whether `init` is the live init process, read from /proc (one-off callers; the driver tracks its own). */
export function isAlive(init: InitProcess | undefined): init is InitProcess {
  return !!init && init.pid > 0 && procStartTime(init.pid) === init.startTime;
}

/** liblxc's container name: project-prefixed outside the default project, as LXD. */
export function lxcName(ref: InstanceRef): string {
  return ref.project === "default" ? ref.name : `${ref.project}_${ref.name}`;
}

/** nodelxd-attach [--gate FD] NAME LXCPATH UID GID CWD NENV [K=V ...] -- COMMAND [ARG ...] */
export function attachHelperArgs(name: string, lxcpath: string, spec: CommandSpec, gateFd?: number): string[] {
  const env = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
  const gate = gateFd === undefined ? [] : ["--gate", String(gateFd)];
  return [...gate, name, lxcpath, String(spec.user), String(spec.group), spec.cwd, String(env.length), ...env, "--", ...spec.command];
}

/** lxc-console's escape prefix, disabled: "^@" maps below 1, so every byte passes through. */
const NO_ESCAPE = "^@";

const safeRead = (f: string): string => {
  try {
    return readFileSync(f, "utf8");
  } catch {
    return "";
  }
};

export class LxcDriver implements InstanceDriver {
  readonly info = lxcInfo;
  readonly layout: CgroupLayout = hostCgroupLayout();
  private readonly liveness = new InitLiveness();
  private readonly lxdDir: string;
  private readonly seccompOk = /^Seccomp:/m.test(safeRead("/proc/self/status"));
  private readonly apparmor = existsSync("/sys/kernel/security/apparmor");

  constructor(private readonly env: InstanceDriverEnv) {
    this.lxdDir = env.lxdDir;
  }

  /** liblxc's lxcpath: every container is $LXD_DIR/containers/<name>. */
  private get lxcPath(): string {
    return join(this.lxdDir, "containers");
  }

  private dir(ref: InstanceRef): string {
    return join(this.lxcPath, lxcName(ref));
  }

  /** liblxc config, kept with the logs as upstream does (never inside the instance volume). */
  private configFile(ref: InstanceRef): string {
    return join(this.logDir(ref), "lxc.conf");
  }

  logDir(ref: InstanceRef): string {
    return logDir(this.lxdDir, lxcName(ref));
  }

  devicesDir(ref: InstanceRef): string {
    return join(this.env.paths.devices, lxcName(ref));
  }

  private seccompFile(ref: InstanceRef): string {
    return join(this.env.paths.security, "seccomp", lxcName(ref));
  }

  private shmountsDir(ref: InstanceRef): string {
    return join(this.env.paths.shmounts, lxcName(ref));
  }

  /**
   * Have liblxc load `raw.lxc` as it would at start (LXD's loadRawLXCConfig on update), so a
   * key liblxc does not know is refused now rather than at the next start. lxc-info --rcfile
   * loads the file into a container object in an empty lxcpath and touches nothing else.
   */
  async checkRawConfig(text: string): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), "nodelxd-rawlxc-"));
    const file = join(dir, "lxd_config");
    try {
      writeFileSync(file, text.endsWith("\n") ? text : `${text}\n`, { mode: 0o600 });
      const res = await run("lxc-info", ["-n", "check", "-P", dir, `--rcfile=${file}`, "-s"], { reject: false });
      if (res.exitCode !== 0) throw new Error(`Failed to load config file "${file}": loading config file for the container failed`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** The container's rootfs seen through $LXD_DIR/containers/<name>. */
  rootfs(ref: InstanceRef): string {
    return join(this.dir(ref), "rootfs");
  }

  /**
   * The instance volume's directory as LXD keeps it: mode 0100, so only its owner may traverse
   * it. Owned by the container's root id while it runs (liblxc, inside the user namespace, needs
   * to reach rootfs), by host root otherwise (LXD's start and stop do the same). No host user
   * can reach into a rootfs, whatever the modes inside it; the daemon (root) still can.
   */
  private lockVolumeDir(volumeDir: string, owner: { uid: number; gid: number } = { uid: 0, gid: 0 }): void {
    chownSync(volumeDir, owner.uid, owner.gid);
    chmodSync(volumeDir, 0o100);
  }

  /** $LXD_DIR/containers/<name> → the volume (as upstream; storage usually made it already), and the log directory. */
  create(ref: InstanceRef, volumeDir: string): void {
    this.lockVolumeDir(volumeDir);
    mkdirSync(this.logDir(ref), { recursive: true, mode: 0o700 });
    mkdirSync(this.lxcPath, { recursive: true, mode: 0o711 });
    const link = this.dir(ref);
    let current: string | undefined;
    try {
      current = readlinkSync(link);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EINVAL") return; // a real directory: nothing to link
      current = undefined;
    }
    if (current === volumeDir) return;
    if (current !== undefined) rmSync(link, { force: true });
    symlinkSync(volumeDir, link);
  }

  private writeConfig(ref: InstanceRef, text: string): void {
    const file = this.configFile(ref);
    writeFileSync(file + ".tmp", text, { mode: 0o640 });
    renameSync(file + ".tmp", file);
  }

  /** Forget a deleted container: its logs, device state, seccomp policy and the containers/<name> link (never the volume). */
  delete(ref: InstanceRef): void {
    try {
      if (lstatSync(this.dir(ref)).isSymbolicLink()) rmSync(this.dir(ref), { force: true });
    } catch {
      /* already gone */
    }
    rmSync(this.logDir(ref), { recursive: true, force: true });
    rmSync(this.devicesDir(ref), { recursive: true, force: true });
    rmSync(this.seccompFile(ref), { force: true });
  }

  rename(from: InstanceRef, to: InstanceRef): void {
    if (existsSync(this.logDir(from))) renameSync(this.logDir(from), this.logDir(to));
    try {
      if (lstatSync(this.dir(from)).isSymbolicLink()) rmSync(this.dir(from), { force: true });
    } catch {
      /* storage moved it */
    }
  }

  private args(ref: InstanceRef): string[] {
    return ["-n", lxcName(ref), "-P", this.lxcPath];
  }

  async prepareHost(): Promise<void> {
    await ensureShmounts(this.env.paths.shmounts);
  }

  async releaseHost(): Promise<void> {
    await releaseShmounts(this.env.paths.shmounts);
  }

  /** What LXD's initLXC refuses before anything starts (nvidia.runtime without its hook or tools). */
  preflight(config: Record<string, string>): void {
    nvidiaRuntimeHook(config);
  }

  /** liblxc config from the spec, then start (see launch). */
  async start(ref: InstanceRef, spec: StartSpec): Promise<InitProcess> {
    await this.writeStartConfig(ref, spec);
    return this.launch(ref);
  }

  /**
   * CRIU dump through liblxc (lxc-checkpoint on the config the container was started with), as
   * LXD's Migrate(MIGRATE_DUMP): the log is kept with the instance's logs either way.
   */
  async checkpoint(ref: InstanceRef, opts: { dir: string; stop: boolean; purpose: CheckpointPurpose }): Promise<void> {
    if (!onPath("criu")) throw new CriuMissing();
    const args = [...this.args(ref), `--rcfile=${this.configFile(ref)}`, "-D", opts.dir, "-v", ...(opts.stop ? ["-s"] : [])];
    const res = await run("lxc-checkpoint", args, { reject: false });
    keepCriuLog(opts.dir, this.logDir(ref), opts.purpose, "dump");
    if (res.exitCode !== 0) throw new Error(criuFailure(opts.dir, opts.purpose, "dump") ?? `Failed to run: lxc-checkpoint: ${res.stderr.trim()}`);
  }

  /**
   * A live migration's final dump (LXD's Migrate(MIGRATE_DUMP) with its action script): dump
   * into `dir` and, once the dump is written, ask `onDumped` whether the target restored it —
   * true: CRIU stops the container; false: CRIU resumes it and this throws.
   */
  async liveDump(ref: InstanceRef, dir: string, onDumped: () => Promise<boolean>): Promise<void> {
    if (!onPath("criu")) throw new CriuMissing();
    const script = await actionScript(mkdtempSync(join(tmpdir(), "nodelxd_criu_action_")));
    try {
      const args = [...this.args(ref), `--rcfile=${this.configFile(ref)}`, "-D", dir, "-v", "-s", "-A", script.path];
      const dump = run("lxc-checkpoint", args, { reject: false });
      void script.dumped.then(async () => script.answer(await onDumped().catch(() => false)));
      const res = await dump;
      // CRIU gave up before its post-dump step: nobody waits for an answer any more.
      script.answer(false);
      keepCriuLog(dir, this.logDir(ref), "migration", "dump");
      if (res.exitCode !== 0) throw new Error(criuFailure(dir, "migration", "dump") ?? `Failed to run: lxc-checkpoint: ${res.stderr.trim()}`);
    } finally {
      script.close();
    }
  }

  /**
   * Start from a CRIU dump (LXD's forkmigrate): the same config a start writes, the dump's files
   * shifted into the container's id map, then liblxc's restore daemonized.
   */
  async restore(ref: InstanceRef, spec: StartSpec, dir: string, purpose: CheckpointPurpose): Promise<InitProcess> {
    if (!onPath("criu")) throw new CriuMissing();
    await this.writeStartConfig(ref, spec);
    if (spec.idmap.length > 0) await shiftTree(dir, [], spec.idmap);
    const args = [...this.args(ref), `--rcfile=${this.configFile(ref)}`, "-r", "-d", "-D", dir, "-v"];
    const res = await run("lxc-checkpoint", args, { reject: false });
    keepCriuLog(dir, this.logDir(ref), purpose, "restore");
    if (res.exitCode !== 0) throw new Error(criuFailure(dir, purpose, "restore") ?? `Failed to run: lxc-checkpoint: ${res.stderr.trim()}`);
    const init = await this.runningInit(ref);
    if (!init) throw new Error(`Container ${lxcName(ref)} did not stay running after restore (see lxc.log)`);
    return init;
  }

  private async writeStartConfig(ref: InstanceRef, spec: StartSpec): Promise<void> {
    const name = lxcName(ref);
    await this.prepareHost().catch((e) => this.env.log.warn({ err: e }, "cannot set up shmounts: disk hot-plug unavailable"));
    const shmounts = this.shmountsDir(ref);
    mkdirSync(shmounts, { recursive: true, mode: 0o711 });
    const policyFile = this.seccompFile(ref);
    let seccompProfile: string | undefined;
    if (this.seccompOk && needsSeccompPolicy(spec.config)) {
      mkdirSync(dirname(policyFile), { recursive: true, mode: 0o700 });
      writeFileSync(policyFile, seccompPolicy(spec.config, spec.architecture), { mode: 0o600 });
      seccompProfile = policyFile;
    } else {
      rmSync(policyFile, { force: true }); // a policy an earlier start needed
    }
    const lines = generateLxcConfig({
      name,
      hostname: spec.hostname,
      lxdDir: this.lxdDir,
      // liblxc refuses a symlinked rootfs path: give it the volume's real rootfs.
      rootfs: realpathSync(join(spec.volume, "rootfs")),
      architecture: spec.architecture,
      config: spec.config,
      idmap: spec.idmap,
      cgroup: (c) => controllerVersion(this.layout, c),
      apparmor: this.apparmor,
      seccompProfile,
      hostMemoryBytes: totalmem(),
      devices: spec.devices,
      nvidiaHook: nvidiaRuntimeHook(spec.config),
    });
    lines.splice(lines.length - 1, 0, ["lxc.mount.auto", `shmounts:${shmounts}:/dev/.lxd-mounts`]);
    // The guest API (devlxd): the daemon's socket directory at /dev/lxd, as LXD mounts it.
    if (!["false", "0", "no", "off"].includes((spec.config["security.devlxd"] ?? "").toLowerCase())) {
      lines.splice(lines.length - 1, 0, ["lxc.mount.entry", `${join(this.lxdDir, "devlxd").replace(/ /g, "\\040")} dev/lxd none bind,create=dir 0 0`]);
    }
    // The volume directory: 0100, traversable by the container's root only (as LXD's start).
    this.lockVolumeDir(spec.volume, { uid: hostRoot(spec.idmap).uid, gid: 0 });
    this.writeConfig(ref, renderLxcConfig(lines));
  }

  /**
   * Start daemonized through the liblxc API (native/start.c, as LXD's forkstart: the monitor
   * forks into its own session and outlives us; liblxc logs under its "lxc" prefix), which
   * prints init's pid once the container runs.
   */
  private async launch(ref: InstanceRef): Promise<InitProcess> {
    const name = lxcName(ref);
    const logFile = join(this.logDir(ref), "lxc.log");
    if (existsSync(logFile)) renameSync(logFile, logFile + ".old");
    // The daemon's environment: liblxc looks up newuidmap and hook programs on PATH.
    const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
    const res = await runHelper(helperPath("nodelxd-start"), "nodelxd-start", [name, this.lxcPath, this.configFile(ref)], env);
    if (res.exitCode !== 0) {
      let log = "";
      try {
        // The errors say why; the warnings after them are liblxc's cleanup.
        const lines = readFileSync(logFile, "utf8").trim().split("\n");
        const errors = lines.filter((l) => / ERROR /.test(l));
        log = (errors.length > 0 ? errors : lines).slice(-8).join("\n");
      } catch {
        log = res.stderr;
      }
      throw new Error(`Failed to run: forkstart ${name}: ${res.stderr.trim() || "exit " + res.exitCode}${log ? "\n" + log : ""}`);
    }
    const pid = Number(res.stdout.trim());
    const startTime = pid > 0 ? procStartTime(pid) : undefined;
    if (!pid || !startTime) throw new Error(`Container ${name} did not stay running (see lxc.log)`);
    return { pid, startTime };
  }

  /**
   * What liblxc itself reports: the init process of a running container, or undefined. Used to
   * reconcile the database after a crash (a start or stop the daemon did not live to record).
   */
  async runningInit(ref: InstanceRef): Promise<InitProcess | undefined> {
    if (!existsSync(this.configFile(ref))) return undefined; // never started here
    const res = await run("lxc-info", [...this.args(ref), "-p", "-H"], { reject: false });
    const pid = Number(res.stdout.trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const startTime = procStartTime(pid);
    return startTime ? { pid, startTime } : undefined;
  }

  async stop(ref: InstanceRef, opts: { timeout: number; force: boolean }): Promise<void> {
    const args = this.args(ref);
    if (opts.force) args.push("-k");
    else args.push("-t", String(opts.timeout < 0 ? 30 : opts.timeout));
    const res = await run("lxc-stop", args, { reject: false });
    // exit 2: already stopped
    if (res.exitCode !== 0 && res.exitCode !== 2) throw new Error(`Failed stopping instance: ${res.stderr.trim()}`);
    await this.waitStopped(ref, 30);
  }

  /** Wait until liblxc's monitor has finished tearing the container down. */
  async waitStopped(ref: InstanceRef, timeoutS: number): Promise<void> {
    await run("lxc-wait", [...this.args(ref), "-s", "STOPPED", "-t", String(timeoutS)], { reject: false });
  }

  /**
   * What only a running container needs goes, as LXD's cleanup on stop removes it: the seccomp
   * policy file and the (by now empty) shmounts directory. rmdir, not a recursive removal: a
   * mount left behind there must never have its content deleted. Then, as LXD's stop: ownership
   * back to host root (the id may be reused by another map), still 0100.
   */
  stopped(ref: InstanceRef): void {
    rmSync(this.seccompFile(ref), { force: true });
    try {
      rmdirSync(this.shmountsDir(ref));
    } catch {
      /* absent, or not empty: left alone */
    }
    try {
      this.lockVolumeDir(realpathSync(this.dir(ref)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.env.log.warn({ err: e, instance: ref.name }, "cannot reset the volume directory's owner");
    }
  }

  alive(init: InitProcess | undefined): boolean {
    return this.liveness.alive(init);
  }

  onExit(listener: () => void): boolean {
    return this.liveness.onExit(listener);
  }

  state(init: InitProcess | undefined): PowerState {
    if (!this.liveness.alive(init)) return "Stopped";
    return this.isFrozen(init.pid, this.dirsOf(init)) ? "Frozen" : "Running";
  }

  async states(inits: (InitProcess | undefined)[]): Promise<PowerState[]> {
    const files = inits.map((init) => (this.liveness.alive(init) ? (this.cgroupOf(init).freezer ?? "") : undefined));
    const texts = await native.readSmallFiles(files.map((f) => f ?? ""));
    return files.map((f, i) => (f === undefined ? "Stopped" : texts[i] !== null && frozenIn(texts[i]!, f) ? "Frozen" : "Running"));
  }

  async usage(inits: InitProcess[]): Promise<InstanceUsage[]> {
    const cgroups = inits.map((init) => this.cgroupOf(init));
    const texts = await native.readSmallFiles(cgroups.flatMap((c) => c.usage));
    let at = 0;
    return cgroups.map((c) => {
      const u = parseUsage(this.layout, c.usage.map((f) => (f ? texts[at++] : (at++, undefined))));
      return { memory: u.memory, cpuNs: u.cpuNs, processes: u.pids ?? processCount(c.dirs) };
    });
  }

  /** The init's cgroup directories and the files state and usage read, worked out once per process. */
  private cgroupOf(init: InitProcess): InitCgroup {
    const make = (): InitCgroup => {
      const dirs = cgroupDirs(this.layout, init.pid);
      return { dirs, usage: usageFiles(this.layout, dirs).map((f) => f ?? ""), freezer: this.freezerStateFile(dirs) };
    };
    return this.liveness.perProcess(init, make) ?? make();
  }

  private dirsOf(init: InitProcess): CgroupDirs {
    return this.cgroupOf(init).dirs;
  }

  async updateLive(init: InitProcess, before: Record<string, string>, after: Record<string, string>): Promise<void> {
    const pid = init.pid;
    const changed = (k: string) => (before[k] ?? "") !== (after[k] ?? "");
    if (changed("limits.memory")) {
      const v = after["limits.memory"];
      const soft = after["limits.memory.enforce"] === "soft";
      const value = v ? String(memoryLimitBytes(v, totalmem())) : controllerVersion(this.layout, "memory") === "v2" ? "max" : "-1";
      writeLimit(this.layout, pid, "memory", soft ? { v1: "memory.soft_limit_in_bytes", v2: "memory.low" } : { v1: "memory.limit_in_bytes", v2: "memory.max" }, value);
    }
    if (changed("limits.cpu") && controllerVersion(this.layout, "cpuset")) {
      const v = after["limits.cpu"];
      writeLimit(this.layout, pid, "cpuset", { v1: "cpuset.cpus", v2: "cpuset.cpus" }, v ? cpusetFor(v) : `0-${cpus().length - 1}`);
    }
    if (changed("limits.processes")) writeLimit(this.layout, pid, "pids", { v1: "pids.max", v2: "pids.max" }, after["limits.processes"] || "max");
  }

  attach(ref: InstanceRef, init?: InitProcess): AttachTarget {
    const name = lxcName(ref);
    const lxcpath = this.lxcPath;
    return {
      exec: (spec, gateFd) => ({ helper: "nodelxd-attach", args: attachHelperArgs(name, lxcpath, spec, gateFd) }),
      console: () => ({ program: "lxc-console", args: ["-n", name, "-P", lxcpath, "-t", "0", "-e", NO_ESCAPE] }),
      rootPath: init ? `/proc/${init.pid}/root` : this.rootfs(ref),
    };
  }

  hotplug(ref: InstanceRef) {
    return hotplugFor(this.shmountsDir(ref), this.layout);
  }

  /** Freeze through the freezer cgroup of the init process (v1 freezer.state, v2 cgroup.freeze). */
  async freeze(init: InitProcess, timeoutMs = 10_000): Promise<void> {
    this.writeFreezer(init.pid, true);
    const deadline = Date.now() + timeoutMs;
    while (!this.isFrozen(init.pid)) {
      if (Date.now() > deadline) {
        this.writeFreezer(init.pid, false);
        throw new Error("Failed to freeze the instance: timed out");
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async unfreeze(init: InitProcess): Promise<void> {
    this.writeFreezer(init.pid, false);
  }

  private freezerFile(pid: number): string {
    const dir = cgroupDirs(this.layout, pid)("freezer");
    if (!dir) throw new Error("The freezer cgroup is not available");
    return join(dir, controllerVersion(this.layout, "freezer") === "v1" ? "freezer.state" : "cgroup.freeze");
  }

  private writeFreezer(pid: number, frozen: boolean): void {
    const file = this.freezerFile(pid);
    writeFileSync(file, file.endsWith("freezer.state") ? (frozen ? "FROZEN" : "THAWED") : frozen ? "1" : "0");
  }

  /** The file telling whether the init's cgroup is frozen (freezer.state on v1, cgroup.events on v2). */
  private freezerStateFile(dirs: CgroupDirs): string | undefined {
    const dir = dirs("freezer");
    return dir && join(dir, controllerVersion(this.layout, "freezer") === "v1" ? "freezer.state" : "cgroup.events");
  }

  /** Frozen, from the freezer cgroup of the init process. */
  isFrozen(pid: number, dirs = cgroupDirs(this.layout, pid)): boolean {
    const file = this.freezerStateFile(dirs);
    if (!file) return false;
    try {
      return frozenIn(readFileSync(file, "utf8"), file);
    } catch {
      return false;
    }
  }

}

interface InitCgroup {
  dirs: CgroupDirs;
  /** usageFiles, "" for a file that is not there */
  usage: string[];
  freezer?: string;
}

const frozenIn = (text: string, file: string): boolean => (file.endsWith("freezer.state") ? text.trim() !== "THAWED" : /^frozen 1$/m.test(text));

export const lxcInfo = { name: "lxc", type: "container", freeze: true, liveLimits: true } as const;

export const lxcDriver: InstanceDriverDefinition = {
  info: lxcInfo,
  async unavailable() {
    const res = await run("lxc-info", ["--version"], { reject: false }).catch(() => undefined);
    return res?.exitCode === 0 ? undefined : "liblxc tools (lxc-info) are not installed";
  },
  load: (env) => new LxcDriver(env),
};
