// LXD 5.0.2 keeps every object's config, devices and profile list in tables of their own
// (`storage_pools_config`, `instances_config`, `profiles_devices_config`, ...); we keep them as
// JSON columns of the object's row, the one source of truth. These views show those columns
// under LXD's table and column names, so `lxd sql`, `sqlite3 db.bin` and the suite's leftover
// checks read what LXD would show; the config views are writable through INSTEAD OF triggers
// that edit the JSON in the same statement (so a change through them is as atomic as any other).
// Migration SQL: frozen once shipped (a change is a new migration).
//
// Ids: LXD's are autoincrement row ids; ours are numbered per query (ROW_NUMBER in the parent's
// order), stable while the rows do not change. Key names holding `"` are never written through
// a trigger (they cannot be a JSON path segment here; LXD's keys never hold one).

/** LXD's device type codes (lxd/db/cluster/devices.go). */
const DEVICE_TYPE = `CASE json_extract(d.value, '$.type')
  WHEN 'nic' THEN 1 WHEN 'disk' THEN 2 WHEN 'unix-char' THEN 3 WHEN 'unix-block' THEN 4 WHEN 'usb' THEN 5
  WHEN 'gpu' THEN 6 WHEN 'infiniband' THEN 7 WHEN 'proxy' THEN 8 WHEN 'unix-hotplug' THEN 9 WHEN 'tpm' THEN 10
  WHEN 'pci' THEN 11 ELSE 0 END`;

/** The JSON path of one key of an object column. */
const path = (key: string) => `'$."' || ${key} || '"'`;

/**
 * A writable `<view>(id, <parentCol>[, node_id], key, value)` over the JSON object column
 * `config` of `parent` (rows filtered by `where`, `p` being the parent).
 */
function configView(view: string, parent: string, parentCol: string, opts: { where?: string; nodeId?: string } = {}): string {
  const node = opts.nodeId ? `${opts.nodeId} AS node_id, ` : "";
  const where = opts.where ? ` WHERE ${opts.where}` : "";
  const quoteFree = (k: string) => `instr(${k}, '"') = 0`;
  return `
    CREATE VIEW ${view} AS
      SELECT ROW_NUMBER() OVER (ORDER BY p.id, c.key) AS id, p.id AS ${parentCol}, ${node}c.key AS key, c.value AS value
      FROM ${parent} p, json_each(p.config) c${where};
    CREATE TRIGGER ${view}_insert INSTEAD OF INSERT ON ${view}
    BEGIN
      SELECT RAISE(ABORT, 'UNIQUE constraint failed: ${view}.key') FROM ${parent} WHERE id = NEW.${parentCol} AND json_type(config, ${path("NEW.key")}) IS NOT NULL;
      UPDATE ${parent} SET config = json_set(config, ${path("NEW.key")}, CAST(NEW.value AS TEXT)) WHERE id = NEW.${parentCol} AND ${quoteFree("NEW.key")};
    END;
    CREATE TRIGGER ${view}_update INSTEAD OF UPDATE ON ${view}
    BEGIN
      UPDATE ${parent} SET config = json_set(json_remove(config, ${path("OLD.key")}), ${path("NEW.key")}, CAST(NEW.value AS TEXT))
      WHERE id = OLD.${parentCol} AND ${quoteFree("OLD.key")} AND ${quoteFree("NEW.key")};
    END;
    CREATE TRIGGER ${view}_delete INSTEAD OF DELETE ON ${view}
    BEGIN
      UPDATE ${parent} SET config = json_remove(config, ${path("OLD.key")}) WHERE id = OLD.${parentCol} AND ${quoteFree("OLD.key")};
    END;`;
}

/** `<prefix>_devices(id, <parentCol>, name, type)` and `<prefix>_devices_config(id, <deviceCol>, key, value)`. */
function deviceViews(prefix: string, parent: string, parentCol: string, deviceCol: string): string {
  return `
    CREATE VIEW ${prefix}_devices AS
      SELECT ROW_NUMBER() OVER (ORDER BY p.id, d.key) AS id, p.id AS ${parentCol}, d.key AS name, ${DEVICE_TYPE} AS type
      FROM ${parent} p, json_each(p.devices) d;
    CREATE VIEW ${prefix}_devices_config AS
      SELECT ROW_NUMBER() OVER (ORDER BY d.id, c.key) AS id, d.id AS ${deviceCol}, c.key AS key, c.value AS value
      FROM ${prefix}_devices d JOIN ${parent} p ON p.id = d.${parentCol}, json_each(p.devices, ${path("d.name")}) c;`;
}

