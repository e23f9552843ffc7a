// The TLS trust store's rows (GET/POST /1.0/certificates).
import type { Db } from "./database.js";

export interface CertificateRecord {
  fingerprint: string;
  type: string;
  name: string;
  /** PEM, ending in a newline. */
  certificate: string;
  restricted: boolean;
  projects: string[];
}

interface Row {
  fingerprint: string;
  type: string;
  name: string;
  certificate: string;
  restricted: number;
  projects: string;
}

const toRecord = (r: Row): CertificateRecord => ({
  fingerprint: r.fingerprint,
  type: r.type,
  name: r.name,
  certificate: r.certificate,
  restricted: r.restricted === 1,
  projects: JSON.parse(r.projects),
});

export class CertificateRepo {
  constructor(private readonly db: Db) {}

  list(): CertificateRecord[] {
    return (this.db.prepare("SELECT * FROM certificates ORDER BY fingerprint").all() as Row[]).map(toRecord);
  }

  /** Rows whose fingerprint starts with `prefix` (LXD accepts fingerprint prefixes in URLs). */
  byPrefix(prefix: string): CertificateRecord[] {
    const escaped = prefix.replace(/[\\%_]/g, (c) => `\\${c}`);
    return (this.db.prepare("SELECT * FROM certificates WHERE fingerprint LIKE ? ESCAPE '\\' ORDER BY fingerprint").all(`${escaped}%`) as Row[]).map(toRecord);
  }

  get(fingerprint: string): CertificateRecord | undefined {
    const row = this.db.prepare("SELECT * FROM certificates WHERE fingerprint = ?").get(fingerprint) as Row | undefined;
    return row && toRecord(row);
  }

  insert(c: CertificateRecord): void {
    this.db
      .prepare("INSERT INTO certificates (fingerprint, type, name, certificate, restricted, projects) VALUES (?, ?, ?, ?, ?, ?)")
      .run(c.fingerprint, c.type, c.name, c.certificate, c.restricted ? 1 : 0, JSON.stringify(c.projects));
  }

  /** Replace the row of `fingerprint` (which may change along with the certificate). */
  replace(fingerprint: string, c: CertificateRecord): void {
    this.db
      .prepare("UPDATE certificates SET fingerprint = ?, type = ?, name = ?, certificate = ?, restricted = ?, projects = ? WHERE fingerprint = ?")
      .run(c.fingerprint, c.type, c.name, c.certificate, c.restricted ? 1 : 0, JSON.stringify(c.projects), fingerprint);
  }

  delete(fingerprint: string): boolean {
    return this.db.prepare("DELETE FROM certificates WHERE fingerprint = ?").run(fingerprint).changes > 0;
  }
}
