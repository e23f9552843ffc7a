// patch.local.sql / patch.global.sql against a database file: order, one transaction each,
// backups as LXD makes them, LXD's error texts, nothing changed on failure.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { applyPatchFiles, PatchFileFailed } from "../../src/db/patch-files.js";
import { decodeVolumeName } from "../../src/storage/recover.js";

let dir: string;
let file: string;
let db: Database.Database;
beforeEach(() => {
  dir = mkdtempSync("/tmp/nodelxd-test-patch-");
  file = join(dir, "nodelxd.db");
  db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.exec("CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO config VALUES ('a', '1')");
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});
const value = () => (db.prepare("SELECT value FROM config WHERE key = 'a'").get() as { value: string }).value;

describe("patch files", () => {
  it("none present: nothing happens, no backup", () => {
    expect(applyPatchFiles(db, dir, file)).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(["nodelxd.db", "nodelxd.db-shm", "nodelxd.db-wal"]);
  });

  it("runs local then global, removes them, keeps backups of the state before", () => {
    writeFileSync(join(dir, "patch.local.sql"), "UPDATE config SET value = value || 'L';");
    writeFileSync(join(dir, "patch.global.sql"), "UPDATE config SET value = value || 'G';");
    expect(applyPatchFiles(db, dir, file)).toEqual(["local", "global"]);
    expect(value()).toBe("1LG");
    expect(existsSync(join(dir, "patch.local.sql"))).toBe(false);
    expect(existsSync(join(dir, "patch.global.sql"))).toBe(false);
    const bak = (p: string) => {
      const b = new Database(p, { readonly: true });
      try {
        return (b.prepare("SELECT value FROM config WHERE key = 'a'").get() as { value: string }).value;
      } finally {
        b.close();
      }
    };
    expect(bak(`${file}.bak`)).toBe("1");
    expect(bak(join(dir, "global.bak", "nodelxd.db"))).toBe("1L");
  });

  it("a failing statement rolls the whole file back, keeps the file, and words the error as LXD", () => {
    const path = join(dir, "patch.global.sql");
    writeFileSync(path, "UPDATE config SET value='changed';\nINSERT INTO broken(n) VALUES(1);\n");
    let err: unknown;
    try {
      applyPatchFiles(db, dir, file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PatchFileFailed);
    expect((err as Error).message).toBe(`Failed to initialize global database: failed to ensure schema: failed to execute queries from ${path}: no such table: broken`);
    expect(value()).toBe("1");
    expect(existsSync(path)).toBe(true);
    expect(existsSync(join(dir, "global.bak", "nodelxd.db"))).toBe(true);
  });

  it("local failures have LXD's local wording", () => {
    const path = join(dir, "patch.local.sql");
    writeFileSync(path, "SELECT * FROM nope;");
    expect(() => applyPatchFiles(db, dir, file)).toThrow(`Error creating database: failed to execute queries from ${path}: no such table: nope`);
  });
});

describe("recover: on-disk volume names", () => {
  it("decodes as LXD encodes them", () => {
    expect(decodeVolumeName("container", "c1")).toEqual({ project: "default", name: "c1" });
    expect(decodeVolumeName("container", "test_c1")).toEqual({ project: "test", name: "c1" });
    expect(decodeVolumeName("custom", "default_vol")).toEqual({ project: "default", name: "vol" });
    expect(decodeVolumeName("custom", "p_a_b")).toEqual({ project: "p", name: "a_b" });
    expect(decodeVolumeName("custom", "novol")).toBeUndefined();
    expect(decodeVolumeName("custom", "_x")).toBeUndefined();
    expect(decodeVolumeName("container", "x_")).toBeUndefined();
  });
});