/**
 * Storage pools: `storage_pools_config` (the keys LXD keeps per member carry the member's id,
 * 1 on a lone daemon; LXD stores no empty value) and `storage_pools_nodes` (state 1 = created).
 */
export const STORAGE_POOL_VIEWS = `
  ${configView("storage_pools_config", "storage_pools", "storage_pool_id", {
    nodeId: `CASE WHEN c.key IN ('size', 'source', 'volatile.initial_source', 'zfs.pool_name', 'lvm.thinpool_name', 'lvm.vg_name') THEN 1 ELSE NULL END`,
    where: `c.value != ''`,
  })}
  CREATE VIEW storage_pools_nodes AS
    SELECT p.id AS id, p.id AS storage_pool_id, 1 AS node_id, CASE p.state WHEN 'created' THEN 1 ELSE 0 END AS state
    FROM storage_pools p;
`;

/**
 * Instances, profiles, volumes, networks, projects and images: config, devices and profile lists;
 * an image's source, and where it is (every image is on this member: node 1).
 */
export const OBJECT_CONFIG_VIEWS = `
  ${configView("instances_config", "instances", "instance_id")}
  CREATE VIEW instances_devices AS
    SELECT ROW_NUMBER() OVER (ORDER BY p.id, d.key) AS id, p.id AS instance_id, d.key AS name, ${DEVICE_TYPE} AS type
    FROM instances p, json_each(p.devices) d;
  CREATE VIEW instances_profiles AS
    SELECT ROW_NUMBER() OVER (ORDER BY i.id, j.key) AS id, i.id AS instance_id,
      COALESCE((SELECT id FROM profiles WHERE project = i.project AND name = j.value),
               (SELECT id FROM profiles WHERE project = 'default' AND name = j.value)) AS profile_id,
      j.key + 1 AS apply_order
    FROM instances i, json_each(i.profiles) j;
  ${configView("profiles_config", "profiles", "profile_id")}
  ${deviceViews("profiles", "profiles", "profile_id", "profile_device_id")}
  ${configView("storage_volumes_config", "storage_volumes", "storage_volume_id", { where: `instr(p.name, '/') = 0` })}
  ${configView("networks_config", "networks", "network_id", { nodeId: "NULL" })}
  CREATE VIEW projects_config AS
    SELECT ROW_NUMBER() OVER (ORDER BY p.rowid, c.key) AS id, p.rowid AS project_id, c.key AS key, c.value AS value
    FROM projects p, json_each(p.config) c;
  CREATE VIEW images_properties AS
    SELECT ROW_NUMBER() OVER (ORDER BY i.rowid, c.key) AS id, i.rowid AS image_id, 0 AS type, c.key AS key, c.value AS value
    FROM images i, json_each(i.properties) c;
  CREATE VIEW images_source AS
    SELECT i.rowid AS id, i.rowid AS image_id, s.server AS server,
      CASE s.protocol WHEN 'lxd' THEN 0 WHEN 'direct' THEN 1 WHEN 'simplestreams' THEN 2 ELSE -1 END AS protocol,
      s.certificate AS certificate, s.alias AS alias
    FROM image_sources s JOIN images i ON i.project = s.project AND i.fingerprint = s.fingerprint;
  CREATE VIEW images_nodes AS
    SELECT i.rowid AS id, i.rowid AS image_id, 1 AS node_id FROM images i;
  CREATE VIEW images_profiles AS
    SELECT i.rowid AS image_id, p.id AS profile_id
    FROM images i, json_each(i.profiles) j
    JOIN profiles p ON p.name = j.value AND p.project = CASE WHEN EXISTS (SELECT 1 FROM profiles WHERE project = i.project) THEN i.project ELSE 'default' END;
`;
