// `npm run bench:cluster`: issue #18's figures. A three-member cluster on this machine (three
// etcd members and three nodelxd daemons on loopback addresses) with --instances instances spread
// over the members (stopped busybox containers, placed round-robin with ?target=), against one
// standalone nodelxd holding as many: GET /1.0/instances?recursion=2 asked of member m1, and
// `lxc exec c -- true` from m1 for a running container on m2 (forwarded) against a local one.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, openSync, closeSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BenchClient } from "./client.js";
import { median, percentile } from "./instance-figures.js";
import { busyboxImage, ready, startOwnDaemon, unmountUnder } from "./own-daemon.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MAIN = join(ROOT, "dist/main.js");
const USAGE = "usage: npm run bench:cluster -- [--instances 60] [--runs 10] [--addresses 127.0.50.20,127.0.50.21,127.0.50.22] [--json]";

interface Options {
  instances: number;
  runs: number;
  addresses: string[];
  json: boolean;
}

function parse(argv: string[]): Options {
  const o: Options = { instances: 60, runs: 10, addresses: ["127.0.50.20", "127.0.50.21", "127.0.50.22"], json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i] ?? "";
    if (a === "--instances") o.instances = Number(v());
    else if (a === "--runs") o.runs = Number(v());
    else if (a === "--addresses") o.addresses = v().split(",");
    else if (a === "--json") o.json = true;
    else throw new Error(USAGE);
  }
  if (!(o.instances >= 3) || !(o.runs >= 1) || o.addresses.length !== 3 || o.addresses.some((x) => !/^127\.\d+\.\d+\.\d+$/.test(x))) throw new Error(USAGE);
  return o;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host, port });
    c.once("connect", () => (c.destroy(), resolve(true)));
    c.once("error", () => resolve(false));
  });
}

interface Proc {
  proc: ChildProcess;
  stop(signal: NodeJS.Signals): Promise<void>;
}

