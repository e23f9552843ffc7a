// Image and image alias records (per project). The files themselves live in
// $LXD_DIR/images/<fingerprint>[.rootfs], shared by every project holding the image.
import type { Db } from "./database.js";

export interface ImageRecordRow {
  project: string;
  fingerprint: string;
  type: "container" | "virtual-machine";
  filename: string;
  size: number;
  /** Split image: metadata tarball + <fingerprint>.rootfs. */
  split: boolean;
  public: boolean;
  auto_update: boolean;
  cached: boolean;
  architecture: string;
  created_at: string;
  expires_at: string;
  uploaded_at: string;
  last_used_at: string;
  properties: Record<string, string>;
  profiles: string[];
}

/** Where a remote image came from (LXD's images_source). */
export interface ImageSourceRow {
  project: string;
  fingerprint: string;
  server: string;
  protocol: string;
  certificate: string;
  alias: string;
}

export interface AliasRow {
  project: string;
  name: string;
  fingerprint: string;
  description: string;
}

interface Raw extends Omit<ImageRecordRow, "split" | "public" | "auto_update" | "cached" | "properties" | "profiles" | "last_used_at"> {
  /** LXD's column name (images.last_use_date); any time format SQL may have written. */
  last_use_date: string;
  split: number;
  public: number;
  auto_update: number;
  cached: number;
  properties: string;
  profiles: string;
}

/** Go encodes maps with sorted keys; keep ours sorted so output and ETags match LXD's. */
export const sortedMap = (m: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/** A time written by hand with `lxd sql` ("2024-01-02 03:04:05+00:00") read as LXD would: RFC 3339. */
const rfc3339 = (t: string) => (/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}/.test(t) && !Number.isNaN(Date.parse(t)) ? new Date(t).toISOString().replace(/\.000Z$/, "Z") : t);

const fromRaw = ({ last_use_date, ...r }: Raw): ImageRecordRow => ({
  ...r,
  last_used_at: rfc3339(last_use_date),
  split: r.split === 1,
  public: r.public === 1,
  auto_update: r.auto_update === 1,
  cached: r.cached === 1,
  properties: sortedMap(JSON.parse(r.properties)),
  profiles: JSON.parse(r.profiles),
});

export class ImageRepo {
  constructor(private readonly db: Db) {}

  insert(row: ImageRecordRow): void {
    this.db
      .prepare(
        `INSERT INTO images (project, fingerprint, type, filename, size, split, public, auto_update, cached, architecture,
           created_at, expires_at, uploaded_at, last_use_date, properties, profiles)
         VALUES (@project, @fingerprint, @type, @filename, @size, @split, @public, @auto_update, @cached, @architecture,
           @created_at, @expires_at, @uploaded_at, @last_used_at, @properties, @profiles)`,
      )
      .run({
        ...row,
        split: row.split ? 1 : 0,
        public: row.public ? 1 : 0,
        auto_update: row.auto_update ? 1 : 0,
        cached: row.cached ? 1 : 0,
        properties: JSON.stringify(row.properties),
        profiles: JSON.stringify(row.profiles),
      });
  }

  get(project: string, fingerprint: string): ImageRecordRow | undefined {
    const r = this.db.prepare("SELECT * FROM images WHERE project = ? AND fingerprint = ?").get(project, fingerprint) as Raw | undefined;
    return r && fromRaw(r);
  }

  /** Images of a project whose fingerprint starts with `prefix` (hex only, checked by the caller). */
  byPrefix(project: string, prefix: string): ImageRecordRow[] {
    return (this.db.prepare("SELECT * FROM images WHERE project = ? AND substr(fingerprint, 1, ?) = ? ORDER BY fingerprint").all(project, prefix.length, prefix) as Raw[]).map(fromRaw);
  }

  /** Any record of this fingerprint, whatever the project (the file is shared). */
  anyWithFingerprint(fingerprint: string): ImageRecordRow | undefined {
    const r = this.db.prepare("SELECT * FROM images WHERE fingerprint = ? LIMIT 1").get(fingerprint) as Raw | undefined;
    return r && fromRaw(r);
  }

  list(project: string, publicOnly = false): ImageRecordRow[] {
    const sql = `SELECT * FROM images WHERE project = ?${publicOnly ? " AND public = 1" : ""} ORDER BY fingerprint`;
    return (this.db.prepare(sql).all(project) as Raw[]).map(fromRaw);
  }

  allFingerprints(): Set<string> {
    return new Set((this.db.prepare("SELECT DISTINCT fingerprint FROM images").all() as { fingerprint: string }[]).map((r) => r.fingerprint));
  }

  update(project: string, fingerprint: string, patch: Partial<Pick<ImageRecordRow, "public" | "auto_update" | "properties" | "profiles" | "expires_at">>): void {
    const cur = this.get(project, fingerprint);
    if (!cur) return;
    const next = { ...cur, ...patch };
    this.db
      .prepare("UPDATE images SET public = ?, auto_update = ?, properties = ?, profiles = ?, expires_at = ? WHERE project = ? AND fingerprint = ?")
      .run(next.public ? 1 : 0, next.auto_update ? 1 : 0, JSON.stringify(next.properties), JSON.stringify(next.profiles), next.expires_at, project, fingerprint);
  }

