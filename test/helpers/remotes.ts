// Several servers as remotes of one stock client, the way a user sets up migration: each daemon
// (ours or real LXD) listens on its own 127.0.0.x address and a client with its own HOME trusts
// them all. Every `lxc` call here is asynchronous: a copy can take minutes on a loaded host, and a
// blocked test worker misses vitest's 60 s RPC deadline, which fails the whole run.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";

export interface LxcResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function runLxc(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 400_000): Promise<LxcResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("lxc", args, { env, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString("utf8") + (signal ? `\n(lxc killed by ${signal})` : "");
      resolve({ status: code ?? -1, stdout: Buffer.concat(out).toString("utf8"), stderr });
    });
  });
}

export class Remotes {
  /** Each remote's LXD_DIR. */
  readonly dirs: Record<string, string> = {};
  readonly home: string;

  constructor(homePrefix: string, private readonly password = "remotes-test") {
    this.home = mkdtempSync(homePrefix);
  }

  /** The client against its remotes (`remote:name` arguments). */
  run(...args: string[]): Promise<LxcResult> {
    return runLxc(args, { ...process.env, HOME: this.home });
  }

  async ok(...args: string[]): Promise<string> {
    const r = await this.run(...args);
    if (r.status !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  }

  /** The client on a server's unix socket. */
  async local(dir: string, ...args: string[]): Promise<string> {
    const r = await runLxc(args, { ...process.env, LXD_DIR: dir, HOME: this.home });
    if (r.status !== 0) throw new Error(`lxc ${args.join(" ")} (LXD_DIR=${dir}) failed: ${r.stderr}`);
    return r.stdout;
  }

  /** Pool `default` on dir, and with `rootDisk` the default profile's root disk on it. */
  async addDefaultPool(dir: string, rootDisk: boolean): Promise<void> {
    await this.local(dir, "storage", "create", "default", "dir");
    if (rootDisk) await this.local(dir, "profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
  }

  /** The server listens on `address` (host:port) and becomes the client's remote `remote`. */
  async listen(remote: string, dir: string, address: string): Promise<void> {
    this.dirs[remote] = dir;
    await this.local(dir, "config", "set", "core.https_address", address);
    await this.local(dir, "config", "set", "core.trust_password", this.password);
    await this.ok("remote", "add", remote, `https://${address}`, "--accept-certificate", "--password", this.password);
  }

  /** Delete every instance on every remote (cleanup: failures are ignored). */
  async deleteInstances(): Promise<void> {
    for (const dir of Object.values(this.dirs)) {
      const env = { ...process.env, LXD_DIR: dir, HOME: this.home };
      const names = (await runLxc(["list", "--format", "csv", "-c", "n"], env, 60_000).catch(() => ({ stdout: "" }))).stdout.split("\n").filter(Boolean);
      for (const n of names) await runLxc(["delete", "-f", n], env, 120_000).catch(() => {});
    }
  }

  /** Delete the custom volumes of `pools` in `projects` on one remote (cleanup). */
  async deleteVolumes(remote: string, pools: string[], projects: string[]): Promise<void> {
    const env = { ...process.env, LXD_DIR: this.dirs[remote], HOME: this.home };
    for (const project of projects) {
      for (const pool of pools) {
        const list = await runLxc(["storage", "volume", "list", pool, "--format", "csv", "-c", "tn", "--project", project], env, 60_000).catch(() => ({ stdout: "" }));
        for (const line of list.stdout.split("\n")) {
          const [type, name] = line.split(",");
          if (type === "custom" && name && !name.includes("/")) await runLxc(["storage", "volume", "delete", pool, name, "--project", project], env, 60_000).catch(() => {});
        }
      }
    }
  }

  removeHome(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}
