// LXD's node-local database (`database/local.db`), attached to the global connection as `local`:
// LXD 5.0.2's local schema (version 42: `config`, `patches`, `raft_nodes`, and the `schema`
// table every LXD database has). A new local database records every LXD 5.0.2 patch as applied,
// as a fresh LXD does; a patch whose row is deleted runs again at the next start (storage/snapshot-records.ts).
import type Database from "better-sqlite3";

type Db = Database.Database;

/** LXD 5.0.2's local schema version. */
export const LOCAL_SCHEMA_VERSION = 42;

/** LXD 5.0.2's patch names (lxd/patches.go), in its order. */
export const LXD_PATCHES = [
  "storage_lvm_skipactivation",
  "clustering_drop_database_role",
  "network_clear_bridge_volatile_hwaddr",
  "move_backups_instances",
  "network_ovn_enable_nat",
  "network_ovn_remove_routes",
  "network_fan_enable_nat",
  "thinpool_typo_fix",
  "vm_rename_uuid_key",
  "db_nodes_autoinc",
  "network_acl_remove_defaults",
  "clustering_server_cert_trust",
  "warnings_remove_empty_node",
  "dnsmasq_entries_include_device_name",
  "storage_missing_snapshot_records",
] as const;

/** Server keys that are member-local in LXD (its local `config` table). */
export const LOCAL_CONFIG_KEYS = new Set([
  "core.https_address",
  "cluster.https_address",
  "core.dns_address",
  "core.metrics_address",
  "core.bgp_address",
  "core.debug_address",
  "core.storage_buckets_address",
  "storage.backups_volume",
  "storage.images_volume",
]);

const LOCAL_TABLES_SQL = `
CREATE TABLE local.schema (
    id         INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at DATETIME NOT NULL,
    UNIQUE (version)
);
CREATE TABLE local.config (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    key VARCHAR(255) NOT NULL,
    value TEXT,
    UNIQUE (key)
);
CREATE TABLE local.patches (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name VARCHAR(255) NOT NULL,
    applied_at DATETIME NOT NULL,
    UNIQUE (name)
);
CREATE TABLE local.raft_nodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    address TEXT NOT NULL,
    role INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL default "",
    UNIQUE (address)
);
`;

/** Create LXD's local tables in a new local database (one transaction: all or nothing). */
export function ensureLocalSchema(db: Db): void {
  const exists = db.prepare("SELECT 1 FROM local.sqlite_master WHERE type = 'table' AND name = 'schema'").get() !== undefined;
  if (exists) return;
  db.transaction(() => {
    db.exec(LOCAL_TABLES_SQL);
    db.prepare("INSERT INTO local.schema (version, updated_at) VALUES (?, strftime('%s'))").run(LOCAL_SCHEMA_VERSION);
    const patch = db.prepare("INSERT INTO local.patches (name, applied_at) VALUES (?, strftime('%s'))");
    for (const name of LXD_PATCHES) patch.run(name);
  })();
}

/**
 * Member-local server keys belong in the local `config` (databases from before the split kept
 * them in the global one). Copied first, then removed from the global table, each step its own
 * commit, so a crash between the two only repeats the copy at the next start.
 */
export function moveLocalConfig(db: Db): void {
  const keys = [...LOCAL_CONFIG_KEYS];
  const marks = keys.map(() => "?").join(", ");
  const stale = db.prepare(`SELECT key, value FROM main.config WHERE key IN (${marks})`).all(...keys) as { key: string; value: string }[];
  if (stale.length === 0) return;
  db.transaction(() => {
    const put = db.prepare("INSERT INTO local.config (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    for (const r of stale) put.run(r.key, r.value);
  })();
  db.prepare(`DELETE FROM main.config WHERE key IN (${marks})`).run(...keys);
}

/** Whether LXD's patch `name` is recorded as applied in the local database. */
export function patchApplied(db: Db, name: string): boolean {
  return db.prepare("SELECT 1 FROM local.patches WHERE name = ?").get(name) !== undefined;
}

export function markPatchApplied(db: Db, name: string): void {
  db.prepare("INSERT OR IGNORE INTO local.patches (name, applied_at) VALUES (?, strftime('%s'))").run(name);
}
