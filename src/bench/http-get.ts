// GET latency (sequential, one keep-alive connection) and throughput (concurrent
// connections, autocannon) over a unix socket.
import { Agent, request } from "node:http";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
// autocannon ships no types; only its promise API is used.
const autocannon = require("autocannon") as (opts: Record<string, unknown>) => Promise<{ requests: { average: number }; errors: number; non2xx: number; timeouts: number }>;

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
