// The index of an instance backup tarball (backup/index.yaml), checked before anything is
// created: a tarball is untrusted input, so every field we act on must be present, of the
// right shape, and agree with the others (names of the instance, its volume and snapshots).
import type { InstancePut } from "./model.js";

/** The instance part of index.yaml we read back at import. */
/** backup.yaml's instance: the instance's PUT fields and its name. */
export interface IndexInstance extends InstancePut {
  name?: string;
}
export interface IndexSnapshot extends IndexInstance {
  name: string;
  created_at?: string;
  expires_at?: string;
}

export interface CheckedIndex {
  /** the instance name recorded in the backup */
  name: string;
  pool: string;
  container: IndexInstance;
  snapshots: IndexSnapshot[];
  /** The instance volume's config and each snapshot volume's (string values only), by snapshot name. */
  volumes: { main: Record<string, string>; snapshots: Record<string, Record<string, string>> };
  /** An optimized (driver stream) backup: the driver that made it, and whether it has the subvolume header. */
  optimized?: { backend: string; header: boolean };
}

/** A config mapping's string entries (anything else in an untrusted index is dropped). */
function stringMap(v: unknown): Record<string, string> {
  if (!isMap(v)) return {};
  return Object.fromEntries(Object.entries(v).filter(([, x]) => typeof x === "string")) as Record<string, string>;
}

export class BackupIndexError extends Error {}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function list(v: unknown, what: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new BackupIndexError(`Invalid backup index: ${what} must be a list`);
  return v;
}

function names(entries: unknown[], what: string, field?: string): string[] {
  const out: string[] = [];
  for (const e of entries) {
    const n = field === undefined ? e : isMap(e) ? e[field] : undefined;
    if (field !== undefined && !isMap(e)) throw new BackupIndexError(`Invalid backup index: an entry of ${what} is empty`);
    if (typeof n !== "string" || n === "") throw new BackupIndexError(`Invalid backup index: an entry of ${what} has no name`);
    if (out.includes(n)) throw new BackupIndexError(`Invalid backup index: ${what} lists "${n}" twice`);
    out.push(n);
  }
  return out;
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** Check a parsed index.yaml (LXD 5.0.2's layout); throws BackupIndexError with the reason. */
export function checkBackupIndex(doc: unknown): CheckedIndex {
  if (!isMap(doc)) throw new BackupIndexError("Invalid backup index: not a YAML mapping");
  const config = doc.config;
  if (!isMap(config) || !isMap(config.container)) throw new BackupIndexError("No instance config in backup config");
  const container = config.container as IndexInstance & Record<string, unknown>;
  if (typeof doc.name !== "string" || doc.name === "") throw new BackupIndexError("Invalid backup index: no instance name");
  if (container.name !== doc.name) throw new BackupIndexError(`Instance name in backup index ${JSON.stringify(doc.name)} doesn't match instance name in backup config ${JSON.stringify(container.name ?? "")}`);
  for (const k of ["config", "devices"] as const) if (container[k] !== undefined && container[k] !== null && !isMap(container[k])) throw new BackupIndexError(`Invalid backup index: instance ${k} must be a mapping`);
  if (container.profiles !== undefined && container.profiles !== null) names(list(container.profiles, "profiles"), "profiles");
  if (!("pool" in config) || !isMap(config.pool)) throw new BackupIndexError("No storage pool struct in the backup file found. The storage pool needs to be recovered manually");
  if (!("volume" in config) || !isMap(config.volume)) throw new BackupIndexError("No storage volume struct in the backup file found. The storage volume needs to be recovered manually");
  if (config.volume.name !== doc.name) throw new BackupIndexError(`The name ${JSON.stringify(config.volume.name ?? "")} of the storage volume is not identical to the instance's name ${JSON.stringify(doc.name)}`);
  if (doc.pool !== undefined && typeof doc.pool !== "string") throw new BackupIndexError("Invalid backup index: pool must be a name");

  const listed = names(list(doc.snapshots, "snapshots"), "snapshots");
  const snapConfigs = list(config.snapshots, "config.snapshots");
  const configured = names(snapConfigs, "config.snapshots", "name");
  if (!sameSet(listed, configured)) throw new BackupIndexError(`Invalid backup index: snapshots [${listed.join(", ")}] don't match the snapshot configs [${configured.join(", ")}]`);
  if ("volume_snapshots" in config) {
    const volumes = names(list(config.volume_snapshots, "config.volume_snapshots"), "config.volume_snapshots", "name");
    if (!sameSet(listed, volumes)) throw new BackupIndexError(`Invalid backup index: snapshots [${listed.join(", ")}] don't match the volume snapshots [${volumes.join(", ")}]`);
  }
  for (const s of snapConfigs as Record<string, unknown>[]) {
    for (const k of ["config", "devices"]) if (s[k] !== undefined && s[k] !== null && !isMap(s[k])) throw new BackupIndexError(`Invalid backup index: snapshot ${k} must be a mapping`);
  }
  const volumes = { main: stringMap(config.volume.config), snapshots: {} as Record<string, Record<string, string>> };
  for (const v of list(config.volume_snapshots, "config.volume_snapshots") as Record<string, unknown>[]) volumes.snapshots[String(v.name)] = stringMap(v.config);
  const optimized = doc.optimized === true ? { backend: String(doc.backend ?? ""), header: doc.optimized_header === true } : undefined;
  return { name: doc.name, pool: typeof doc.pool === "string" ? doc.pool : "", container, snapshots: snapConfigs as IndexSnapshot[], volumes, optimized };
}
