// Which writes a cluster member replicates: global tables yes; the node-local database
// (`local.*`, LXD's local.db) and our member-local tables never.
import { describe, expect, it } from "vitest";
import { isReplicated, writtenTable } from "../../src/cluster/capture.js";

describe("cluster write capture", () => {
  it("names the written table, schema-qualified when not main", () => {
    expect(writtenTable("INSERT INTO config (key, value) VALUES (?, ?)")).toBe("config");
    expect(writtenTable("INSERT INTO local.config (key, value) VALUES (?, ?)")).toBe("local.config");
    expect(writtenTable('DELETE FROM "local"."patches" WHERE name = ?')).toBe("local.patches");
    expect(writtenTable("UPDATE main.instances SET name = ?")).toBe("instances");
    expect(writtenTable("SELECT * FROM config")).toBeUndefined();
  });

  it("replicates global writes only", () => {
    expect(isReplicated("DELETE FROM config")).toBe(true);
    expect(isReplicated("DELETE FROM storage_volumes_snapshots")).toBe(true);
    expect(isReplicated("DELETE FROM local.config")).toBe(false);
    expect(isReplicated("INSERT OR IGNORE INTO local.patches (name, applied_at) VALUES (?, 1)")).toBe(false);
    expect(isReplicated("INSERT INTO operations (id) VALUES (?)")).toBe(false);
  });
});
