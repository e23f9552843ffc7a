// The database handle reuses compiled statements: the same SQL gives the same statement, in its
// default row mode whatever an earlier user switched on, and changes made meanwhile are seen.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { closeDatabase, openDatabase, type Db } from "../../src/db/database.js";

let dir: string;
let db: Db;
beforeEach(() => {
  dir = mkdtempSync("/tmp/nodelxd-unit-stmt-");
  db = openDatabase(join(dir, "db.bin"));
});
afterEach(() => {
  closeDatabase(db);
  rmSync(dir, { recursive: true, force: true });
});

describe("statement cache", () => {
  it("reuses a statement, resets its row mode, and sees later writes", () => {
    const sql = "SELECT name, description FROM profiles WHERE project = ? ORDER BY name";
    db.prepare("INSERT INTO profiles (project, name, description, config, devices) VALUES ('default', 'a', 'first', '{}', '{}')").run();
    const first = db.prepare(sql);
    expect(first.raw(true).all("default")).toEqual([["a", "first"]]);
    const again = db.prepare(sql);
    expect(again).toBe(first);
    expect(again.all("default")).toEqual([{ name: "a", description: "first" }]);
    db.prepare(sql).pluck();
    db.prepare("INSERT INTO profiles (project, name, description, config, devices) VALUES ('default', 'b', 'second', '{}', '{}')").run();
    expect(db.prepare(sql).all("default")).toEqual([
      { name: "a", description: "first" },
      { name: "b", description: "second" },
    ]);
  });

  it("stays bounded under dynamically built SQL", () => {
    const first = db.prepare("SELECT 0");
    for (let i = 1; i <= 600; i++) db.prepare(`SELECT ${i}`);
    expect(db.prepare("SELECT 0")).not.toBe(first);
    expect(db.prepare("SELECT 600")).toBe(db.prepare("SELECT 600"));
  });
});
