// Instance snapshots and their snapshot volume records (storage_volumes rows "<instance>/<snapshot>")
// must match, as LXD requires (its backup file check). LXD's patch `storage_missing_snapshot_records`
// recreates missing volume records ("Auto repaired"); like every LXD patch it runs at start while
// its name is missing from the local `patches` table.
import type { Db } from "../db/database.js";
import { InternalError } from "../shared/errors.js";
import { markPatchApplied, patchApplied } from "../db/local-schema.js";

export const MISSING_SNAPSHOT_RECORDS_PATCH = "storage_missing_snapshot_records";

const VOLUME_TYPE = "CASE i.type WHEN 'virtual-machine' THEN 'virtual-machine' ELSE 'container' END";

interface Missing {
  pool_id: number;
  project: string;
  type: string;
  name: string;
  config: string;
  content_type: string;
}

/** Snapshot volume records missing for created instance snapshots (on the instance volume's pool). */
function missingRecords(db: Db): Missing[] {
  return db
    .prepare(
      `SELECT v.pool_id, v.project, v.type, v.name || '/' || s.name AS name, v.config, v.content_type
       FROM instance_snapshots s
       JOIN instances i ON i.id = s.instance_id
       JOIN storage_volumes v ON v.project = i.project AND v.type = ${VOLUME_TYPE} AND v.name = i.name
       WHERE s.state = 'created' AND NOT EXISTS (
         SELECT 1 FROM storage_volumes x WHERE x.pool_id = v.pool_id AND x.project = v.project AND x.type = v.type AND x.name = v.name || '/' || s.name)
       ORDER BY v.id, s.id`,
    )
    .all() as Missing[];
}

/**
 * Run the patch if it is not recorded as applied: the records are written first (one commit),
 * the patch mark after, so a crash in between only finds nothing left to repair next time.
 */
export function repairMissingSnapshotRecords(db: Db, log?: { info(obj: object, msg: string): void }): number {
  if (patchApplied(db, MISSING_SNAPSHOT_RECORDS_PATCH)) return 0;
  const missing = missingRecords(db);
  db.transaction(() => {
    const insert = db.prepare(
      `INSERT INTO storage_volumes (pool_id, project, type, name, description, config, content_type, state, created_at)
       VALUES (?, ?, ?, ?, 'Auto repaired', ?, ?, 'created', '0001-01-01T00:00:00Z')`,
    );
    for (const m of missing) {
      log?.info({ project: m.project, instance: m.name }, "Creating missing volume snapshot record");
      insert.run(m.pool_id, m.project, m.type, m.name, m.config, m.content_type);
    }
  })();
  markPatchApplied(db, MISSING_SNAPSHOT_RECORDS_PATCH);
  return missing.length;
}

/** LXD's check before writing an instance's backup file (at start): one volume record per snapshot. */
export function assertSnapshotRecords(db: Db, project: string, name: string): void {
  const row = db
    .prepare(
      `SELECT
         (SELECT count(*) FROM instance_snapshots s WHERE s.instance_id = i.id AND s.state = 'created') AS snapshots,
         (SELECT count(*) FROM storage_volumes v WHERE v.project = i.project AND v.type = ${VOLUME_TYPE}
            AND substr(v.name, 1, length(i.name) + 1) = i.name || '/' AND v.state = 'created') AS volumes
       FROM instances i WHERE i.project = ? AND i.name = ?`,
    )
    .get(project, name) as { snapshots: number; volumes: number } | undefined;
  if (row && row.snapshots !== row.volumes) {
    throw new InternalError("Instance snapshot record count doesn't match instance snapshot volume record count");
  }
}
