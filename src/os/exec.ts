// The one place that spawns processes.
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
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

/** A long-running child with streamed stdio (exec sessions): the caller owns its pipes. */
export function spawnWithStdio(cmd: string, args: string[], opts: { stdio: StdioOptions; env?: Record<string, string>; cwd?: string }): ChildProcess {
  return spawn(cmd, args, { stdio: opts.stdio, env: opts.env ?? {}, cwd: opts.cwd ?? "/" });
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