  markUsed(fingerprint: string, at: string): void {
    this.db.prepare("UPDATE images SET last_use_date = ? WHERE fingerprint = ?").run(at, fingerprint);
  }

  delete(project: string, fingerprint: string): boolean {
    return this.db.prepare("DELETE FROM images WHERE project = ? AND fingerprint = ?").run(project, fingerprint).changes > 0;
  }

  countFingerprint(fingerprint: string): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM images WHERE fingerprint = ?").get(fingerprint) as { n: number }).n;
  }

  // Aliases

  aliases(project: string): AliasRow[] {
    return this.db.prepare("SELECT * FROM image_aliases WHERE project = ? ORDER BY name").all(project) as AliasRow[];
  }

  aliasesOf(project: string, fingerprint: string): AliasRow[] {
    return this.db.prepare("SELECT * FROM image_aliases WHERE project = ? AND fingerprint = ? ORDER BY name").all(project, fingerprint) as AliasRow[];
  }

  alias(project: string, name: string): AliasRow | undefined {
    return this.db.prepare("SELECT * FROM image_aliases WHERE project = ? AND name = ?").get(project, name) as AliasRow | undefined;
  }

  insertAlias(row: AliasRow): void {
    this.db.prepare("INSERT INTO image_aliases (project, name, fingerprint, description) VALUES (?, ?, ?, ?)").run(row.project, row.name, row.fingerprint, row.description);
  }

  updateAlias(project: string, name: string, fingerprint: string, description: string): void {
    this.db.prepare("UPDATE image_aliases SET fingerprint = ?, description = ? WHERE project = ? AND name = ?").run(fingerprint, description, project, name);
  }

  renameAlias(project: string, from: string, to: string): void {
    this.db.prepare("UPDATE image_aliases SET name = ? WHERE project = ? AND name = ?").run(to, project, from);
  }

  deleteAlias(project: string, name: string): boolean {
    return this.db.prepare("DELETE FROM image_aliases WHERE project = ? AND name = ?").run(project, name).changes > 0;
  }

  // Sources (remote images)

  source(project: string, fingerprint: string): ImageSourceRow | undefined {
    return this.db.prepare("SELECT * FROM image_sources WHERE project = ? AND fingerprint = ?").get(project, fingerprint) as ImageSourceRow | undefined;
  }

  setSource(row: ImageSourceRow): void {
    this.db
      .prepare("INSERT OR REPLACE INTO image_sources (project, fingerprint, server, protocol, certificate, alias) VALUES (?, ?, ?, ?, ?, ?)")
      .run(row.project, row.fingerprint, row.server, row.protocol, row.certificate, row.alias);
  }

  /** The newest cached image of a project pulled from (server, protocol, alias) for an architecture. */
  cachedFromSource(project: string, server: string, protocol: string, alias: string, type: string, architecture: string): ImageRecordRow | undefined {
    const r = this.db
      .prepare(
        `SELECT i.* FROM images i JOIN image_sources s ON s.project = i.project AND s.fingerprint = i.fingerprint
         WHERE i.project = ? AND s.server = ? AND s.protocol = ? AND s.alias = ? AND i.cached = 1 AND (? = '' OR i.type = ?) AND i.architecture = ?
         ORDER BY i.uploaded_at DESC LIMIT 1`,
      )
      .get(project, server, protocol, alias, type, type, architecture) as Raw | undefined;
    return r && fromRaw(r);
  }

  /** Every image with a recorded source (refresh candidates). */
  withSources(): (ImageRecordRow & { source: ImageSourceRow })[] {
    const rows = this.db.prepare("SELECT s.server AS s_server, s.protocol AS s_protocol, s.certificate AS s_certificate, s.alias AS s_alias, i.* FROM images i JOIN image_sources s ON s.project = i.project AND s.fingerprint = i.fingerprint").all() as (Raw & Record<string, string>)[];
    return rows.map((r) => {
      const { s_server, s_protocol, s_certificate, s_alias, ...raw } = r;
      const row = fromRaw(raw as unknown as Raw);
      return { ...row, source: { project: row.project, fingerprint: row.fingerprint, server: s_server, protocol: s_protocol, certificate: s_certificate, alias: s_alias } };
    });
  }

  /** A refreshed image takes over its predecessor's use record, profiles and aliases. */
  takeOver(project: string, from: ImageRecordRow, to: string): void {
    this.db
      .prepare("UPDATE images SET cached = ?, last_use_date = ?, profiles = ? WHERE project = ? AND fingerprint = ?")
      .run(from.cached ? 1 : 0, from.last_used_at, JSON.stringify(from.profiles), project, to);
    this.db.prepare("UPDATE image_aliases SET fingerprint = ? WHERE project = ? AND fingerprint = ?").run(to, project, from.fingerprint);
  }

  cachedRows(): ImageRecordRow[] {
    return (this.db.prepare("SELECT * FROM images WHERE cached = 1").all() as Raw[]).map(fromRaw);
  }

  setCachedUsed(project: string, fingerprint: string, at: string): void {
    this.db.prepare("UPDATE images SET cached = 1, last_use_date = ? WHERE project = ? AND fingerprint = ?").run(at, project, fingerprint);
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }
}
