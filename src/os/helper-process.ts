// A helper process started with posix_spawn (native/spawn.c) rather than Node's fork: the
// daemon is not blocked while its page tables are copied. Its stdio are unix stream sockets
// like Node's "pipe", or descriptors given by the caller.
import { closeSync } from "node:fs";
import { Socket } from "node:net";
import { native } from "./native.js";

export type HelperStdio = "pipe" | "ignore" | number;

export class HelperProcess {
  readonly pid: number;
  /** Our ends of the "pipe" descriptors, by child descriptor number. */
  readonly stdio: (Socket | null)[];
  /** Resolves with the exit code, or the number of the signal that killed it. */
  readonly exited: Promise<{ code: number | null; signal: number | null }>;
  private reaped = false;

  constructor(path: string, argv0: string, args: string[], stdio: HelperStdio[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
    const pairs = stdio.map((s) => (s === "pipe" ? native.socketPair() : null));
    const childFds = stdio.map((s, i) => (s === "pipe" ? pairs[i]![1] : s === "ignore" ? -1 : s));
    let resolveExit!: (r: { code: number | null; signal: number | null }) => void;
    this.exited = new Promise((r) => (resolveExit = r));
    const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
    try {
      this.pid = native.spawn(path, [argv0, ...args], childFds, opts.cwd ?? "/", env, (code, signal) => {
        this.reaped = true;
        resolveExit({ code, signal });
      });
    } catch (e) {
      for (const p of pairs) if (p) for (const fd of p) closeSync(fd);
      throw e;
    }
    for (const p of pairs) if (p) closeSync(p[1]);
    this.stdio = pairs.map((p) => (p ? new Socket({ fd: p[0], readable: true, writable: true }) : null));
  }

  get stdin(): Socket | null {
    return this.stdio[0] ?? null;
  }
  get stdout(): Socket | null {
    return this.stdio[1] ?? null;
  }
  get stderr(): Socket | null {
    return this.stdio[2] ?? null;
  }

  /** Signal the process unless it was reaped (its pid may belong to another process by now). */
  kill(signal: NodeJS.Signals | number = "SIGTERM"): void {
    if (this.reaped) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** Run a helper to its end, collecting what it prints (its stdin is /dev/null). */
export async function runHelper(path: string, argv0: string, args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const p = new HelperProcess(path, argv0, args, ["ignore", "pipe", "pipe"], { env });
  const collect = (s: Socket | null) =>
    new Promise<string>((resolve) => {
      const chunks: Buffer[] = [];
      s!.on("data", (c: Buffer) => chunks.push(c));
      s!.on("error", () => resolve(Buffer.concat(chunks).toString("utf8")));
      s!.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    });
  const [stdout, stderr, { code, signal }] = await Promise.all([collect(p.stdout), collect(p.stderr), p.exited]);
  return { stdout, stderr, exitCode: code ?? (signal !== null ? 128 + signal : -1) };
}
