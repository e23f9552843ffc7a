// `nodelxd sql` and /internal/sql, against a running daemon.
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAIN, startDaemon, type TestDaemon } from "../helpers/daemon.js";

let d: TestDaemon;
beforeAll(async () => {
  d = await startDaemon();
});
afterAll(async () => {
  await d?.stop();
});

describe("/internal/sql", () => {
  it("runs statements one by one and answers upstream's Results shape", async () => {
    const r = await d.api("POST", "/internal/sql", { database: "global", query: "INSERT INTO config (key, value) VALUES ('user.sqltest', 'v1'); SELECT key, value FROM config WHERE key = 'user.sqltest'" });
    expect(r.status).toBe(200);
    expect(r.body.metadata).toEqual({
      Results: [
        { type: "exec", columns: null, rows: null, rows_affected: 1 },
        { type: "select", columns: ["key", "value"], rows: [["user.sqltest", "v1"]], rows_affected: 0 },
      ],
    });
    // The local database is another file: its config holds only the member-local keys.
    expect((await d.api("POST", "/internal/sql", { database: "local", query: "DELETE FROM config WHERE key = 'user.sqltest'" })).body.metadata.Results[0].rows_affected).toBe(0);
    const del = await d.api("POST", "/internal/sql", { database: "global", query: "DELETE FROM config WHERE key = 'user.sqltest'" });
    expect(del.body.metadata.Results[0].rows_affected).toBe(1);
    const none = await d.api("POST", "/internal/sql", { database: "global", query: "SELECT key FROM config WHERE key = 'user.sqltest'" });
    expect(none.body.metadata).toEqual({ Results: [{ type: "select", columns: ["key"], rows: null, rows_affected: 0 }] });
  });

  it("rejects bad requests with upstream's messages", async () => {
    expect((await d.api("POST", "/internal/sql", { query: "SELECT 1" })).body.error).toBe("Invalid database");
    expect((await d.api("POST", "/internal/sql", { database: "x", query: "SELECT 1" })).body.error).toBe("Invalid database");
    expect((await d.api("POST", "/internal/sql", { database: "local" })).body.error).toBe("No query provided");
    const bad = await d.api("POST", "/internal/sql", { database: "local", query: "SELEC 1" });
    expect(bad.status).toBe(500);
    expect(bad.body.error).toBe('Failed to exec query: near "SELEC": syntax error');
    expect((await d.api("POST", "/internal/sql", { database: "global", query: "SELECT * FROM nope" })).body.error).toBe("Failed to execute query: no such table: nope");
    expect((await d.api("GET", "/internal/sql?database=nope")).body.error).toBe("Invalid database");
  });

  it("dumps schema and data", async () => {
    const schema = (await d.api("GET", "/internal/sql?database=global&schema=1")).body.metadata.text as string;
    expect(schema.startsWith("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n")).toBe(true);
    expect(schema).toContain("CREATE TABLE config (");
    expect(schema).not.toContain("INSERT INTO");
    expect(schema.endsWith("COMMIT;\n")).toBe(true);
    const dump = (await d.api("GET", "/internal/sql?database=global")).body.metadata.text as string;
    expect(dump).toMatch(/INSERT INTO schema_migrations VALUES\(1,'foundation','[^']+'\);/);
    // LXD's order: objects as created (rowid), each table followed by its rows, then the sequences.
    expect(dump.indexOf("CREATE VIEW instances_devices_config")).toBeLessThan(dump.indexOf("CREATE TRIGGER instances_devices_config_update"));
    expect(dump).toMatch(/DELETE FROM sqlite_sequence;\n(INSERT INTO sqlite_sequence VALUES\('[a-z_]+',\d+\);\n)*COMMIT;\n$/);
  });
});

describe("nodelxd sql", () => {
  const sql = (...args: string[]) => d.cli("sql", ...args);

  it("prints selects as tables and execs as rows affected", () => {
    const r = sql("global", "INSERT INTO config (key, value) VALUES ('user.a', 'x'); SELECT key, value FROM config WHERE key = 'user.a'");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      "=> Query 0:\n\nRows affected: 1\n\n=> Query 1:\n\n+--------+-------+\n|  key   | value |\n+--------+-------+\n| user.a | x     |\n+--------+-------+\n\n",
    );
    expect(sql("global", "DELETE FROM config WHERE key = 'user.a'").stdout).toBe("Rows affected: 1\n");
  });

  it("reads the query from stdin with -", () => {
    const r = spawnSync(process.execPath, [MAIN, "sql", "global", "-"], { env: { ...process.env, LXD_DIR: d.dir }, input: "SELECT 1 AS one, NULL AS missing", encoding: "utf8" });
    expect(r.stdout).toBe("+-----+---------+\n| one | missing |\n+-----+---------+\n| 1   | <nil>   |\n+-----+---------+\n");
  });

  it(".schema and .dump", () => {
    expect(sql("global", ".schema").stdout).toContain("CREATE TABLE certificates (");
    expect(sql("global", ".dump").stdout).toContain("INSERT INTO schema_migrations VALUES(1,");
    expect(sql("local", ".dump").stdout).toMatch(/INSERT INTO patches VALUES\(\d+,'dnsmasq_entries_include_device_name',\d+\);/);
  });

  it("errors", () => {
    const bad = sql("bogus", "SELECT 1");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe("Error: Invalid database type\n");
    expect(sql("global").stderr).toBe("Error: Missing required arguments\n");
    expect(sql("global", "SELEC 1").stderr).toBe('Error: Failed to exec query: near "SELEC": syntax error\n');
  });
});
