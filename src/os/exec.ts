// Spawning system tools (the liblxc helpers are started by helper-process.ts instead).
// Processes through node:child_process; node-pty is loaded by the first interactive session.
import { spawn as spawnChild } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import type { IPty } from "node-pty";

const require = createRequire(import.meta.url);

export interface RunOptions {
  signal?: AbortSignal;
  input?: string | Buffer;
  env?: Record<string, string>;
  cwd?: string;
  /** Don't throw on a non-zero exit. */
  reject?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${exitCode}): ${stderr.trim()}`);
  }
}

export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const out = await new Promise<RunResult & { failed?: string }>((resolveRun) => {
    let child: ReturnType<typeof spawnChild>;
    try {
      child = spawnChild(cmd, args, { cwd: opts.cwd, env: opts.env ? { ...process.env, ...opts.env } : process.env, signal: opts.signal, stdio: ["pipe", "pipe", "pipe"] });
    } catch (e) {
      return resolveRun({ stdout: "", stderr: "", exitCode: -1, failed: (e as Error).message });
    }
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout!.on("data", (c: Buffer) => stdout.push(c));
    child.stderr!.on("data", (c: Buffer) => stderr.push(c));
    let failed: string | undefined;
    child.once("error", (e) => (failed = e.message));
    child.once("close", (code, signal) => {
      const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
      resolveRun({ stdout: text(stdout), stderr: text(stderr), exitCode: code ?? -1, failed: code === null ? (failed ?? `killed by ${signal}`) : undefined });
    });
    child.stdin!.on("error", () => {});
    child.stdin!.end(opts.input);
  });
  if (out.exitCode !== 0 && opts.reject !== false) {
    if (out.failed !== undefined) throw new CommandError(cmd, -1, out.failed || "failed to start");
    throw new CommandError([cmd, ...args].join(" "), out.exitCode, out.stderr);
  }
  return { stdout: out.stdout, stderr: out.stderr, exitCode: out.exitCode };
}

export interface StreamedProcess {
  /** The child's stdin (when opts.stdin is "pipe"). */
  stdin: import("node:stream").Writable | null;
  /** The child's stdout (when opts.stdout is "pipe"). */
  stdout: import("node:stream").Readable | null;
  /** Resolves when the process exits; never rejects. stderr is kept (last 64 KiB). */
  exited: Promise<RunResult>;
  kill(): void;
}

/**
 * Spawn a process whose stdin/stdout are streamed (decompressors, tar) rather than buffered.
 * `stdin`/`stdout` may be "pipe", "ignore" or an open file descriptor.
 */
export function spawnStreaming(
  cmd: string,
  args: string[],
  opts: { signal?: AbortSignal; cwd?: string; stdin?: "pipe" | "ignore" | number; stdout?: "pipe" | "ignore" | number } = {},
): StreamedProcess {
  const child = spawnChild(cmd, args, { cwd: opts.cwd, stdio: [opts.stdin ?? "pipe", opts.stdout ?? "pipe", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString("utf8")).slice(-65536);
  });
  const onAbort = () => child.kill("SIGKILL");
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener("abort", onAbort, { once: true });
  const exited = new Promise<RunResult>((resolveExit) => {
    child.once("error", (err) => {
      opts.signal?.removeEventListener("abort", onAbort);
      resolveExit({ stdout: "", stderr: err.message, exitCode: -1 });
    });
    child.once("close", (code, sig) => {
      opts.signal?.removeEventListener("abort", onAbort);
      resolveExit({ stdout: "", stderr, exitCode: code ?? (sig ? 128 : -1) });
    });
  });
  // A consumer that stops reading early must not crash the daemon with EPIPE.
  child.stdin?.on("error", () => {});
  return { stdin: child.stdin, stdout: child.stdout, exited, kill: () => child.kill("SIGKILL") };
}

export interface ServiceProcess {
  pid: number;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
  /** The last output lines, for error messages. */
  output(): string;
}

/**
 * Start a long-running helper (dnsmasq, ovsdb-server) in its own process group so it
 * survives a daemon crash; the caller supervises it through `exited`.
 */
export function spawnService(cmd: string, args: string[], opts: { env?: Record<string, string> } = {}): ServiceProcess {
  const child = spawnChild(cmd, args, { env: { ...process.env, ...opts.env }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let tail = "";
  const keep = (chunk: Buffer | string) => {
    tail = (tail + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<number | string>((resolveExit) => {
    child.once("error", () => resolveExit(-1));
    child.once("close", (code, signal) => resolveExit(signal ? String(signal) : (code ?? -1)));
  });
  if (child.pid === undefined) throw new CommandError(cmd, -1, "failed to start");
  return { pid: child.pid, exited, output: () => tail.trim() };
}

/** A child on a new pseudo-terminal (interactive exec, console). Output arrives as Buffers. */
export function spawnPty(cmd: string, args: string[], opts: { cols: number; rows: number; env?: Record<string, string>; cwd?: string }): IPty {
  const { spawn: ptySpawn } = require("node-pty") as typeof import("node-pty");
  return ptySpawn(cmd, args, {
    name: opts.env?.TERM ?? "xterm",
    cols: opts.cols,
    rows: opts.rows,
    cwd: opts.cwd ?? "/",
    env: opts.env ?? {},
    encoding: null,
  });
}

/** Whether `cmd` is an executable on the daemon's PATH (what liblxc and exec.LookPath see). */
export function onPath(cmd: string): boolean {
  return whichOnPath(cmd) !== undefined;
}

/** The path of `cmd` on the daemon's PATH (for posix_spawn, which does not search), or undefined. */
export function whichOnPath(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    if (d === "") continue;
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return join(d, cmd);
    } catch {
      /* next */
    }
  }
  return undefined;
}
