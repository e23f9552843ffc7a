// LXD's hotfix files: `patch.local.sql` and `patch.global.sql` in $LXD_DIR/database are run once
// at start (local first, as LXD opens its local database first), each in one transaction, then
// deleted. Before running one, a backup is made as LXD makes it (`global.bak/` for the global
// file; `<db>.bak` for the local one). A failing file rolls back (the database stays as it was),
// stays in place, and stops the start with LXD's error text.
//
// `patch.local.sql` runs against the node-local database (`local.db`), `patch.global.sql` against
// the global one (`global/db.bin`), each through a connection where its own tables are the main ones.
import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { basename, join } from "node:path";
import type { Db } from "./database.js";
import { withDqsFallback } from "./dqs.js";

export class PatchFileFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PatchFileFailed";
  }
}

interface Log {
  info(obj: object, msg: string): void;
}

const WRAP = {
  local: (inner: string) => `Error creating database: ${inner}`,
  global: (inner: string) => `Failed to initialize global database: failed to ensure schema: ${inner}`,
} as const;

/** One of the two databases: a connection whose main schema is it, and its file. */
export interface PatchTarget {
  db: Db;
  file: string;
}

/** Runs the patch files present in `databaseDir` against their databases. Returns the ones applied. */
export function applyPatchFiles(targets: Record<"local" | "global", PatchTarget>, databaseDir: string, log?: Log): ("local" | "global")[] {
  const applied: ("local" | "global")[] = [];
  for (const kind of ["local", "global"] as const) {
    const { db, file: dbFile } = targets[kind];
    const path = join(databaseDir, `patch.${kind}.sql`);
    if (!existsSync(path)) continue;
    let sql: string;
    try {
      sql = readFileSync(path, "utf8");
    } catch (e) {
      throw new PatchFileFailed(WRAP[kind](`failed to execute queries from ${path}: failed to read file: ${(e as Error).message}`));
    }
    backup(db, kind, databaseDir, dbFile);
    log?.info({ file: path }, kind === "global" ? 'Updating the LXD global schema. Backup made as "global.bak"' : `Updating the LXD database schema. Backup made as "${basename(dbFile)}.bak"`);
    try {
      withDqsFallback(sql, (text) => db.transaction(() => db.exec(text))());
    } catch (e) {
      throw new PatchFileFailed(WRAP[kind](`failed to execute queries from ${path}: ${(e as Error).message}`));
    }
    try {
      unlinkSync(path);
    } catch (e) {
      throw new PatchFileFailed(WRAP[kind](`failed to execute queries from ${path}: failed to remove file: ${(e as Error).message}`));
    }
    applied.push(kind);
  }
  return applied;
}

/** A consistent copy of the database (VACUUM INTO reads one snapshot, WAL included). */
function backup(db: Db, kind: "local" | "global", databaseDir: string, dbFile: string): void {
  let target: string;
  if (kind === "global") {
    const dir = join(databaseDir, "global.bak");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { mode: 0o700 });
    target = join(dir, basename(dbFile));
  } else {
    target = `${dbFile}.bak`;
    rmSync(target, { force: true });
  }
  db.prepare("VACUUM main INTO ?").run(target);
}
