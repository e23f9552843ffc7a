// Durable root keys for the macaroons the server mints: one key is used for new macaroons for
// an hour, and every key is kept until the last macaroon minted with it has expired.
import { randomBytes } from "node:crypto";
import type { Db } from "../../db/database.js";

const GENERATE_FOR_MS = 60 * 60 * 1000;

export class RootKeyStore {
  constructor(private readonly db: Db) {}

  /** A root key for a macaroon that expires at `expiresAt` (ms): the current one, or a new one. */
  forMinting(expiresAt: number, now = Date.now()): { id: string; key: Uint8Array } {
    return this.db.transaction(() => {
      this.db.prepare("DELETE FROM nodelxd_macaroon_root_keys WHERE expires_at <= ?").run(now);
      const cur = this.db.prepare("SELECT id, root_key FROM nodelxd_macaroon_root_keys WHERE created_at > ? ORDER BY created_at DESC LIMIT 1").get(now - GENERATE_FOR_MS) as
        | { id: string; root_key: Buffer }
        | undefined;
      if (cur) {
        this.db.prepare("UPDATE nodelxd_macaroon_root_keys SET expires_at = max(expires_at, ?) WHERE id = ?").run(expiresAt, cur.id);
        return { id: cur.id, key: new Uint8Array(cur.root_key) };
      }
      const id = randomBytes(12).toString("hex");
      const key = randomBytes(24);
      this.db.prepare("INSERT INTO nodelxd_macaroon_root_keys (id, root_key, created_at, expires_at) VALUES (?, ?, ?, ?)").run(id, key, now, expiresAt);
      return { id, key: new Uint8Array(key) };
    })();
  }

  /** The root key of a macaroon id, unless it is unknown or past its keep-until time. */
  get(id: string, now = Date.now()): Uint8Array | undefined {
    const row = this.db.prepare("SELECT root_key FROM nodelxd_macaroon_root_keys WHERE id = ? AND expires_at > ?").get(id, now) as { root_key: Buffer } | undefined;
    return row ? new Uint8Array(row.root_key) : undefined;
  }
}
