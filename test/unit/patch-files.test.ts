// patch.local.sql / patch.global.sql against a database file: order, one transaction each,
// backups as LXD makes them, LXD's error texts, nothing changed on failure.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { applyPatchFiles, PatchFileFailed } from "../../src/db/patch-files.js";
import { decodeVolumeName } from "../../src/storage/recover.js";

let dir: string;
let file: string;
let localFile: string;
let db: Database.Database;
let local: Database.Database;
beforeEach(() => {
  dir = mkdtempSync("/tmp/nodelxd-test-patch-");
  mkdirSync(join(dir, "global"));
  file = join(dir, "global", "db.bin");
  localFile = join(dir, "local.db");
  db = new Database(file);
  local = new Database(localFile);
  for (const d of [db, local]) {
    d.pragma("journal_mode = WAL");
    d.exec("CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO config VALUES ('a', '1')");
  }
});
afterEach(() => {
  db.close();
  local.close();
  rmSync(dir, { recursive: true, force: true });
});
const valueOf = (d: Database.Database) => (d.prepare("SELECT value FROM config WHERE key = 'a'").get() as { value: string }).value;
const value = () => valueOf(db);
const targets = () => ({ local: { db: local, file: localFile }, global: { db, file } });

describe("patch files", () => {
  it("none present: nothing happens, no backup", () => {
    expect(applyPatchFiles(targets(), dir)).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(["global", "local.db", "local.db-shm", "local.db-wal"]);
  });

  it("runs local against local.db, then global against global/db.bin, removes them, keeps backups of the state before", () => {
    writeFileSync(join(dir, "patch.local.sql"), "UPDATE config SET value = value || 'L';");
    writeFileSync(join(dir, "patch.global.sql"), "UPDATE config SET value = value || 'G';");
    expect(applyPatchFiles(targets(), dir)).toEqual(["local", "global"]);
    expect(valueOf(local)).toBe("1L");
    expect(value()).toBe("1G");
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
    expect(bak(join(dir, "local.db.bak"))).toBe("1");
    expect(bak(join(dir, "global.bak", "db.bin"))).toBe("1");
  });

  it("a failing statement rolls the whole file back, keeps the file, and words the error as LXD", () => {
    const path = join(dir, "patch.global.sql");
    writeFileSync(path, "UPDATE config SET value='changed';\nINSERT INTO broken(n) VALUES(1);\n");
    let err: unknown;
    try {
      applyPatchFiles(targets(), dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PatchFileFailed);
    expect((err as Error).message).toBe(`Failed to initialize global database: failed to ensure schema: failed to execute queries from ${path}: no such table: broken`);
    expect(value()).toBe("1");
    expect(existsSync(path)).toBe(true);
    expect(existsSync(join(dir, "global.bak", "db.bin"))).toBe(true);
  });

  it("local failures have LXD's local wording", () => {
    const path = join(dir, "patch.local.sql");
    writeFileSync(path, "SELECT * FROM nope;");
    expect(() => applyPatchFiles(targets(), dir)).toThrow(`Error creating database: failed to execute queries from ${path}: no such table: nope`);
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
