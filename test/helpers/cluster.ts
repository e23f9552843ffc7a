// A three-member test cluster on loopback: three etcd members (127.0.0.10-12, client 2379,
// peer 2380) and three nodelxd daemons (own LXD_DIRs, HTTPS on 127.0.0.10-12:8443). Every
// process is stopped by its pid and every directory removed, also when start-up fails half-way.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { startDaemon, type TestDaemon } from "./daemon.js";

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

/** Start `n` etcd members forming one etcd cluster. */
export async function startEtcd(root: string, n = 3): Promise<EtcdMember[]> {
  const addrs = MEMBER_ADDRESSES.slice(0, n);
  const initial = addrs.map((a, i) => `e${i}=http://${a}:2380`).join(",");
  const members: EtcdMember[] = [];
  for (const [i, address] of addrs.entries()) {
    const log = openSync(join(root, `etcd${i}.log`), "a");
    const proc = spawn(
      "etcd",
      [
        "--name", `e${i}`,
        "--data-dir", join(root, `etcd${i}`),
        "--listen-client-urls", `http://${address}:2379`,
        "--advertise-client-urls", `http://${address}:2379`,
        "--listen-peer-urls", `http://${address}:2380`,
        "--initial-advertise-peer-urls", `http://${address}:2380`,
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
    members.push({
      name: `e${i}`,
      address,
      proc,
      kill: async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill("SIGKILL");
          await exited(proc);
        }
      },
    });
  }
  await Promise.all(members.map((m) => waitPort(m.address, 2379, m.proc)));
  return members;
}

/** Three etcd members and `daemons` nodelxd daemons (not yet clustered), each given `--etcd-endpoints`. */
export async function startCluster(opts: { daemons?: number } = {}): Promise<TestCluster> {
  const root = mkdtempSync("/tmp/cluster-test-");
  const cluster: TestCluster = {
    root,
    etcd: [],
    daemons: [],
    endpoints: etcdEndpoints(),
    stop: async () => {
      await Promise.all(cluster.daemons.map((d) => d.stop().catch(() => undefined)));
      await Promise.all(cluster.etcd.map((m) => m.kill()));
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    cluster.etcd = await startEtcd(root);
    for (let i = 0; i < (opts.daemons ?? 3); i++) {
      cluster.daemons.push(await startDaemon({ args: ["--etcd-endpoints", cluster.endpoints.join(",")] }));
    }
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
