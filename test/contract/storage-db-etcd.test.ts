// The database-aware storage contract on a cluster: one etcd member (127.0.60.10, the statement
// log) and two nodelxd members (HTTPS on 127.0.60.10-11:8443), each with its own SQLite replica.
// A pool is defined on each member (its own `source` under a temp dir) and then created.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { formCluster, run, startEtcd, type ClusterLayout, type EtcdMember } from "../helpers/cluster.js";
import { MAIN, startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { testStorageDb } from "./storage-db.js";

const LAYOUT: ClusterLayout = { addresses: ["127.0.60.10", "127.0.60.11"], clientPort: 2379, peerPort: 2380 };

testStorageDb("etcd (two members' replicas)", async () => {
  const root = mkdtempSync("/tmp/etcdback-sdb-etcd-");
  let etcd: EtcdMember[] = [];
  const daemons: TestDaemon[] = [];
  const stop = async () => {
    await Promise.all(daemons.map((d) => d.stop().catch(() => undefined)));
    await Promise.all(etcd.map((m) => m.kill()));
    rmSync(root, { recursive: true, force: true });
  };
  try {
    etcd = await startEtcd(root, 1, LAYOUT);
    const endpoints = `http://${LAYOUT.addresses[0]}:${LAYOUT.clientPort}`;
    for (let i = 0; i < 2; i++) daemons.push(await startDaemon({ args: ["--etcd-endpoints", endpoints] }));
    await formCluster(daemons, LAYOUT, 8443);
  } catch (e) {
    await stop();
    throw e;
  }
  const [a, b] = daemons;
  return {
    a,
    b,
    clustered: true,
    createPool: async (name, config = {}) => {
      for (const [i, m] of ["m1", "m2"].entries()) {
        const source = join(root, `${name}-${m}`);
        mkdirSync(source);
        const r = await daemons[i].api("POST", `/1.0/storage-pools?target=${m}`, { name, driver: "dir", config: { source } });
        if (r.status !== 201) throw new Error(`pending pool on ${m}: ${r.text}`);
      }
      return a.api("POST", "/1.0/storage-pools", { name, driver: "dir", config });
    },
    sql: async (m, query) => (await run(process.execPath, [MAIN, "sql", "global", query], { env: { ...process.env, LXD_DIR: m.dir } })).stdout,
    stop,
  };
}, true);
