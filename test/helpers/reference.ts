// The reference daemon, real LXD 5.0.2 from Debian's `lxd` package, started in a directory of
// its own so tests can compare answers with it byte for byte.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { join } from "node:path";
import { rawRequest, unmountUnder, type Res } from "./daemon.js";

export interface ReferenceLxd {
  socket: string;
  api(method: string, path: string, body?: unknown): Promise<Res>;
  stop(): Promise<void>;
}

export async function startReferenceLxd(timeoutMs = 90_000): Promise<ReferenceLxd> {
  const dir = mkdtempSync("/tmp/nodelxd-ref-");
  const socket = join(dir, "unix.socket");
  const log = openSync(dir + ".log", "a");
  // Its temporary files (e.g. a backup import's lxd_restore_* directories, which LXD 5.0.2
  // leaves behind) go into its own directory, removed with it.
  const tmp = join(dir, "tmp");
  mkdirSync(tmp, { mode: 0o700 });
  const proc: ChildProcess = spawn("lxd", ["--group", "root", "--logfile", join(dir + ".daemon.log")], {
    env: { ...process.env, LXD_DIR: dir, TMPDIR: tmp },
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      // LXD waits for running operations at shutdown; after a failed live migration its
      // action-script operation never ends (LXD 5.0.2), so it would wait forever.
      const kill = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(kill);
    }
    unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
    rmSync(dir + ".log", { force: true });
    rmSync(dir + ".daemon.log", { force: true });
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`reference lxd exited with ${proc.exitCode}`);
    }
    try {
      if ((await rawRequest(socket, "GET", "/internal/ready")).status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error("reference lxd did not become ready");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { socket, api: (method, path, body) => rawRequest(socket, method, path, body), stop };
}
