import type { Db } from "./database.js";
import { LOCAL_CONFIG_KEYS } from "./local-schema.js";

/**
 * Server configuration (the `config` of GET /1.0) as key/value rows: member-local keys
 * (addresses, storage volumes) in the local database's `config`, the rest in the global one, as LXD.
 */
export class ConfigRepo {
  constructor(private readonly db: Db) {}

  all(): Record<string, string> {
    const rows = this.db.prepare("SELECT key, value FROM main.config UNION ALL SELECT key, value FROM local.config ORDER BY key").all() as { key: string; value: string | null }[];
    return Object.fromEntries(rows.filter((r) => r.value !== null).map((r) => [r.key, r.value as string]));
  }

  /** Replace the whole configuration atomically (each database's part in one commit). */
  replace(config: Record<string, string>): void {
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM config").run();
      this.db.prepare("DELETE FROM local.config").run();
      const global = this.db.prepare("INSERT INTO config (key, value) VALUES (?, ?)");
      const local = this.db.prepare("INSERT INTO local.config (key, value) VALUES (?, ?)");
      for (const [k, v] of Object.entries(config)) if (v !== "") (LOCAL_CONFIG_KEYS.has(k) ? local : global).run(k, v);
    })();
  }
}
