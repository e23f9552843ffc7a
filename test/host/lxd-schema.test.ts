// LXD's database layout and schema as seen from outside: `database/global/db.bin` (global) and
// `database/local.db` (member-local), LXD's local tables, LXD-named views written through with
// `lxd sql`, the move of an old single-file database (crash-safe), and a full disk under
// `database/global` failing writes cleanly until space is back.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAIN, startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { LXD_PATCHES } from "../../src/db/local-schema.js";

const sqlite = (file: string, query: string) => execFileSync("sqlite3", [file, query], { encoding: "utf8" });

describe("layout and LXD's local tables", () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startDaemon();
  });
  afterAll(async () => {
    await d?.stop();
  });

  it("keeps the global database in database/global/db.bin and the local one in database/local.db", () => {
    const db = join(d.dir, "database");
    expect(existsSync(join(db, "global", "db.bin"))).toBe(true);
    expect(existsSync(join(db, "local.db"))).toBe(true);
    expect(existsSync(join(db, "nodelxd.db"))).toBe(false);
    // LXD's schema tables, read with sqlite3 as LXD's suite does.
    expect(sqlite(join(db, "global", "db.bin"), "SELECT id, version FROM schema")).toBe("1|60\n");
    expect(sqlite(join(db, "local.db"), "SELECT id, version FROM schema")).toBe("1|42\n");
    expect(sqlite(join(db, "local.db"), "SELECT name FROM patches ORDER BY id").trim().split("\n")).toEqual([...LXD_PATCHES]);
    expect(sqlite(join(db, "global", "db.bin"), "SELECT name, description FROM profiles")).toBe("default|Default LXD profile\n");
  });

  it("member-local server keys live in the local config, the rest in the global one", async () => {
    const r = await d.api("PATCH", "/1.0", { config: { "core.https_address": "127.0.0.81:18443", "core.proxy_http": "http://127.0.0.1:9" } });
    expect(r.status, r.text).toBe(200);
    expect(d.cli("sql", "local", "SELECT key, value FROM config").stdout).toContain("| core.https_address | 127.0.0.81:18443 |");
    const global = d.cli("sql", "global", "SELECT key, value FROM config").stdout;
    expect(global).toContain("| core.proxy_http | http://127.0.0.1:9 |");
    expect(global).not.toContain("core.https_address");
    expect((await d.api("GET", "/1.0")).body.metadata.config).toMatchObject({ "core.https_address": "127.0.0.81:18443", "core.proxy_http": "http://127.0.0.1:9" });
    expect((await d.api("PUT", "/1.0", { config: {} })).status).toBe(200);
    expect(d.cli("sql", "local", "SELECT count(*) AS n FROM config").stdout).toContain("| 0 |");
  });

  it(".sync leaves the whole global database in db.bin", () => {
    const r = d.cli("sql", "global", "INSERT INTO config (key, value) VALUES ('user.synced', 'yes')");
    expect(r.stdout).toBe("Rows affected: 1\n");
    const sync = d.cli("sql", "global", ".sync");
    expect(sync.code, sync.stderr).toBe(0);
    expect(sync.stdout).toBe("");
    // Read from a copy of the file alone (no WAL beside it): everything is in it.
    const copy = join(d.dir, "copy.bin");
    cpSync(join(d.dir, "database", "global", "db.bin"), copy);
    expect(sqlite(copy, "SELECT value FROM config WHERE key = 'user.synced'")).toBe("yes\n");
    d.cli("sql", "global", "DELETE FROM config WHERE key = 'user.synced'");
  });

  it("dumps load into sqlite3 with LXD's double-quoted strings accepted in queries", () => {
    const dump = d.cli("sql", "global", ".dump").stdout;
    for (const kind of ["CREATE TRIGGER", "CREATE INDEX", "CREATE VIEW"]) expect(dump).toContain(kind);
    const file = join(d.dir, "dump.db");
    expect(spawnSync("sqlite3", [file], { input: dump }).status).toBe(0);
    expect(sqlite(file, "SELECT name FROM profiles")).toBe("default\n");
    expect(d.cli("sql", "global", 'SELECT name FROM profiles WHERE description="Default LXD profile"').stdout).toContain("| default |");
    rmSync(file);
  });
});

