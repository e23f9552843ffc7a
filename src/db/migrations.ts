// Numbered schema migrations. Append only: never edit a migration that has shipped.
// Reserved version ranges per area, so parallel work never collides:
//   1-9 foundation/trust · 10-19 storage & profiles · 20-29 images · 30-39 instances · 40-49 networks
//   60-69 instance snapshots and projects · 90-99 network ACLs, forwards and zones
//   160-169 custom volume snapshots, schedules, backups
//   60-69 instance snapshots and projects
//   310-329 LXD's schema as seen from outside (schema table, LXD-named views)
//   410-429 LXD's per-object tables (config, devices, profile lists) as views over our JSON columns
import { OBJECT_CONFIG_VIEWS, STORAGE_POOL_VIEWS } from "./lxd-views.js";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: Migration[] = [
  {
    version: 1,
    name: "foundation",
    sql: `
      CREATE TABLE config (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
      CREATE TABLE operations (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL DEFAULT 'default',
        class TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        resources TEXT,
        metadata TEXT,
        may_cancel INTEGER NOT NULL DEFAULT 0,
        err TEXT NOT NULL DEFAULT ''
      );
      CREATE TABLE warnings (
        uuid TEXT PRIMARY KEY,
        project TEXT NOT NULL DEFAULT '',
        entity_url TEXT NOT NULL DEFAULT '',
        type TEXT NOT NULL,
        type_code INTEGER NOT NULL,
        status_code INTEGER NOT NULL,
        severity_code INTEGER NOT NULL,
        last_message TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 1,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        UNIQUE (type_code, project, entity_url)
      );
      CREATE TABLE certificates (
        fingerprint TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        certificate TEXT NOT NULL,
        restricted INTEGER NOT NULL DEFAULT 0,
        projects TEXT NOT NULL DEFAULT '[]',
        description TEXT NOT NULL DEFAULT ''
      );
    `,
  },
  {
    version: 10,
    name: "storage pools, volumes and profiles",
    sql: `
      CREATE TABLE storage_pools (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT 'creating'
      );
      CREATE TABLE storage_volumes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pool_id INTEGER NOT NULL REFERENCES storage_pools (id) ON DELETE CASCADE,
        project TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        content_type TEXT NOT NULL DEFAULT 'filesystem',
        state TEXT NOT NULL DEFAULT 'creating',
        created_at TEXT NOT NULL,
        UNIQUE (pool_id, project, type, name)
      );
      CREATE TABLE profiles (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}',
        UNIQUE (project, name)
      );
    `,
  },
  {
    version: 11,
    name: "storage volume renames in progress",
    sql: `ALTER TABLE storage_volumes ADD COLUMN renaming_to TEXT;`,
  },
  {
    version: 20,
    name: "images",
    sql: `
      CREATE TABLE images (
        project TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        type TEXT NOT NULL,
        filename TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL,
        split INTEGER NOT NULL DEFAULT 0,
        public INTEGER NOT NULL DEFAULT 0,
        auto_update INTEGER NOT NULL DEFAULT 0,
        cached INTEGER NOT NULL DEFAULT 0,
        architecture TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        uploaded_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL,
        properties TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '["default"]',
        PRIMARY KEY (project, fingerprint)
      );
      CREATE INDEX images_fingerprint ON images (fingerprint);
      CREATE TABLE image_aliases (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (project, name),
        FOREIGN KEY (project, fingerprint) REFERENCES images (project, fingerprint) ON DELETE CASCADE ON UPDATE CASCADE
      );
    `,
  },
  {
    version: 30,
    name: "instances",
    sql: `
      CREATE TABLE instances (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL DEFAULT 'default',
        name TEXT NOT NULL,
        type TEXT NOT NULL DEFAULT 'container',
        architecture TEXT NOT NULL,
        ephemeral INTEGER NOT NULL DEFAULT 0,
        stateful INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL,
        init_pid INTEGER NOT NULL DEFAULT 0,
        init_start TEXT NOT NULL DEFAULT '',
        UNIQUE (project, name)
      );
    `,
  },
  {
    version: 40,
    name: "networks",
    sql: `
      CREATE TABLE networks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL DEFAULT 'default',
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        UNIQUE (project, name)
      );
    `,
  },
  {
    version: 60,
    name: "instance snapshots",
    sql: `
      CREATE TABLE instance_snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        stateful INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        architecture TEXT NOT NULL,
        ephemeral INTEGER NOT NULL DEFAULT 0,
        config TEXT NOT NULL DEFAULT '{}',
        devices TEXT NOT NULL DEFAULT '{}',
        profiles TEXT NOT NULL DEFAULT '[]',
        state TEXT NOT NULL DEFAULT 'creating',
        UNIQUE (instance_id, name)
      );
    `,
  },
  {
    version: 61,
    name: "projects",
    sql: `
      CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}'
      );
      INSERT INTO projects (name, description, config) VALUES ('default', 'Default LXD project',
        '{"features.images":"true","features.networks":"true","features.profiles":"true","features.storage.volumes":"true"}');
    `,
  },
  {
    version: 70,
    name: "instance backups",
    sql: `
      CREATE TABLE instance_backups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        instance_only INTEGER NOT NULL DEFAULT 0,
        optimized_storage INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'creating',
        UNIQUE (instance_id, name)
      );
    `,
  },
  {
    version: 90,
    name: "network ACLs",
    sql: `
      CREATE TABLE network_acls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        ingress TEXT NOT NULL DEFAULT '[]',
        egress TEXT NOT NULL DEFAULT '[]',
        config TEXT NOT NULL DEFAULT '{}',
        UNIQUE (project, name)
      );
    `,
  },
  {
    version: 91,
    name: "network forwards",
    sql: `
      CREATE TABLE network_forwards (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        network TEXT NOT NULL,
        listen_address TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        ports TEXT NOT NULL DEFAULT '[]',
        UNIQUE (project, network, listen_address)
      );
    `,
  },
  {
    version: 92,
    name: "network zones",
    sql: `
      CREATE TABLE network_zones (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}'
      );
      CREATE TABLE network_zone_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        zone_id INTEGER NOT NULL REFERENCES network_zones (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        entries TEXT NOT NULL DEFAULT '[]',
        config TEXT NOT NULL DEFAULT '{}',
        UNIQUE (zone_id, name)
      );
    `,
  },
  {
    version: 140,
    name: "image sources (remote images: where a cached or copied image came from, for refresh)",
    sql: `
      CREATE TABLE image_sources (
        project TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        server TEXT NOT NULL,
        protocol TEXT NOT NULL,
        certificate TEXT NOT NULL DEFAULT '',
        alias TEXT NOT NULL,
        PRIMARY KEY (project, fingerprint),
        FOREIGN KEY (project, fingerprint) REFERENCES images (project, fingerprint) ON DELETE CASCADE ON UPDATE CASCADE
      );
    `,
  },
  {
    version: 160,
    name: "storage volume snapshot expiry",
    sql: `
      ALTER TABLE storage_volumes ADD COLUMN expires_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z';
    `,
  },
  {
    version: 161,
    name: "snapshot schedule runs",
    sql: `
      CREATE TABLE snapshot_schedule_runs (
        subject TEXT PRIMARY KEY,
        last_minute INTEGER NOT NULL
      );
    `,
  },
  {
    version: 162,
    name: "custom volume backups",
    sql: `
      CREATE TABLE custom_volume_backups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        volume_id INTEGER NOT NULL REFERENCES storage_volumes (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        volume_only INTEGER NOT NULL DEFAULT 0,
        optimized_storage INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'creating',
        UNIQUE (volume_id, name)
      );
    `,
  },
  {
    version: 170,
    name: "instances_devices_config view",
    // LXD's scripts (and its test suite) edit device keys with `lxd sql global "UPDATE
    // instances_devices_config ..."`: a view over the JSON devices column, writable through a trigger.
    sql: `
      CREATE VIEW instances_devices_config AS
        SELECT i.id AS instance_id, d.key AS device, c.key AS key, c.value AS value
        FROM instances i, json_each(i.devices) d, json_each(d.value) c;
      CREATE TRIGGER instances_devices_config_update INSTEAD OF UPDATE OF value ON instances_devices_config
      BEGIN
        UPDATE instances SET devices = json_set(devices, '$."' || replace(OLD.device, '"', '') || '"."' || replace(OLD.key, '"', '') || '"', NEW.value)
        WHERE id = OLD.instance_id AND instr(OLD.device, '"') = 0 AND instr(OLD.key, '"') = 0;
      END;
    `,
  },
  {
    version: 270,
    name: "images.last_use_date",
    // LXD's column name: its scripts and test suite set it with `lxd sql global "UPDATE images SET
    // last_use_date=..."` (image_expiry ages a cached image that way).
    sql: `ALTER TABLE images RENAME COLUMN last_used_at TO last_use_date;`,
  },
  {
    version: 200,
    name: "cluster: instance location and member-local cluster state",
    // instances.node: the member an instance lives on ('' on a standalone daemon: location "none").
    // cluster_local: this member's own clustering state (name, etcd endpoints, last applied log index),
    // never replicated.
    sql: `
      ALTER TABLE instances ADD COLUMN node TEXT NOT NULL DEFAULT '';
      CREATE TABLE cluster_local (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `,
  },
  {
    version: 310,
    name: "LXD's global schema table",
    // Every LXD database has a `schema` table; the global one of LXD 5.0.2 is at version 60.
    sql: `
      CREATE TABLE schema (
          id         INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
          version    INTEGER NOT NULL,
          updated_at DATETIME NOT NULL,
          UNIQUE (version)
      );
      INSERT INTO schema (version, updated_at) VALUES (60, strftime('%s'));
    `,
  },
  {
    version: 311,
    name: "images_aliases view",
    // LXD's name and columns for image aliases (ids: the rows' rowids), read by LXD's scripts and
    // test suite with `lxd sql global`.
    sql: `
      CREATE VIEW images_aliases AS
        SELECT a.rowid AS id, a.name AS name, i.rowid AS image_id, a.description AS description, p.rowid AS project_id
        FROM image_aliases a
        JOIN images i ON i.project = a.project AND i.fingerprint = a.fingerprint
        JOIN projects p ON p.name = a.project;
    `,
  },
  {
    version: 312,
    name: "storage_volumes_snapshots view",
    // LXD keeps volume snapshots in their own table; ours are storage_volumes rows named
    // "<volume>/<snapshot>". Deleting through the view deletes those rows (LXD's recovery
    // scripts and test suite do), as does editing a description.
    sql: `
      CREATE VIEW storage_volumes_snapshots AS
        SELECT s.id AS id, v.id AS storage_volume_id, substr(s.name, instr(s.name, '/') + 1) AS name,
          s.description AS description, s.expires_at AS expiry_date
        FROM storage_volumes s
        JOIN storage_volumes v ON v.pool_id = s.pool_id AND v.project = s.project AND v.type = s.type
          AND v.name = substr(s.name, 1, instr(s.name, '/') - 1)
        WHERE instr(s.name, '/') > 0;
      CREATE TRIGGER storage_volumes_snapshots_delete INSTEAD OF DELETE ON storage_volumes_snapshots
      BEGIN
        DELETE FROM storage_volumes WHERE id = OLD.id;
      END;
      CREATE TRIGGER storage_volumes_snapshots_update INSTEAD OF UPDATE OF description ON storage_volumes_snapshots
      BEGIN
        UPDATE storage_volumes SET description = NEW.description WHERE id = OLD.id;
      END;
    `,
  },
  {
    version: 400,
    name: "per-member storage pools and networks",
    // LXD's storage_pools_nodes/networks_nodes with the member-specific config folded in: one row
    // per member a pool or network is defined on, its state there (pending, created, errored) and
    // the member's own keys (`source`, `size`, `parent`, `bridge.external_interfaces`, ...).
    sql: `
      CREATE TABLE storage_pools_members (
        pool_id INTEGER NOT NULL REFERENCES storage_pools (id) ON DELETE CASCADE,
        member TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        config TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (pool_id, member)
      );
      CREATE TABLE networks_members (
        network_id INTEGER NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
        member TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        config TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (network_id, member)
      );
      ALTER TABLE networks ADD COLUMN state TEXT NOT NULL DEFAULT 'created';
    `,
  },
  {
    version: 401,
    name: "custom volumes belong to a member",
    // The member a custom volume on a non-shared pool lives on ('' standalone or on a shared pool).
    sql: `ALTER TABLE storage_volumes ADD COLUMN node TEXT NOT NULL DEFAULT '';`,
  },
  {
    version: 410,
    name: "storage_pools_config and storage_pools_nodes views",
    // LXD's pool config rows, writable (`lxd recover`'s test compares them before and after).
    sql: STORAGE_POOL_VIEWS,
  },
  {
    version: 411,
    name: "LXD's per-object config, device and profile tables as views",
    sql: OBJECT_CONFIG_VIEWS,
  },
  {
    version: 480,
    name: "macaroon root keys",
    // Candid (external) authentication: the root keys of the macaroons this server mints
    // (src/daemon/candid/root-keys.ts), kept across restarts until the last macaroon made with
    // one has expired.
    sql: `
      CREATE TABLE nodelxd_macaroon_root_keys (
        id TEXT PRIMARY KEY,
        root_key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 510,
    name: "instance move journal",
    // A move of an instance to another cluster member in progress (src/migration/move-journal.ts):
    // written before the copy starts and removed once the move ended either way, so a move cut
    // short by a crash is settled afterwards (the half copy removed, or a complete one renamed).
    sql: `
      CREATE TABLE nodelxd_instance_moves (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        uuid TEXT NOT NULL,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        dest TEXT NOT NULL,
        final TEXT NOT NULL,
        started_at TEXT NOT NULL,
        PRIMARY KEY (project, name)
      );
    `,
  },
  {
    version: 511,
    name: "a custom volume's key includes its member",
    // LXD: a custom volume on a local (non-remote) pool belongs to one member, and two members
    // may each have one of the same name. The UNIQUE key gains `node` ('' on shared pools and for
    // instance volumes, whose names are unique anyway). SQLite cannot change a constraint: the
    // table is rebuilt, its rows (ids kept) and its backups' rows (which its DROP would cascade
    // to) put back, the AUTOINCREMENT counter kept.
    sql: `
      CREATE TEMP TABLE cf_volumes AS SELECT * FROM storage_volumes;
      CREATE TEMP TABLE cf_volume_backups AS SELECT * FROM custom_volume_backups;
      CREATE TEMP TABLE cf_volume_seq AS SELECT seq FROM sqlite_sequence WHERE name = 'storage_volumes';
      DROP TABLE storage_volumes;
      CREATE TABLE storage_volumes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pool_id INTEGER NOT NULL REFERENCES storage_pools (id) ON DELETE CASCADE,
        project TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        content_type TEXT NOT NULL DEFAULT 'filesystem',
        state TEXT NOT NULL DEFAULT 'creating',
        created_at TEXT NOT NULL,
        renaming_to TEXT,
        expires_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        node TEXT NOT NULL DEFAULT '',
        UNIQUE (pool_id, project, type, name, node)
      );
      INSERT INTO storage_volumes (id, pool_id, project, type, name, description, config, content_type, state, created_at, renaming_to, expires_at, node)
        SELECT id, pool_id, project, type, name, description, config, content_type, state, created_at, renaming_to, expires_at, node FROM cf_volumes;
      INSERT INTO custom_volume_backups SELECT * FROM cf_volume_backups;
      UPDATE sqlite_sequence SET seq = max(seq, (SELECT coalesce(max(seq), 0) FROM cf_volume_seq)) WHERE name = 'storage_volumes';
      DROP TABLE cf_volumes;
      DROP TABLE cf_volume_backups;
      DROP TABLE cf_volume_seq;
      DROP VIEW storage_volumes_snapshots;
      CREATE VIEW storage_volumes_snapshots AS
        SELECT s.id AS id, v.id AS storage_volume_id, substr(s.name, instr(s.name, '/') + 1) AS name,
          s.description AS description, s.expires_at AS expiry_date
        FROM storage_volumes s
        JOIN storage_volumes v ON v.pool_id = s.pool_id AND v.project = s.project AND v.type = s.type AND v.node = s.node
          AND v.name = substr(s.name, 1, instr(s.name, '/') - 1)
        WHERE instr(s.name, '/') > 0;
      CREATE TRIGGER storage_volumes_snapshots_delete INSTEAD OF DELETE ON storage_volumes_snapshots
      BEGIN
        DELETE FROM storage_volumes WHERE id = OLD.id;
      END;
      CREATE TRIGGER storage_volumes_snapshots_update INSTEAD OF UPDATE OF description ON storage_volumes_snapshots
      BEGIN
        UPDATE storage_volumes SET description = NEW.description WHERE id = OLD.id;
      END;
    `,
  },
];
