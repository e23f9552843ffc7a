// The one place that spawns processes.
import { execa, type Options } from "execa";

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
