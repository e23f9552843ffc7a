// tpm devices for containers, as LXD 5.0.2's tpm.go: a software TPM (`swtpm chardev --tpm2
// --vtpm-proxy`, state in <instance dir>/tpm.<device>, output in logs/<instance>/tpm.<device>.log,
// pid in devices/<instance>/<device>.pid) whose kernel vTPM (tpm_vtpm_proxy, /dev/vtpmx) gives
// a /dev/tpmN and /dev/tpmrmN pair, passed in at `path` and `pathrm` as unix-char devices.
// Needs swtpm on PATH and the tpm_vtpm_proxy module (LXD's errors otherwise).
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { HelperProcess } from "../os/helper-process.js";
import { loadModule } from "../os/kernel-module.js";
import { NodeSet, type NodeSpec } from "./node-set.js";
import { isNotEmpty, validateKeys } from "./rules.js";
import type { Device, DeviceConfig, DeviceContext, RunConfig } from "./types.js";

const TPM_MINOR = 244;
const TPM_NUM_DEVICES = 65536;

/** Where a program is on the daemon's PATH (exec.LookPath), or undefined. */
function lookPath(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    if (!d) continue;
    const p = join(d, cmd);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/**
 * swtpm's first output line, "New TPM device: /dev/tpm1 (major/minor = 253/1)": the TPM's
 * numbers and its resource manager's minor (LXD's arithmetic).
 */
export function parseSwtpmDevice(out: string): { major: number; minor: number; minorRM: number } {
  const fields = out.split(" ");
  if (fields.length < 7) throw new Error("Failed to get TPM device information");
  const m = /^(\d+)\/(\d+)\)/.exec(fields[6]);
  if (!m) throw new Error(`Failed to retrieve major/minor number: input does not match format`);
  const [major, minor] = [Number(m[1]), Number(m[2])];
  if (major === 0 && minor === 0) throw new Error("Failed to get TPM device information");
  return { major, minor, minorRM: minor === TPM_MINOR ? TPM_NUM_DEVICES : TPM_NUM_DEVICES + minor };
}

export class TpmDevice implements Device {
  private readonly nodes: NodeSet;

  constructor(
    private readonly ctx: DeviceContext,
    readonly name: string,
    readonly config: DeviceConfig,
  ) {
    this.nodes = new NodeSet(ctx, name, config);
  }

  validate(): void {
    try {
      validateKeys(this.config, { path: isNotEmpty, pathrm: isNotEmpty });
    } catch (e) {
      throw new Error(`Failed to validate config: ${(e as Error).message}`);
    }
  }

  private get stateDir(): string {
    return join(dirname(this.ctx.rootfs), `tpm.${this.name}`);
  }
  private get pidFile(): string {
    return join(this.ctx.devicesDir, `${this.name}.pid`);
  }
  private get logFile(): string {
    return join(this.ctx.logDir, `tpm.${this.name}.log`);
  }

  /** LXD's validateEnvironment: swtpm present, tpm_vtpm_proxy loaded. Returns swtpm's path. */
  private async environment(): Promise<string> {
    try {
      const swtpm = lookPath("swtpm");
      if (!swtpm) throw new Error("Required tool 'swtpm' is missing");
      try {
        await loadModule("tpm_vtpm_proxy");
      } catch (e) {
        throw new Error(`Failed to load kernel module "tpm_vtpm_proxy": ${(e as Error).message}`);
      }
      return swtpm;
    } catch (e) {
      throw new Error(`Failed to validate environment: ${(e as Error).message}`);
    }
  }

  /** Start swtpm and return the two nodes to pass in (swtpm is stopped again on failure). */
  private async emulator(): Promise<NodeSpec[]> {
    const swtpm = await this.environment();
    mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.ctx.logDir, { recursive: true });
    mkdirSync(this.ctx.devicesDir, { recursive: true, mode: 0o711 });
    rmSync(this.logFile, { force: true });
    const log = openSync(this.logFile, "a", 0o600);
    let proc: HelperProcess;
    try {
      proc = new HelperProcess(swtpm, "swtpm", ["chardev", "--tpm2", "--tpmstate", `dir=${this.stateDir}`, "--vtpm-proxy"], ["ignore", log, log]);
    } catch (e) {
      throw new Error(`Failed to start process "swtpm": ${(e as Error).message}`);
    } finally {
      closeSync(log);
    }
    try {
      writeFileSync(this.pidFile, `${proc.pid}\n`);
      // swtpm prints the device it made; LXD waits up to 10 s for that line.
      let ended = false;
      void proc.exited.then(() => (ended = true));
      for (let i = 0; i < 20 && statSync(this.logFile).size === 0 && !ended; i++) await new Promise((r) => setTimeout(r, 500));
      const out = readFileSync(this.logFile, "utf8");
      const { major, minor, minorRM } = parseSwtpmDevice(out.split("\n")[0] ?? "");
      return [
        { path: this.config.path, kind: "c", major, minor },
        { path: this.config.pathrm, kind: "c", major, minor: minorRM },
      ];
    } catch (e) {
      proc.kill("SIGKILL");
      rmSync(this.pidFile, { force: true });
      throw e;
    }
  }

  async start(): Promise<RunConfig> {
    try {
      const lxc: [string, string][] = [];
      const specs = await this.emulator();
      try {
        for (const n of specs) lxc.push(...(await this.nodes.setup(n)));
      } catch (e) {
        await this.stop();
        throw new Error(`Failed to setup unix device: ${(e as Error).message}`);
      }
      return { lxc };
    } catch (e) {
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  async attach(pid: number): Promise<void> {
    try {
      for (const n of await this.emulator()) await this.nodes.plug(pid, n);
    } catch (e) {
      await this.stop();
      throw new Error(`Failed to start device ${JSON.stringify(this.name)}: ${(e as Error).message}`);
    }
  }

  async detach(pid: number): Promise<void> {
    await this.nodes.unplugAll(pid);
  }

  /** LXD's Stop: end swtpm (it usually ends with the container) and forget the nodes. */
  async stop(): Promise<void> {
    if (existsSync(this.pidFile)) {
      const pid = Number(readFileSync(this.pidFile, "utf8").trim());
      let cmd = "";
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] ?? "";
      } catch {
        /* not running */
      }
      // Only the swtpm we started (a pid may have been reused since).
      if (pid > 0 && cmd.endsWith("swtpm")) {
        try {
          process.kill(pid, "SIGTERM");
        } catch {
          /* gone */
        }
      }
      rmSync(this.pidFile, { force: true });
    }
    this.nodes.removeAll();
  }

  /** LXD's Remove: the TPM's state goes with the device. */
  async remove(): Promise<void> {
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}
