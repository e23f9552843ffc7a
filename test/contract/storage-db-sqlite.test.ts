// The database-aware storage contract on a standalone daemon (its own SQLite, nothing else).
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { run } from "../helpers/cluster.js";
import { MAIN, startDaemon } from "../helpers/daemon.js";
import { testStorageDb } from "./storage-db.js";

testStorageDb("SQLite (standalone)", async () => {
  const root = mkdtempSync("/tmp/etcdback-sdb-sqlite-");
  try {
    const d = await startDaemon();
    return {
      a: d,
      b: d,
      clustered: false,
      createPool: (name, config = {}) => {
        const source = join(root, name);
        mkdirSync(source);
        return d.api("POST", "/1.0/storage-pools", { name, driver: "dir", config: { ...config, source } });
      },
      sql: async (m, query) => (await run(process.execPath, [MAIN, "sql", "global", query], { env: { ...process.env, LXD_DIR: m.dir } })).stdout,
      stop: async () => {
        await d.stop();
        rmSync(root, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(root, { recursive: true, force: true });
    throw e;
  }
});
