// `npm run bench`: GET /1.0 latency (sequential, one keep-alive connection) and throughput
// (concurrent connections) over a unix socket, for nodelxd and optionally a second daemon.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
// autocannon ships no types; only its promise API is used.
const autocannon = require("autocannon") as (opts: Record<string, unknown>) => Promise<{ requests: { average: number }; errors: number; non2xx: number; timeouts: number }>;

export interface Figures {
  p50_us: number;
  p99_us: number;
  mean_us: number;
  requests_per_second: number;
}

interface Options {
  socket?: string;
  compare?: string;
  json: boolean;
  requests: number;
  connections: number;
  duration: number;
  path: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { json: false, requests: 2000, connections: 32, duration: 5, path: "/1.0" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--socket") o.socket = next();
    else if (a === "--compare") o.compare = next();
    else if (a === "--json") o.json = true;
    else if (a === "--requests") o.requests = Number(next());
    else if (a === "--connections") o.connections = Number(next());
    else if (a === "--duration") o.duration = Number(next());
    else if (a === "--path") o.path = next();
    else if (a === "--help" || a === "-h") {
      console.log("usage: npm run bench -- [--socket PATH] [--compare PATH] [--json] [--requests N] [--connections N] [--duration S] [--path /1.0]");
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

function get(agent: Agent, socketPath: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, agent, method: "GET" }, (res) => {
      res.on("data", () => {});
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export async function sequentialLatency(socketPath: string, path: string, n: number): Promise<{ p50_us: number; p99_us: number; mean_us: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < Math.min(200, n); i++) await get(agent, socketPath, path); // warm-up
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      const status = await get(agent, socketPath, path);
      samples.push(Number(process.hrtime.bigint() - t0) / 1000);
      if (status !== 200) throw new Error(`GET ${path} answered ${status}`);
    }
    samples.sort((a, b) => a - b);
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    return { p50_us: round(percentile(samples, 50)), p99_us: round(percentile(samples, 99)), mean_us: round(mean) };
  } finally {
    agent.destroy();
  }
}

export async function throughput(socketPath: string, path: string, connections: number, duration: number): Promise<number> {
  const r = await autocannon({ url: `http://lxd${path}`, socketPath, connections, duration, pipelining: 1 });
  if (r.errors || r.non2xx || r.timeouts) throw new Error(`throughput run had ${r.errors} errors, ${r.non2xx} non-2xx, ${r.timeouts} timeouts`);
  return Math.round(r.requests.average);
}

const round = (x: number) => Math.round(x * 10) / 10;

/** Start a nodelxd of this build in a fresh LXD_DIR; resolves once it answers. */
async function startOwnDaemon(): Promise<{ socket: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync("/tmp/nodelxd-bench-");
  const main = fileURLToPath(new URL("../main.js", import.meta.url));
  const proc: ChildProcess = spawn(process.execPath, [main], { env: { ...process.env, LXD_DIR: dir }, stdio: "ignore" });
  const socket = join(dir, "unix.socket");
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) break;
    if (existsSync(socket)) {
      try {
        if ((await get(new Agent(), socket, "/internal/ready")) === 200) return { socket, stop };
      } catch {
        /* not yet */
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error("nodelxd did not start");
}

function table(ours: Figures, other?: Figures): string {
  const rows: [string, keyof Figures][] = [
    ["GET /1.0 p50 latency (µs)", "p50_us"],
    ["GET /1.0 p99 latency (µs)", "p99_us"],
    ["GET /1.0 mean latency (µs)", "mean_us"],
    ["GET /1.0 throughput (req/s)", "requests_per_second"],
  ];
  const head = other ? ["", "nodelxd", "other", "nodelxd/other"] : ["", "nodelxd"];
  const body = rows.map(([label, k]) => (other ? [label, String(ours[k]), String(other[k]), (ours[k] / other[k]).toFixed(2)] : [label, String(ours[k])]));
  const all = [head, ...body];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")).join("\n");
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const own = o.socket ? undefined : await startOwnDaemon();
  try {
    // Latencies first, then throughputs, so both daemons see similar machine load per phase.
    const socket = o.socket ?? own!.socket;
    const latOurs = await sequentialLatency(socket, o.path, o.requests);
    const latOther = o.compare ? await sequentialLatency(o.compare, o.path, o.requests) : undefined;
    const ours: Figures = { ...latOurs, requests_per_second: await throughput(socket, o.path, o.connections, o.duration) };
    const other: Figures | undefined = o.compare ? { ...latOther!, requests_per_second: await throughput(o.compare, o.path, o.connections, o.duration) } : undefined;
    if (o.json) {
      const out: Record<string, unknown> = { path: o.path, requests: o.requests, connections: o.connections, duration_s: o.duration, nodelxd: ours };
      if (other) {
        out.compare = other;
        const ratio = (a: number, b: number) => Number((a / b).toFixed(2));
        out.ratios = {
          p50: ratio(ours.p50_us, other.p50_us),
          p99: ratio(ours.p99_us, other.p99_us),
          requests_per_second: ratio(ours.requests_per_second, other.requests_per_second),
        };
      }
      console.log(JSON.stringify(out, null, 2));
    } else {
      console.log(table(ours, other));
    }
  } finally {
    await own?.stop();
  }
}

main().catch((e) => {
  console.error(`Error: ${(e as Error).message}`);
  process.exit(1);
});
