// The liblxc container driver: lays out $LXD_DIR/containers/<name>/ (lxc.conf + rootfs
// symlink), starts it daemonized through the liblxc API (native/start.c; the container outlives the daemon), stops, freezes,
// and reads state from /proc and cgroup files rather than spawning lxc-info per request.
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, readlinkSync, renameSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { run } from "../../os/exec.js";
import { runHelper } from "../../os/helper-process.js";
import { helperPath } from "../../os/native.js";
import { cgroupDir, controllerVersion, hostCgroupLayout, type CgroupLayout } from "./cgroup.js";
import { logDir } from "./config.js";

export interface InitProcess {
  pid: number;
  /** /proc/PID/stat starttime, so a recycled pid is not mistaken for our init */
  startTime: string;
}

export function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19];
  } catch {
    return undefined;
  }
}

export function isAlive(init: InitProcess | undefined): init is InitProcess {
  return !!init && init.pid > 0 && procStartTime(init.pid) === init.startTime;
}

export class LxcDriver {
  readonly layout: CgroupLayout = hostCgroupLayout();

  constructor(private readonly lxdDir: string) {}

  get lxcPath(): string {
    return join(this.lxdDir, "containers");
  }

  dir(name: string): string {
    return join(this.lxcPath, name);
  }

  /** liblxc config, kept with the logs as upstream does (never inside the instance volume). */
  configFile(name: string): string {
    return join(logDir(this.lxdDir, name), "lxc.conf");
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
  rootfsLink(name: string): string {
    return join(this.dir(name), "rootfs");
  }

  /**
   * The instance volume's directory as LXD keeps it: mode 0100, so only its owner may traverse
   * it. Owned by the container's root id while it runs (liblxc, inside the user namespace, needs
   * to reach rootfs), by host root otherwise (LXD's start and stop do the same). No host user
   * can reach into a rootfs, whatever the modes inside it; the daemon (root) still can.
   */
  lockVolumeDir(volumeDir: string, owner: { uid: number; gid: number } = { uid: 0, gid: 0 }): void {
    chownSync(volumeDir, owner.uid, owner.gid);
    chmodSync(volumeDir, 0o100);
  }

  /** $LXD_DIR/containers/<name> → the volume (as upstream; storage usually made it already), and the log directory. */
  prepare(name: string, volumeDir: string): void {
    this.lockVolumeDir(volumeDir);
    mkdirSync(logDir(this.lxdDir, name), { recursive: true, mode: 0o700 });
    mkdirSync(this.lxcPath, { recursive: true, mode: 0o711 });
    const link = this.dir(name);
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

  writeConfig(name: string, text: string): void {
    const file = this.configFile(name);
    writeFileSync(file + ".tmp", text, { mode: 0o640 });
    renameSync(file + ".tmp", file);
  }

  /** Forget a deleted container: its logs and the containers/<name> link (never the volume behind it). */
  remove(name: string): void {
    try {
      if (lstatSync(this.dir(name)).isSymbolicLink()) rmSync(this.dir(name), { force: true });
    } catch {
      /* already gone */
    }
    rmSync(logDir(this.lxdDir, name), { recursive: true, force: true });
  }

  rename(from: string, to: string): void {
    if (existsSync(logDir(this.lxdDir, from))) renameSync(logDir(this.lxdDir, from), logDir(this.lxdDir, to));
    try {
      if (lstatSync(this.dir(from)).isSymbolicLink()) rmSync(this.dir(from), { force: true });
    } catch {
      /* storage moved it */
    }
  }

  private args(name: string): string[] {
    return ["-n", name, "-P", this.lxcPath];
  }

  /**
   * Start daemonized through the liblxc API (native/start.c, as LXD's forkstart: the monitor
   * forks into its own session and outlives us; liblxc logs under its "lxc" prefix), which
   * prints init's pid once the container runs.
   */
  async start(name: string): Promise<InitProcess> {
    const logFile = join(logDir(this.lxdDir, name), "lxc.log");
    if (existsSync(logFile)) renameSync(logFile, logFile + ".old");
    // The daemon's environment: liblxc looks up newuidmap and hook programs on PATH.
    const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
    const res = await runHelper(helperPath("nodelxd-start"), "nodelxd-start", [name, this.lxcPath, this.configFile(name)], env);
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
  async runningInit(name: string): Promise<InitProcess | undefined> {
    if (!existsSync(this.configFile(name))) return undefined; // never started here
    const res = await run("lxc-info", [...this.args(name), "-p", "-H"], { reject: false });
    const pid = Number(res.stdout.trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const startTime = procStartTime(pid);
    return startTime ? { pid, startTime } : undefined;
  }

  /** Clean shutdown within `timeout` seconds, then kill; `force` kills at once. */
  async stop(name: string, opts: { timeout?: number; force?: boolean }): Promise<void> {
    const args = [...this.args(name)];
    if (opts.force) args.push("-k");
    else args.push("-t", String(opts.timeout ?? 30));
    const res = await run("lxc-stop", args, { reject: false });
    // exit 2: already stopped
    if (res.exitCode !== 0 && res.exitCode !== 2) throw new Error(`Failed stopping instance: ${res.stderr.trim()}`);
    await this.waitStopped(name);
  }

  /** Wait until liblxc's monitor has finished tearing the container down. */
  async waitStopped(name: string, timeout = 30): Promise<void> {
    await run("lxc-wait", [...this.args(name), "-s", "STOPPED", "-t", String(timeout)], { reject: false });
  }

  /** Freeze through the freezer cgroup of the init process (v1 freezer.state, v2 cgroup.freeze). */
  async freeze(pid: number, timeoutMs = 10_000): Promise<void> {
    this.writeFreezer(pid, true);
    const deadline = Date.now() + timeoutMs;
    while (!this.isFrozen(pid)) {
      if (Date.now() > deadline) {
        this.writeFreezer(pid, false);
        throw new Error("Failed to freeze the instance: timed out");
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async unfreeze(pid: number): Promise<void> {
    this.writeFreezer(pid, false);
  }

  private freezerFile(pid: number): string {
    if (controllerVersion(this.layout, "freezer") === "v1") {
      const dir = cgroupDir(this.layout, pid, "freezer");
      if (dir) return join(dir, "freezer.state");
    } else {
      const dir = cgroupDir({ ...this.layout, v2: new Set([...this.layout.v2, "freezer"]) }, pid, "freezer");
      if (dir) return join(dir, "cgroup.freeze");
    }
    throw new Error("The freezer cgroup is not available");
  }

  private writeFreezer(pid: number, frozen: boolean): void {
    const file = this.freezerFile(pid);
    writeFileSync(file, file.endsWith("freezer.state") ? (frozen ? "FROZEN" : "THAWED") : frozen ? "1" : "0");
  }

  /** Frozen, from the freezer cgroup of the init process. */
  isFrozen(pid: number): boolean {
    const version = controllerVersion(this.layout, "freezer");
    if (version === "v1") {
      const dir = cgroupDir(this.layout, pid, "freezer");
      try {
        return !!dir && readFileSync(join(dir, "freezer.state"), "utf8").trim() !== "THAWED";
      } catch {
        return false;
      }
    }
    const dir = cgroupDir({ ...this.layout, v2: new Set([...this.layout.v2, "freezer"]) }, pid, "freezer");
    try {
      return !!dir && /^frozen 1$/m.test(readFileSync(join(dir, "cgroup.events"), "utf8"));
    } catch {
      return false;
    }
  }
}