function launch(cmd: string, args: string[], env: NodeJS.ProcessEnv, log: string): Proc {
  const fd = openSync(log, "a");
  const proc = spawn(cmd, args, { env, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  return {
    proc,
    stop: async (signal) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill(signal);
      await exited;
    },
  };
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, input?: string): string {
  const r = spawnSync(cmd, args, { env, input: input ?? "", encoding: "utf8", timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

interface Member {
  dir: string;
  client: BenchClient;
  env: NodeJS.ProcessEnv;
}

/** Median and p90 of `runs` timed calls (ms), after one warm-up. */
async function timed(runs: number, fn: () => Promise<unknown> | unknown): Promise<{ median: number; p90: number }> {
  await fn();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  return { median: median(t), p90: percentile(t, 90) };
}

async function createInstances(client: BenchClient, n: number, target: (i: number) => string | undefined): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t = target(i);
    await client.op("POST", `/1.0/instances${t ? `?target=${t}` : ""}`, { name: `c${i}`, source: { type: "image", alias: "busybox" } });
  }
}

async function measure(o: Options, client: BenchClient, env: NodeJS.ProcessEnv, execTarget: string): Promise<Record<string, number>> {
  const list = await timed(o.runs, async () => {
    const r = await client.request("GET", "/1.0/instances?recursion=2");
    if (r.status !== 200 || r.body.metadata.length !== o.instances) throw new Error(`listing: ${r.status} ${r.body.metadata?.length}`);
  });
  await client.op("PUT", `/1.0/instances/${execTarget}/state`, { action: "start" });
  const exec = await timed(o.runs, () => run("lxc", ["exec", execTarget, "--", "true"], env));
  await client.op("PUT", `/1.0/instances/${execTarget}/state`, { action: "stop", force: true });
  return { list_median_ms: list.median, list_p90_ms: list.p90, exec_median_ms: exec.median, exec_p90_ms: exec.p90 };
}

async function clusterFigures(o: Options): Promise<Record<string, number>> {
  const root = mkdtempSync("/tmp/nodelxd-bench-cluster-");
  // Containers' root filesystems live below: their (unprivileged) init must be able to traverse it.
  chmodSync(root, 0o711);
  const etcd: Proc[] = [];
  const daemons: Proc[] = [];
  const members: Member[] = [];
  try {
    const initial = o.addresses.map((a, i) => `e${i}=http://${a}:2380`).join(",");
    for (const [i, a] of o.addresses.entries()) {
      etcd.push(
        launch("etcd", ["--name", `e${i}`, "--data-dir", join(root, `etcd${i}`), "--listen-client-urls", `http://${a}:2379`, "--advertise-client-urls", `http://${a}:2379`,
          "--listen-peer-urls", `http://${a}:2380`, "--initial-advertise-peer-urls", `http://${a}:2380`, "--initial-cluster", initial, "--initial-cluster-state", "new",
          "--initial-cluster-token", `nodelxd-bench-${process.pid}`], process.env, join(root, `etcd${i}.log`)),
      );
    }
    for (const a of o.addresses) {
      const deadline = Date.now() + 30_000;
      while (!(await portOpen(a, 2379))) {
        if (Date.now() > deadline) throw new Error(`etcd on ${a} did not start`);
        await sleep(100);
      }
    }
    const endpoints = o.addresses.map((a) => `http://${a}:2379`).join(",");
    for (let i = 0; i < 3; i++) {
      const dir = join(root, `m${i + 1}`);
      const env = { ...process.env, LXD_DIR: dir, LXD_CONF: `${dir}.lxdconf` };
      spawnSync("mkdir", ["-p", dir]);
      daemons.push(launch(process.execPath, [MAIN, "--etcd-endpoints", endpoints], env, `${dir}.log`));
      const deadline = Date.now() + 30_000;
      while (!(existsSync(join(dir, "unix.socket")) && (await ready(join(dir, "unix.socket")).catch(() => 0)) === 200)) {
        if (Date.now() > deadline) throw new Error(`member m${i + 1} did not start`);
        await sleep(100);
      }
      members.push({ dir, env, client: new BenchClient(join(dir, "unix.socket")) });
    }
    const [m1, ...rest] = members;
    run(process.execPath, [MAIN, "init", "--preseed"], m1.env,
      `config:\n  core.https_address: ${o.addresses[0]}:8443\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      type: disk\n      path: /\n      pool: default\ncluster:\n  enabled: true\n  server_name: m1\n`);
    for (const [j, m] of rest.entries()) {
      const token = run("lxc", ["cluster", "add", `m${j + 2}`], m1.env).trim().split("\n").pop()!.trim();
      run(process.execPath, [MAIN, "init", "--preseed"], m.env, `cluster:\n  enabled: true\n  server_address: ${o.addresses[j + 1]}:8443\n  cluster_token: ${token}\n`);
    }
    run("lxc", ["image", "import", busyboxImage(), "--alias", "busybox"], m1.env);
    await createInstances(m1.client, o.instances, (i) => `m${(i % 3) + 1}`);
    // c1 lives on m2: its exec from m1 is forwarded.
    return await measure(o, m1.client, m1.env, "c1");
  } finally {
    for (const m of members) {
      for (let i = 0; i < o.instances; i++) await m.client.request("DELETE", `/1.0/instances/c${i}`).catch(() => undefined);
      m.client.close();
    }
    for (const d of daemons) await d.stop("SIGTERM");
    for (const e of etcd) await e.stop("SIGKILL");
    unmountUnder(root);
    spawnSync("rm", ["-rf", "--one-file-system", root]);
  }
}

async function standaloneFigures(o: Options): Promise<Record<string, number>> {
  const own = await startOwnDaemon(true);
  const client = new BenchClient(own.socket);
  try {
    await createInstances(client, o.instances, () => undefined);
    return await measure(o, client, { ...process.env, LXD_DIR: client.lxdDir, LXD_CONF: `${client.lxdDir}.lxdconf` }, "c1");
  } finally {
    for (let i = 0; i < o.instances; i++) await client.request("DELETE", `/1.0/instances/c${i}`).catch(() => undefined);
    client.close();
    await own.stop();
  }
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const standalone = await standaloneFigures(o);
  const cluster = await clusterFigures(o);
  if (o.json) {
    console.log(JSON.stringify({ instances: o.instances, runs: o.runs, standalone, cluster }, null, 2));
    return;
  }
  const rows: [string, string][] = [
    ["list_median_ms", `GET /1.0/instances?recursion=2, ${o.instances} instances, median (ms)`],
    ["list_p90_ms", `GET /1.0/instances?recursion=2, ${o.instances} instances, p90 (ms)`],
    ["exec_median_ms", "lxc exec c -- true, median (ms; cluster: forwarded m1 → m2)"],
    ["exec_p90_ms", "lxc exec c -- true, p90 (ms)"],
  ];
  console.log(`${"figure".padEnd(72)} ${"standalone".padStart(11)} ${"cluster".padStart(9)} ${"ratio".padStart(6)}`);
  for (const [k, label] of rows) {
    console.log(`${label.padEnd(72)} ${standalone[k].toFixed(1).padStart(11)} ${cluster[k].toFixed(1).padStart(9)} ${(cluster[k] / standalone[k]).toFixed(2).padStart(6)}`);
  }
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(1);
});
