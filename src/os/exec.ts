// Spawning system tools (the liblxc helpers are started by helper-process.ts instead).
import { spawn as spawnChild } from "node:child_process";
import { execa, type Options } from "execa";
import { spawn as ptySpawn, type IPty } from "node-pty";

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
  const options: Options = {
    cancelSignal: opts.signal,
    input: opts.input,
    env: opts.env,
    cwd: opts.cwd,
    reject: false,
    stripFinalNewline: true,
  };
  const res = await execa(cmd, args, options);
  const out = { stdout: String(res.stdout ?? ""), stderr: String(res.stderr ?? ""), exitCode: res.exitCode ?? (res.failed ? -1 : 0) };
  if (out.exitCode !== 0 && opts.reject !== false) {
    if (res.failed && res.exitCode === undefined) throw new CommandError(cmd, -1, res.message ?? "failed to start");
    throw new CommandError([cmd, ...args].join(" "), out.exitCode, out.stderr);
  }
  return out;
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
  const child = execa(cmd, args, { env: opts.env, detached: true, reject: false, stdin: "ignore", buffer: false, cleanup: false });
  let tail = "";
  const keep = (chunk: Buffer | string) => {
    tail = (tail + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = child.then(
    (r) => (r.signal ? String(r.signal) : (r.exitCode ?? -1)),
    () => -1,
  );
  if (child.pid === undefined) throw new CommandError(cmd, -1, "failed to start");
  return { pid: child.pid, exited, output: () => tail.trim() };
}

/** A child on a new pseudo-terminal (interactive exec, console). Output arrives as Buffers. */
export function spawnPty(cmd: string, args: string[], opts: { cols: number; rows: number; env?: Record<string, string>; cwd?: string }): IPty {
  return ptySpawn(cmd, args, {
    name: opts.env?.TERM ?? "xterm",
    cols: opts.cols,
    rows: opts.rows,
    cwd: opts.cwd ?? "/",
    env: opts.env ?? {},
    encoding: null,
  });
}
