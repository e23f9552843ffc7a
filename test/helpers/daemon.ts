// Starts a real nodelxd daemon in a fresh LXD_DIR and drives it the way users do:
// raw HTTP over the unix socket, and the stock `lxc` client.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { join, resolve } from "node:path";
import { readReply, send } from "../../src/os/http-client.js";

export const ROOT = resolve(import.meta.dirname, "../..");
export const MAIN = join(ROOT, "dist/main.js");

export interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: any;
}

export interface TestDaemon {
  dir: string;
  socket: string;
  proc: ChildProcess;
  api(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Res>;
  /** Run the stock `lxc` client against this daemon. */
  lxc(...args: string[]): { code: number; stdout: string; stderr: string };
  /** Run `nodelxd <args>` against this daemon. */
  cli(...args: string[]): { code: number; stdout: string; stderr: string };
  /** SIGKILL the daemon, no cleanup (crash simulation). */
  kill9(): Promise<void>;
  /** Start the daemon again on the same directory. */
  restart(): Promise<void>;
  /** SIGTERM, wait for exit, remove the directory. */
  stop(): Promise<void>;
}

/** Read a whole HTTP response; `body` is its parsed JSON when it is JSON. */
export const collectResponse: (res: IncomingMessage) => Promise<Res> = readReply;

export async function rawRequest(socket: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Res> {
  const payload = body === undefined ? undefined : typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  // A fresh connection each time: tests block the event loop (spawnSync of lxc) for longer than the
  // daemon's 30 s keep-alive idle timeout, so a pooled socket's close could go unnoticed (EPIPE).
  return readReply(await send({ socketPath: socket, method, path, headers, agent: false }, payload));
}

/** Lazily unmount whatever the daemon left mounted under its directory (pools, shmounts). */
export function unmountUnder(dir: string): void {
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((m): m is string => !!m && m.startsWith(dir + "/"))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync("umount", ["-l", m]);
}

async function waitReady(socket: string, proc: ChildProcess, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`daemon exited with ${proc.exitCode}`);
    try {
      const r = await rawRequest(socket, "GET", "/internal/ready");
      if (r.status === 200) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("daemon did not become ready");
}

export async function startDaemon(opts: { args?: string[]; dir?: string; main?: string; env?: Record<string, string> } = {}): Promise<TestDaemon> {
  const dir = opts.dir ?? mkdtempSync("/tmp/nodelxd-test-");
  const socket = join(dir, "unix.socket");
  const env = { ...process.env, ...opts.env, LXD_DIR: dir };
  const launch = () => {
    const log = openSync(join(dir + ".log"), "a");
    const p = spawn(process.execPath, [opts.main ?? MAIN, "--debug", ...(opts.args ?? [])], { env, stdio: ["ignore", log, log] });
    closeSync(log);
    return p;
  };
  let proc = launch();
  await waitReady(socket, proc);
  const exited = (p: ChildProcess) => new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once("exit", () => r())));
  const d: TestDaemon = {
    dir,
    socket,
    get proc() {
      return proc;
    },
    api: (method, path, body, headers) => rawRequest(socket, method, path, body, headers),
    lxc: (...args) => {
      const r = spawnSync("lxc", args, { env: { ...env, LXD_CONF: join(dir + ".lxdconf") }, encoding: "utf8", timeout: 120_000 });
      return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    },
    cli: (...args) => {
      const r = spawnSync(process.execPath, [MAIN, ...args], { env, encoding: "utf8", timeout: 120_000 });
      return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    },
    kill9: async () => {
      proc.kill("SIGKILL");
      await exited(proc);
    },
    restart: async () => {
      // A restart of a running daemon stops it first (else it would be left running, orphaned).
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        await exited(proc);
      }
      proc = launch();
      await waitReady(socket, proc);
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        await exited(proc);
      }
      unmountUnder(dir);
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }); // a helper still exiting may write a last file
      rmSync(dir + ".lxdconf", { recursive: true, force: true });
      rmSync(dir + ".log", { force: true });
    },
  };
  return d;
}
