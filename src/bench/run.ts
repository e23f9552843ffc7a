// `npm run bench`: GET /1.0 latency and throughput, and instance figures (launch, listing,
// stop+start, parallel launches, exec round trip, file push), for nodelxd and optionally a
// second daemon measured through the same code (--compare).
import { dirname } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { BenchClient } from "./client.js";
import { sequentialLatency, throughput } from "./http-get.js";
import { InstanceBench, median, percentile, PUSH_MIB, randomFile } from "./instance-figures.js";
import { startOwnDaemon, type OwnDaemon } from "./own-daemon.js";
import { exportImage, remoteLaunchOnce, serveRemoteTree, type RemoteTree } from "./remote-launch.js";

/** Figure name → value; which names are present depends on --only. */
export type Figures = Record<string, number>;

interface Options {
  socket?: string;
  compare?: string;
  json: boolean;
  requests: number;
  connections: number;
  duration: number;
  path: string;
  runs: number;
  only: Group[];
}

const GROUPS = ["get", "launch", "list", "stopstart", "parallel", "exec", "push", "remote"] as const;
type Group = (typeof GROUPS)[number];

const ROWS: { group: Group; key: string; label: string }[] = [
  { group: "get", key: "p50_us", label: "GET {path} p50 latency (µs)" },
  { group: "get", key: "p99_us", label: "GET {path} p99 latency (µs)" },
  { group: "get", key: "mean_us", label: "GET {path} mean latency (µs)" },
  { group: "get", key: "requests_per_second", label: "GET {path} throughput (req/s)" },
  { group: "launch", key: "launch_median_ms", label: "launch (create+start) median (ms)" },
  { group: "launch", key: "launch_p90_ms", label: "launch (create+start) p90 (ms)" },
  { group: "list", key: "list_median_ms", label: "GET /1.0/instances?recursion=2, 20 instances, median (ms)" },
  { group: "list", key: "list_p90_ms", label: "GET /1.0/instances?recursion=2, 20 instances, p90 (ms)" },
  { group: "stopstart", key: "stopstart_median_ms", label: "stop --force + start median (ms)" },
  { group: "parallel", key: "parallel10_ms", label: "10 parallel launches, wall (ms)" },
  { group: "exec", key: "exec_lxc_median_ms", label: "lxc exec c -- true median (ms)" },
  { group: "exec", key: "client_query_median_ms", label: "  the client alone: lxc query /1.0 (ms)" },
  { group: "exec", key: "exec_ws_median_ms", label: "exec true, raw websockets, median (ms)" },
  { group: "push", key: "push_lxc_mib_s", label: `lxc file push ${PUSH_MIB} MiB median (MiB/s)` },
  { group: "push", key: "push_http_mib_s", label: `POST /files ${PUSH_MIB} MiB median (MiB/s)` },
  { group: "remote", key: "remote_first_median_ms", label: "launch from http simplestreams, first (download) median (ms)" },
  { group: "remote", key: "remote_cached_median_ms", label: "launch from http simplestreams, cached median (ms)" },
];

const USAGE = `usage: npm run bench -- [--socket PATH] [--compare PATH] [--json] [--only ${GROUPS.join(",")}]
         [--runs N] [--requests N] [--connections N] [--duration S] [--path /1.0]`;

