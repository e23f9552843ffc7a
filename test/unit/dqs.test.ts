// LXD's SQL (dqlite) reads "x" as a string when no column x exists; ours retries the same way.
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { quoteAsString, withDqsFallback } from "../../src/db/dqs.js";

describe("double-quoted string literals", () => {
  const db = new Database(":memory:");
  db.exec("CREATE TABLE t (name TEXT, testimage TEXT); INSERT INTO t VALUES ('testimage', 'col'), ('x', 'y')");

  it("a double-quoted word that is no column is a string, as SQLite's DQS fallback", () => {
    expect(() => db.prepare('SELECT name FROM t WHERE name="x"').all()).toThrow(/no such column/);
    expect(withDqsFallback('SELECT name FROM t WHERE name="x"', (s) => db.prepare(s).all())).toEqual([{ name: "x" }]);
  });

  it("a double-quoted word that is a column stays the column", () => {
    expect(withDqsFallback('SELECT name FROM t WHERE "testimage" = \'col\'', (s) => db.prepare(s).all())).toEqual([{ name: "testimage" }]);
  });

  it("only whole tokens outside strings and comments are rewritten", () => {
    expect(quoteAsString(`SELECT "a", '"a"', "ab" -- "a"\n/* "a" */ FROM x WHERE y = "a"`, "a")).toBe(`SELECT 'a', '"a"', "ab" -- "a"\n/* "a" */ FROM x WHERE y = 'a'`);
    expect(quoteAsString(`SELECT "it's"`, "it's")).toBe(`SELECT 'it''s'`);
  });

  it("other errors are not retried", () => {
    let calls = 0;
    expect(() => withDqsFallback("SELEC 1", (s) => (calls++, db.prepare(s)))).toThrow(/syntax error/);
    expect(calls).toBe(1);
  });
});
