// Databases from before LXD's layout: nodelxd kept everything in `database/nodelxd.db`. At start
// that file becomes the global database (`database/global/db.bin`); openDatabase then creates the
// local one and moves the member-local server keys into it.
//
// Crash safety: the move is one rename (or, across filesystems, a copy to a temporary name and a
// rename), so `db.bin` either does not exist yet (the move is redone) or is complete (the old file
// is only removed afterwards). Its WAL is folded into the file first, so the rename carries all of it.
import Database from "better-sqlite3";
import { closeSync, copyFileSync, existsSync, fsyncSync, openSync, renameSync, rmSync } from "node:fs";
import { dirname } from "node:path";

function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function removeWithSidecars(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
}

/** Move `legacy` to `target` when only the old layout exists. Returns whether it moved anything. */
export function adoptLegacyDatabase(legacy: string, target: string): boolean {
  if (!existsSync(legacy)) return false;
  if (existsSync(target)) {
    // A previous start completed the move and stopped before removing the old file.
    removeWithSidecars(legacy);
    syncDir(dirname(legacy));
    return false;
  }
  const old = new Database(legacy);
  try {
    old.pragma("wal_checkpoint(TRUNCATE)");
  } finally {
    old.close();
  }
  try {
    renameSync(legacy, target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
    const tmp = `${target}.tmp`;
    copyFileSync(legacy, tmp);
    const fd = openSync(tmp, "r+");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
  }
  syncDir(dirname(target));
  removeWithSidecars(legacy);
  syncDir(dirname(legacy));
  return true;
}
