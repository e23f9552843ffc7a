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