describe("the move from nodelxd's single database file", () => {
  let template: string;
  beforeAll(async () => {
    // An install from before the split: one database/nodelxd.db, member-local keys in its config,
    // none of LXD's schema tables or views yet.
    const d = await startDaemon();
    expect((await d.api("PATCH", "/1.0", { config: { "core.https_address": "127.0.0.82:18443", "core.proxy_https": "http://127.0.0.1:9" } })).status).toBe(200);
    d.proc.kill("SIGTERM");
    await new Promise((r) => d.proc.once("exit", r));
    const db = join(d.dir, "database");
    renameSync(join(db, "global", "db.bin"), join(db, "nodelxd.db"));
    for (const f of ["global", "local.db", "local.db-wal", "local.db-shm"]) rmSync(join(db, f), { recursive: true, force: true });
    const old = new Database(join(db, "nodelxd.db"));
    old.exec(`DROP VIEW images_aliases; DROP VIEW storage_volumes_snapshots; DROP TABLE schema;
      DELETE FROM schema_migrations WHERE version BETWEEN 310 AND 312;
      INSERT INTO config (key, value) VALUES ('core.https_address', '127.0.0.82:18443');`);
    old.close();
    template = mkdtempSync("/tmp/sc-legacy-");
    cpSync(d.dir, template, { recursive: true });
    await d.stop();
  });
  afterAll(() => {
    if (template) rmSync(template, { recursive: true, force: true });
  });

  const fromTemplate = () => {
    const dir = mkdtempSync("/tmp/sc-legacy-run-");
    cpSync(template, dir, { recursive: true });
    return dir;
  };

  async function expectMigrated(dir: string): Promise<void> {
    const d = await startDaemon({ dir });
    try {
      expect(existsSync(join(dir, "database", "nodelxd.db"))).toBe(false);
      expect((await d.api("GET", "/1.0")).body.metadata.config).toMatchObject({ "core.https_address": "127.0.0.82:18443", "core.proxy_https": "http://127.0.0.1:9" });
      expect(sqlite(join(dir, "database", "local.db"), "SELECT key, value FROM config")).toBe("core.https_address|127.0.0.82:18443\n");
      expect(sqlite(join(dir, "database", "global", "db.bin"), "SELECT count(*) FROM config WHERE key = 'core.https_address'")).toBe("0\n");
      expect(d.cli("sql", "global", "SELECT version FROM schema").stdout).toContain("| 60 ");
    } finally {
      await d.stop();
    }
  }

  it("moves nodelxd.db to global/db.bin and the member-local keys to local.db", async () => {
    await expectMigrated(fromTemplate());
  });

  it("a start that finds both files (moved, old one not yet removed) keeps the moved one", async () => {
    const dir = fromTemplate();
    mkdirSync(join(dir, "database", "global"), { recursive: true });
    cpSync(join(dir, "database", "nodelxd.db"), join(dir, "database", "global", "db.bin"));
    writeFileSync(join(dir, "database", "nodelxd.db"), "not a database any more");
    await expectMigrated(dir);
  });

  it("kill -9 at any point of the move, then a start, leaves a working database", async () => {
    for (const delay of [200, 400, 600, 900, 1200]) {
      const dir = fromTemplate();
      const p = spawn(process.execPath, [MAIN], { env: { ...process.env, LXD_DIR: dir }, stdio: "ignore" });
      await new Promise((r) => setTimeout(r, delay));
      p.kill("SIGKILL");
      await new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once("exit", r)));
      await expectMigrated(dir);
    }
  }, 240_000);
});

describe("a full disk under database/global", () => {
  let dir: string;
  let d: TestDaemon | undefined;
  let mounted = false;
  beforeAll(async () => {
    dir = mkdtempSync("/tmp/sc-nospace-");
    const global = join(dir, "database", "global");
    mkdirSync(global, { recursive: true });
    expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", global]).status).toBe(0);
    mounted = true;
    expect(spawnSync("dd", ["bs=1M", "count=12", "if=/dev/zero", `of=${join(global, "bigfile")}`]).status).toBe(0);
    d = await startDaemon({ dir });
  }, 60_000);
  afterAll(async () => {
    if (d) {
      d.proc.kill("SIGKILL");
      await new Promise((r) => (d!.proc.exitCode !== null || d!.proc.signalCode !== null ? r(null) : d!.proc.once("exit", r)));
    }
    if (mounted) spawnSync("umount", ["-l", join(dir, "database", "global")]);
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes fail with SQLite's error while the disk is full, the daemon stays up, and writes work once there is space", async () => {
    const big = "a".repeat(262144);
    const config: Record<string, string> = {};
    let failed: { status: number; error: string } | undefined;
    for (let i = 0; i < 40 && !failed; i++) {
      config[`user.prop${i}`] = big;
      const r = await d!.api("PUT", "/1.0/profiles/default", { config, description: "Default LXD profile", devices: {} });
      if (r.status !== 200) failed = { status: r.status, error: r.body.error };
    }
    expect(failed?.error).toContain("database or disk is full");
    // Still full: still failing, cleanly.
    const again = await d!.api("PUT", "/1.0/profiles/default", { config: { ...config, "user.propX": big }, description: "", devices: {} });
    expect(again.body.error).toContain("database or disk is full");
    expect((await d!.api("GET", "/1.0")).status).toBe(200);
    rmSync(join(dir, "database", "global", "bigfile"));
    const ok = await d!.api("PUT", "/1.0/profiles/default", { config: { "user.propZ": big }, description: "Default LXD profile", devices: {} });
    expect(ok.status, ok.text).toBe(200);
    expect((await d!.api("GET", "/1.0/profiles/default")).body.metadata.config["user.propZ"]).toBe(big);
  }, 120_000);
});