function parseOptions(argv: string[]): Options {
  const o: Options = { json: false, requests: 2000, connections: 32, duration: 5, path: "/1.0", runs: 5, only: [...GROUPS] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const count = () => {
      const v = next();
      if (!/^[1-9]\d*$/.test(v)) throw new Error(`${a} needs a positive integer, not '${v}'`);
      return Number(v);
    };
    if (a === "--socket") o.socket = next();
    else if (a === "--compare") o.compare = next();
    else if (a === "--json") o.json = true;
    else if (a === "--requests") o.requests = count();
    else if (a === "--connections") o.connections = count();
    else if (a === "--duration") o.duration = count();
    else if (a === "--runs") o.runs = count();
    else if (a === "--path") o.path = next();
    else if (a === "--only") {
      const names = next().split(",").filter(Boolean);
      const bad = names.filter((n) => !(GROUPS as readonly string[]).includes(n));
      if (bad.length || !names.length) throw new Error(`--only: unknown figure '${bad.join(",")}' (one of ${GROUPS.join(",")})`);
      o.only = GROUPS.filter((g) => names.includes(g));
    } else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

const r1 = (x: number) => Math.round(x * 10) / 10;

/** One daemon under test: its client, its instance bench, and what to undo at the end. */
class Target {
  readonly client: BenchClient;
  readonly instances: InstanceBench;
  constructor(readonly socket: string) {
    this.client = new BenchClient(socket);
    this.instances = new InstanceBench(this.client);
  }
  async close(): Promise<void> {
    const left = await this.instances.cleanup();
    this.client.close();
    if (left.length) console.error(`could not remove on ${this.socket}:\n  ${left.join("\n  ")}`);
  }
}

async function measure(group: Group, t: Target, o: Options, pushFile: () => string): Promise<Figures> {
  const b = t.instances;
  switch (group) {
    case "get":
      return { ...(await sequentialLatency(t.socket, o.path, o.requests)), requests_per_second: await throughput(t.socket, o.path, o.connections, o.duration) };
    case "launch":
      return (await launchFigures([t], o.runs))[0];
    case "list": {
      const { samples, listed } = await b.list(20, 30);
      // list_count (JSON only): other users' instances on a shared daemon are listed too.
      return { list_median_ms: r1(median(samples)), list_p90_ms: r1(percentile(samples, 90)), list_count: listed };
    }
    case "stopstart":
      return { stopstart_median_ms: r1(median(await b.withRunning((n) => b.stopStart(n, o.runs)))) };
    case "parallel":
      return { parallel10_ms: r1(await b.parallel(10)) };
    case "exec":
      return (await execFigures([t], o.runs))[0];
    case "push":
      return b.withRunning(async (n) => ({ push_lxc_mib_s: r1(median(await b.pushLxc(n, pushFile(), o.runs))), push_http_mib_s: r1(median(await b.pushHttp(n, pushFile(), o.runs))) }));
    case "remote":
      return (await remoteFigures([t], o.runs))[0];
  }
}

/**
 * First and cached launches from a simplestreams tree made of the first target's busybox image
 * and served over http on loopback; a sample on each daemon in turn.
 */
async function remoteFigures(targets: Target[], runs: number): Promise<Figures[]> {
  const work = mkdtempSync("/tmp/nodelxd-bench-remote-");
  let tree: RemoteTree | undefined;
  try {
    tree = await serveRemoteTree(await exportImage(targets[0].client, "busybox", work));
    const t = tree;
    const first = await inTurn(targets, runs, 1, (x) => remoteLaunchOnce(x.client, t, x.instances.name(), x.instances.maskedDevices, true));
    // Cache it on each, then measure the cached launches; the image goes at the end.
    for (const x of targets) await remoteLaunchOnce(x.client, t, x.instances.name(), x.instances.maskedDevices, false);
    const cached = await inTurn(targets, runs, 0, (x) => remoteLaunchOnce(x.client, t, x.instances.name(), x.instances.maskedDevices, false));
    for (const x of targets) await x.client.op("DELETE", `/1.0/images/${t.fingerprint}`).catch(() => {});
    return targets.map((_, k) => ({ remote_first_median_ms: r1(median(first[k])), remote_cached_median_ms: r1(median(cached[k])) }));
  } finally {
    await tree?.close();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Run `body` with one running instance on each target. */
async function withRunningOnEach<T>(targets: Target[], body: (names: string[]) => Promise<T>, names: string[] = []): Promise<T> {
  if (names.length === targets.length) return body(names);
  return targets[names.length].instances.withRunning((n) => withRunningOnEach(targets, body, [...names, n]));
}

/**
 * Samples taken one per daemon in turn (after `warmup` unrecorded rounds): single figures are
 * tens or hundreds of milliseconds, where the machine's drift over a run would otherwise weigh
 * on one daemon more than on the other. Returns each target's samples.
 */
async function inTurn(targets: Target[], runs: number, warmup: number, sample: (t: Target, k: number) => Promise<number>): Promise<number[][]> {
  const samples: number[][] = targets.map(() => []);
  for (let i = -warmup; i < runs; i++) {
    for (const [k, t] of targets.entries()) {
      const v = await sample(t, k);
      if (i >= 0) samples[k].push(v);
    }
  }
  return samples;
}

/** Five unrecorded rounds first: a daemon serves exec for months, so the figure is its steady state. */
async function execFigures(targets: Target[], runs: number): Promise<Figures[]> {
  return withRunningOnEach(targets, async (names) => {
    const kinds = {
      exec_lxc_median_ms: (b: InstanceBench, n: string) => b.execLxcOnce(n),
      client_query_median_ms: (b: InstanceBench) => b.clientBaselineOnce(),
      exec_ws_median_ms: (b: InstanceBench, n: string) => b.execWebsocketOnce(n),
    };
    const figures: Figures[] = targets.map(() => ({}));
    for (const [key, sample] of Object.entries(kinds)) {
      const samples = await inTurn(targets, runs, 5, (t, k) => sample(t.instances, names[k]));
      samples.forEach((s, k) => (figures[k][key] = r1(median(s))));
    }
    return figures;
  });
}

/** One unrecorded round first: the very first launch of an image also prepares the image. */
async function launchFigures(targets: Target[], runs: number): Promise<Figures[]> {
  const samples = await inTurn(targets, runs, 1, (t) => t.instances.launchOnce());
  return samples.map((s) => ({ launch_median_ms: r1(median(s)), launch_p90_ms: r1(percentile(s, 90)) }));
}

const IN_TURN: Partial<Record<Group, (targets: Target[], runs: number) => Promise<Figures[]>>> = { exec: execFigures, launch: launchFigures, remote: remoteFigures };

function table(rows: typeof ROWS, path: string, ours: Figures, other?: Figures): string {
  const head = other ? ["", "nodelxd", "other", "nodelxd/other"] : ["", "nodelxd"];
  const body = rows.map(({ key, label }) => {
    const l = label.replace("{path}", path);
    return other ? [l, String(ours[key]), String(other[key]), (ours[key] / other[key]).toFixed(2)] : [l, String(ours[key])];
  });
  const all = [head, ...body];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")).join("\n");
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const needsInstances = o.only.some((g) => g !== "get");
  let own: OwnDaemon | undefined;
  let pushPath: string | undefined;
  const targets: Target[] = [];
  const cleanup = async () => {
    for (const t of targets.splice(0)) await t.close();
    if (pushPath) rmSync(dirname(pushPath), { recursive: true, force: true });
    await own?.stop();
    own = undefined;
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      console.error(`${sig}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    own = o.socket ? undefined : await startOwnDaemon(needsInstances);
    const ours = new Target(o.socket ?? own!.socket);
    targets.push(ours);
    const other = o.compare ? new Target(o.compare) : undefined;
    if (other) targets.push(other);
    if (needsInstances) for (const t of targets) await t.instances.check();
    const pushFile = () => (pushPath ??= randomFile(PUSH_MIB));

    // Figure by figure, ours then theirs (launch and exec: a sample of each in turn), so both
    // daemons see similar machine load.
    const figOurs: Figures = {};
    const figOther: Figures = {};
    for (const g of o.only) {
      const inTurnFigures = IN_TURN[g];
      if (inTurnFigures && other) {
        const [a, b] = await inTurnFigures([ours, other], o.runs);
        Object.assign(figOurs, a);
        Object.assign(figOther, b);
        continue;
      }
      Object.assign(figOurs, await measure(g, ours, o, pushFile));
      if (other) Object.assign(figOther, await measure(g, other, o, pushFile));
    }
    const rows = ROWS.filter((r) => o.only.includes(r.group));
    if (o.json) {
      const out: Record<string, unknown> = { path: o.path, requests: o.requests, connections: o.connections, duration_s: o.duration, runs: o.runs, only: o.only, nodelxd: figOurs };
      if (other) {
        out.compare = figOther;
        out.ratios = Object.fromEntries(rows.map(({ key }) => [key === "requests_per_second" || !key.endsWith("_us") ? key : key.replace(/_us$/, ""), Number((figOurs[key] / figOther[key]).toFixed(2))]));
      }
      console.log(JSON.stringify(out, null, 2));
    } else {
      console.log(table(rows, o.path, figOurs, other ? figOther : undefined));
    }
  } finally {
    await cleanup();
  }
}

main().catch((e) => {
  console.error(`Error: ${(e as Error).message}`);
  process.exitCode = 1;
});
