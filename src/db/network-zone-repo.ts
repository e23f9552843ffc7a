import type { ZoneRecordEntry } from "../network/zones/rules.js";
import type { Db } from "./database.js";

export interface NetworkZoneRow {
  project: string;
  name: string;
  description: string;
  config: Record<string, string>;
}

export interface NetworkZoneRecordRow {
  name: string;
  description: string;
  entries: ZoneRecordEntry[];
  config: Record<string, string>;
}

type Raw<T> = { [K in keyof T]: T[K] extends string ? string : string };
const zoneRow = (r: Raw<NetworkZoneRow>): NetworkZoneRow => ({ ...r, config: JSON.parse(r.config) });
const recordRow = (r: Raw<NetworkZoneRecordRow>): NetworkZoneRecordRow => ({ ...r, entries: JSON.parse(r.entries), config: JSON.parse(r.config) });

/** DNS zones (names are unique across projects, as LXD's) and their extra records. */
export class NetworkZoneRepo {
  constructor(private readonly db: Db) {}

  list(project: string): NetworkZoneRow[] {
    return (this.db.prepare("SELECT project, name, description, config FROM network_zones WHERE project = ? ORDER BY name").all(project) as Raw<NetworkZoneRow>[]).map(zoneRow);
  }

  /** By name, whatever its project. */
  find(name: string): NetworkZoneRow | undefined {
    const r = this.db.prepare("SELECT project, name, description, config FROM network_zones WHERE name = ?").get(name) as Raw<NetworkZoneRow> | undefined;
    return r && zoneRow(r);
  }

  create(row: NetworkZoneRow): void {
    this.db.prepare("INSERT INTO network_zones (project, name, description, config) VALUES (?, ?, ?, ?)").run(row.project, row.name, row.description, JSON.stringify(row.config));
  }

  update(row: NetworkZoneRow): void {
    this.db.prepare("UPDATE network_zones SET description = ?, config = ? WHERE name = ?").run(row.description, JSON.stringify(row.config), row.name);
  }

  delete(name: string): void {
    this.db.prepare("DELETE FROM network_zones WHERE name = ?").run(name);
  }

  records(zone: string): NetworkZoneRecordRow[] {
    return (
      this.db
        .prepare("SELECT r.name, r.description, r.entries, r.config FROM network_zone_records r JOIN network_zones z ON z.id = r.zone_id WHERE z.name = ? ORDER BY r.name")
        .all(zone) as Raw<NetworkZoneRecordRow>[]
    ).map(recordRow);
  }

  record(zone: string, name: string): NetworkZoneRecordRow | undefined {
    return this.records(zone).find((r) => r.name === name);
  }

  createRecord(zone: string, r: NetworkZoneRecordRow): void {
    this.db
      .prepare("INSERT INTO network_zone_records (zone_id, name, description, entries, config) SELECT id, ?, ?, ?, ? FROM network_zones WHERE name = ?")
      .run(r.name, r.description, JSON.stringify(r.entries), JSON.stringify(r.config), zone);
  }

  updateRecord(zone: string, r: NetworkZoneRecordRow): void {
    this.db
      .prepare("UPDATE network_zone_records SET description = ?, entries = ?, config = ? WHERE name = ? AND zone_id = (SELECT id FROM network_zones WHERE name = ?)")
      .run(r.description, JSON.stringify(r.entries), JSON.stringify(r.config), r.name, zone);
  }

  deleteRecord(zone: string, name: string): void {
    this.db.prepare("DELETE FROM network_zone_records WHERE name = ? AND zone_id = (SELECT id FROM network_zones WHERE name = ?)").run(name, zone);
  }
}
