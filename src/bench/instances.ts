// `npm run bench:instances`: container launch time (create + start, through the API as
// `lxc launch` does) and GET /1.0/instances?recursion=2 latency with N running containers,
// for nodelxd and optionally a second daemon (--compare SOCKET, e.g. a real LXD).
// The daemon needs the image alias (default "busybox") and a default profile with a root
// disk; without --socket a nodelxd of this build is started and set up in a fresh LXD_DIR.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

interface Options {
  socket?: string;
  compare?: string;
  count: number;
  image: string;
  listings: number;
  json: boolean;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { count: 20, image: "busybox", listings: 50, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--socket") o.socket = next();
    else if (a === "--compare") o.compare = next();
    else if (a === "--count") o.count = Number(next());
    else if (a === "--image") o.image = next();
    else if (a === "--listings") o.listings = Number(next());
    else if (a === "--json") o.json = true;
    else if (a === "--help" || a === "-h") {
      console.log("usage: npm run bench:instances -- [--socket PATH] [--compare PATH] [--count 20] [--image busybox] [--listings 50] [--json]");
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (!Number.isInteger(o.count) || o.count < 1) throw new Error("--count must be a positive integer");
  return o;
}

const agent = new Agent({ keepAlive: true });

function call(socketPath: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ socketPath, path, method, agent, headers: payload ? { "Content-Type": "application/json" } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        let json: any;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
    });
    req.on("error", reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** Run an async request to completion; throws with the operation's error. */
async function op(socket: string, method: string, path: string, body: unknown): Promise<void> {
  const r = await call(socket, method, path, body);
  if (r.status !== 202) throw new Error(`${method} ${path}: ${r.json?.error ?? r.status}`);
  const w = await call(socket, "GET", `${r.json.operation}/wait?timeout=120`);
  if (w.json?.metadata?.status !== "Success") throw new Error(`${method} ${path}: ${w.json?.metadata?.err ?? "operation failed"}`);
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const round = (x: number) => Math.round(x * 10) / 10;

export interface InstanceFigures {
  launch_p50_ms: number;
  launch_mean_ms: number;
  list_recursion2_p50_ms: number;
  list_recursion2_p99_ms: number;
  instances: number;
}

async function measure(socket: string, o: Options): Promise<InstanceFigures> {
  const prefix = `bench-${process.pid.toString(36)}-`;
  const names: string[] = [];
  const launches: number[] = [];
  try {
    for (let i = 0; i < o.count; i++) {
      const name = `${prefix}${i}`;
      const t0 = process.hrtime.bigint();
      names.push(name);
      await op(socket, "POST", "/1.0/instances", { name, source: { type: "image", alias: o.image } });
      await op(socket, "PUT", `/1.0/instances/${name}/state`, { action: "start", timeout: 30 });
      launches.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const lists: number[] = [];
    for (let i = 0; i < o.listings; i++) {
      const t0 = process.hrtime.bigint();
      const r = await call(socket, "GET", "/1.0/instances?recursion=2");
      if (r.status !== 200) throw new Error(`listing failed: ${r.status}`);
      lists.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    launches.sort((a, b) => a - b);
    lists.sort((a, b) => a - b);
    return {
      launch_p50_ms: round(percentile(launches, 50)),
      launch_mean_ms: round(launches.reduce((a, b) => a + b, 0) / launches.length),
      list_recursion2_p50_ms: round(percentile(lists, 50)),
      list_recursion2_p99_ms: round(percentile(lists, 99)),
      instances: o.count,
    };
  } finally {
    for (const name of names) {
      await op(socket, "PUT", `/1.0/instances/${name}/state`, { action: "stop", force: true, timeout: 30 }).catch(() => {});
      await op(socket, "DELETE", `/1.0/instances/${name}`, undefined).catch(() => {});
    }
  }
}

/** A nodelxd of this build in a fresh LXD_DIR with pool, profile root disk and the busybox image. */
async function startOwnDaemon(o: Options): Promise<{ socket: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync("/tmp/nodelxd-bench-");
  const main = fileURLToPath(new URL("../main.js", import.meta.url));
  const env = { ...process.env, LXD_DIR: dir, LXD_CONF: join(dir, ".lxdconf") };
  const proc: ChildProcess = spawn(process.execPath, [main], { env, stdio: "ignore" });
  const socket = join(dir, "unix.socket");
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await exited;
    }
    spawnSync("umount", ["-l", join(dir, "shmounts")]);
    spawnSync("rm", ["-rf", "--one-file-system", dir]);
  };
  const deadline = Date.now() + 30_000;
  while (!(existsSync(socket) && (await call(socket, "GET", "/internal/ready").catch(() => ({ status: 0 }))).status === 200)) {
    if (Date.now() > deadline || proc.exitCode !== null) {
      await stop();
      throw new Error("nodelxd did not start");
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const image = "/tmp/nodelxd-test-cache/busybox.tar.xz";
  if (!existsSync(image)) spawnSync(join(root, "test/fixtures/busybox-image.sh"), [image], { stdio: "ignore" });
  const lxc = (...args: string[]) => {
    const r = spawnSync("lxc", args, { env, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`lxc ${args.join(" ")}: ${r.stderr}`);
  };
  try {
    lxc("storage", "create", "default", "dir");
    lxc("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
    lxc("image", "import", image, "--alias", o.image);
  } catch (e) {
    await stop();
    throw e;
  }
  return { socket, stop };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const own = o.socket ? undefined : await startOwnDaemon(o);
  try {
    const ours = await measure(o.socket ?? own!.socket, o);
    const other = o.compare ? await measure(o.compare, o) : undefined;
    if (o.json) {
      console.log(JSON.stringify(other ? { nodelxd: ours, compare: other } : { nodelxd: ours }, null, 2));
      return;
    }
    const rows: [string, keyof InstanceFigures][] = [
      ["launch (create+start) p50 (ms)", "launch_p50_ms"],
      ["launch (create+start) mean (ms)", "launch_mean_ms"],
      [`GET /1.0/instances?recursion=2, ${o.count} running, p50 (ms)`, "list_recursion2_p50_ms"],
      [`GET /1.0/instances?recursion=2, ${o.count} running, p99 (ms)`, "list_recursion2_p99_ms"],
    ];
    const head = other ? ["", "nodelxd", "other"] : ["", "nodelxd"];
    const all = [head, ...rows.map(([l, k]) => (other ? [l, String(ours[k]), String(other[k])] : [l, String(ours[k])]))];
    const widths = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
    console.log(all.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")).join("\n"));
  } finally {
    await own?.stop();
    agent.destroy();
  }
}

main().catch((e) => {
  console.error(`Error: ${(e as Error).message}`);
  process.exit(1);
});
