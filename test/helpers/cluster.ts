// A three-member test cluster on loopback: three etcd members (127.0.0.10-12, client 2379,
// peer 2380) and three nodelxd daemons (own LXD_DIRs, HTTPS on 127.0.0.10-12:8443). Every
// process is stopped by its pid and every directory removed, also when start-up fails half-way.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { MAIN, startDaemon, type TestDaemon } from "./daemon.js";

export const MEMBER_ADDRESSES = ["127.0.0.10", "127.0.0.11", "127.0.0.12"] as const;
export const etcdEndpoints = (n = 3) => MEMBER_ADDRESSES.slice(0, n).map((a) => `http://${a}:2379`);

export interface EtcdMember {
  name: string;
  address: string;
  proc: ChildProcess;
  kill(): Promise<void>;
}

export interface TestCluster {
  root: string;
  etcd: EtcdMember[];
  daemons: TestDaemon[];
  endpoints: string[];
  stop(): Promise<void>;
}

const exited = (p: ChildProcess) => new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once("exit", () => r())));

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host, port });
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

async function waitPort(host: string, port: number, proc: ChildProcess, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`etcd on ${host} exited with ${proc.exitCode}`);
    if (await portOpen(host, port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`etcd on ${host}:${port} did not start`);
}

/** Where a test cluster listens: member addresses, etcd client and peer ports. */
export interface ClusterLayout {
  addresses: readonly string[];
  clientPort: number;
  peerPort: number;
}

export const DEFAULT_LAYOUT: ClusterLayout = { addresses: MEMBER_ADDRESSES, clientPort: 2379, peerPort: 2380 };

/** Spawn etcd member `i` of an `n`-member layout (again, on its existing data directory, after a kill). */
export function spawnEtcdMember(root: string, i: number, n = 3, layout: ClusterLayout = DEFAULT_LAYOUT): EtcdMember {
  const addrs = layout.addresses.slice(0, n);
  const { clientPort, peerPort } = layout;
  const address = addrs[i];
  const initial = addrs.map((a, j) => `e${j}=http://${a}:${peerPort}`).join(",");
  const log = openSync(join(root, `etcd${i}.log`), "a");
  const proc = spawn(
    "etcd",
    [
      "--name", `e${i}`,
      "--data-dir", join(root, `etcd${i}`),
      "--listen-client-urls", `http://${address}:${clientPort}`,
      "--advertise-client-urls", `http://${address}:${clientPort}`,
      "--listen-peer-urls", `http://${address}:${peerPort}`,
      "--initial-advertise-peer-urls", `http://${address}:${peerPort}`,
      "--initial-cluster", initial,
      "--initial-cluster-state", "new",
      "--initial-cluster-token", `nodelxd-cluster-${process.pid}`,
      "--heartbeat-interval", "100",
      "--election-timeout", "1000",
      "--unsafe-no-fsync",
    ],
    { stdio: ["ignore", log, log] },
  );
  closeSync(log);
  return {
    name: `e${i}`,
    address,
    proc,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await exited(proc);
      }
    },
  };
}

/** Wait until an etcd member answers on its client port. */
export const etcdReady = (m: EtcdMember, layout: ClusterLayout = DEFAULT_LAYOUT) => waitPort(m.address, layout.clientPort, m.proc);

/** Start `n` etcd members forming one etcd cluster. */
export async function startEtcd(root: string, n = 3, layout: ClusterLayout = DEFAULT_LAYOUT): Promise<EtcdMember[]> {
  const members: EtcdMember[] = [];
  for (let i = 0; i < n; i++) members.push(spawnEtcdMember(root, i, n, layout));
  await Promise.all(members.map((m) => waitPort(m.address, layout.clientPort, m.proc)));
  return members;
}

/** Three etcd members and `daemons` nodelxd daemons (not yet clustered), each given `--etcd-endpoints`. */
export async function startCluster(opts: { daemons?: number; layout?: ClusterLayout; prefix?: string } = {}): Promise<TestCluster> {
  const layout = opts.layout ?? DEFAULT_LAYOUT;
  const root = mkdtempSync(`/tmp/${opts.prefix ?? ""}cluster-test-`);
  const cluster: TestCluster = {
    root,
    etcd: [],
    daemons: [],
    endpoints: layout.addresses.slice(0, 3).map((a) => `http://${a}:${layout.clientPort}`),
    stop: async () => {
      await Promise.all(cluster.daemons.map((d) => d.stop().catch(() => undefined)));
      await Promise.all(cluster.etcd.map((m) => m.kill()));
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    cluster.etcd = await startEtcd(root, 3, layout);
    for (let i = 0; i < (opts.daemons ?? 3); i++) {
      cluster.daemons.push(await startDaemon({ args: ["--etcd-endpoints", cluster.endpoints.join(",")] }));
    }
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a command without blocking the event loop (vitest's worker RPC needs it alive). */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = execFile(cmd, args, { env: opts.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20, encoding: "utf8" }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout: stdout ?? "", stderr: stderr ?? "" });
    });
    // Always close stdin: `lxc init`/`launch` read a YAML config from a stdin that is not a terminal.
    // A command that exits without reading its stdin must not fail the run (EPIPE).
    p.stdin?.on("error", () => undefined);
    p.stdin?.end(opts.input ?? "");
  });
}

/** The stock `lxc` client against a member, asynchronously. */
export function lxcAsync(d: TestDaemon, ...args: string[]): Promise<Run> {
  return run("lxc", args, { env: { ...process.env, LXD_DIR: d.dir, LXD_CONF: `${d.dir}.lxdconf` } });
}

/** `nodelxd init --preseed` against a member, asynchronously. */
export function preseedAsync(d: TestDaemon, doc: string): Promise<Run> {
  return run(process.execPath, [MAIN, "init", "--preseed"], { env: { ...process.env, LXD_DIR: d.dir }, input: doc });
}

/** The output of a run that must succeed. */
export function ok(r: Run): string {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Bootstrap `m1` (dir pool, default profile) and join the others with tokens; names m1, m2, ... */
export async function formCluster(daemons: TestDaemon[], layout: ClusterLayout, port: number): Promise<void> {
  const [m1, ...rest] = daemons;
  const addr = (i: number) => `${layout.addresses[i]}:${port}`;
  ok(
    await preseedAsync(
      m1,
      `config:\n  core.https_address: ${addr(0)}\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      type: disk\n      path: /\n      pool: default\ncluster:\n  enabled: true\n  server_name: m1\n`,
    ),
  );
  for (const [j, d] of rest.entries()) {
    const name = `m${j + 2}`;
    const token = ok(await lxcAsync(m1, "cluster", "add", name)).trim().split("\n").pop()!.trim();
    ok(await preseedAsync(d, `cluster:\n  enabled: true\n  server_address: ${addr(j + 1)}\n  cluster_token: ${token}\n`));
  }
}

/** Poll `cond` until it holds or `timeoutMs` passes. */
export async function waitFor(cond: () => Promise<boolean>, timeoutMs = 10_000, everyMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return false;
}

/** `lxc list` on member `d`: instance name → [status, location]. */
export async function listedOn(d: TestDaemon): Promise<Record<string, [string, string]>> {
  const out = ok(await lxcAsync(d, "list", "-f", "csv", "-c", "nsL"));
  return Object.fromEntries(
    out
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        const [n, s, loc] = l.split(",");
        return [n, [s, loc]];
      }),
  );
}
