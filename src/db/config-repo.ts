import type { Db } from "./database.js";

/** Server configuration (the `config` of GET /1.0) as key/value rows. */
export class ConfigRepo {
  constructor(private readonly db: Db) {}

  all(): Record<string, string> {
    const rows = this.db.prepare("SELECT key, value FROM config ORDER BY key").all() as { key: string; value: string }[];
    return Object.fromEntries(rows.map((r) => [r.key, r.value]));
  }

  /** Replace the whole configuration atomically. */
  replace(config: Record<string, string>): void {
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM config").run();
      const insert = this.db.prepare("INSERT INTO config (key, value) VALUES (?, ?)");
      for (const [k, v] of Object.entries(config)) if (v !== "") insert.run(k, v);
    })();
  }
}
