#!/usr/bin/env node
// The floor of the stack nodelxd is built on (issue #20's idle-memory and start-up goals): Node,
// Fastify on a unix socket, better-sqlite3 with one WAL database, one route, and the same idle
// memory release the daemon makes (the addon's releaseIdleMemory). Prints the time from process
// start to listening, and VmRSS 3 s later. Usage: node scripts/runtime-floor.cjs [--hold SECONDS]
// (--hold: keep serving that long after, on the socket it prints, for a client such as
// `curl --unix-socket SOCKET http://lxd/1.0` to time requests).
"use strict";
const { mkdtempSync, readFileSync, rmSync } = require("node:fs");
const { join } = require("node:path");
const root = join(__dirname, "..");
const fastify = require(join(root, "node_modules", "fastify"));
const Database = require(join(root, "node_modules", "better-sqlite3"));
require("node:https"); // the daemon's TLS listener module, loaded as the daemon loads it
const holdAt = process.argv.indexOf("--hold");
const holdSeconds = holdAt > 0 ? Number(process.argv[holdAt + 1]) : 0;
const dir = mkdtempSync("/tmp/runtime-floor-");
const db = new Database(join(dir, "floor.db"));
db.pragma("journal_mode = WAL");
db.exec("CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT)");
const app = fastify();
app.get("/1.0", async () => ({ type: "sync", status: "Success", status_code: 200, metadata: db.prepare("SELECT count(*) AS n FROM config").get() }));
app.listen({ path: join(dir, "unix.socket") }).then(() => {
  const ready = process.uptime();
  setTimeout(() => {
    require(join(root, "build", "Release", "nodelxd_native.node")).releaseIdleMemory();
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]) / 1024;
    console.log(`ready ${ready.toFixed(3)} s, idle RSS ${rss.toFixed(1)} MiB${holdSeconds > 0 ? `, serving on ${join(dir, "unix.socket")} for ${holdSeconds} s` : ""}`);
    setTimeout(() => {
      db.close();
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    }, holdSeconds * 1000);
  }, 3000);
});
