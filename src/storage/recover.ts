// `lxd recover` (POST /internal/recover/validate and /import): volumes found in the pools'
// directories that the database does not know, and their records recreated, instances from the
// backup.yaml in their volume. Pools the database lost are scanned from what the user says they are; on-disk names decode as LXD
// encodes them ("<project>_<name>" for custom volumes and for instances outside `default`).
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseYaml } from "../shared/yaml.js";
import { VOLUME_DIRS } from "./drivers/types.js";

export interface UnknownVolume {
  name: string;
  type: "container" | "custom";
  snapshotCount: number;
  project: string;
  pool: string;
}

/** A pool as `lxd recover` names it (LXD's StoragePoolsPost): driver and config only for a pool the database lost. */
export interface RecoverPoolSpec {
  name: string;
  driver?: string;
  description?: string;
  config?: Record<string, string>;
}

export interface RecoverScanDeps {
  /** The pool's mount path (its directories are read there). */
  mountPath(pool: string): string;
  /** Whether the database has this volume. */
  known(pool: string, project: string, type: string, name: string): boolean;
  /** Whether the database has this instance (its volume record being gone). */
  instanceKnown(project: string, name: string): boolean;
}

/** "proj_c1" → ["proj", "c1"]; a container without a prefix is in `default`. */
export function decodeVolumeName(type: "container" | "custom", diskName: string): { project: string; name: string } | undefined {
  const i = diskName.indexOf("_");
  if (i < 0) return type === "container" ? { project: "default", name: diskName } : undefined;
  if (i === 0 || i === diskName.length - 1) return undefined;
  return { project: diskName.slice(0, i), name: diskName.slice(i + 1) };
}

const entries = (dir: string) => readdir(dir, { withFileTypes: true }).catch(() => []);

export async function scanUnknownVolumes(pools: string[], deps: RecoverScanDeps): Promise<UnknownVolume[]> {
  const out: UnknownVolume[] = [];
  for (const pool of pools) {
    const root = deps.mountPath(pool);
    for (const type of ["container", "custom"] as const) {
      const dir = VOLUME_DIRS[type];
      for (const e of await entries(join(root, dir))) {
        if (!e.isDirectory()) continue;
        const decoded = decodeVolumeName(type, e.name);
        if (!decoded || deps.known(pool, decoded.project, type, decoded.name)) continue;
        const v: UnknownVolume = { name: decoded.name, type, snapshotCount: 0, project: decoded.project, pool };
        if (type === "container") {
          // As LXD: an instance volume is only recoverable through its backup.yaml, checked now.
          let backup: Record<string, unknown>;
          try {
            if (deps.instanceKnown(decoded.project, decoded.name)) throw new Error(`Instance ${JSON.stringify(decoded.name)} in project ${JSON.stringify(decoded.project)} already has instance DB record`);
            backup = await readBackupFile(deps, v);
          } catch (err) {
            throw new Error(`Failed checking volumes on pool ${JSON.stringify(pool)}: ${(err as Error).message}`);
          }
          v.snapshotCount = Array.isArray(backup.snapshots) ? backup.snapshots.length : 0;
        } else v.snapshotCount = (await entries(join(root, `${dir}-snapshots`, e.name))).filter((s) => s.isDirectory()).length;
        out.push(v);
      }
    }
  }
  return out;
}

export interface RecoverImportDeps extends RecoverScanDeps {
  /** Records for a volume found on disk (and its snapshots); returns its mount path. */
  adoptVolume(pool: string, project: string, type: "custom", name: string, vol: AdoptedVolume, snapshots: (AdoptedVolume & { name: string })[]): Promise<string>;
  /** What an instance's backup.yaml needs that is missing ("Profile "p" in project "x""). */
  instanceDependencies(project: string, backup: Record<string, unknown>): string[];
  /** Recreate an instance's records from its backup.yaml. */
  recoverInstance(pool: string, project: string, name: string, backup: Record<string, unknown>): Promise<void>;
}

/** The parsed backup.yaml of an instance volume found by the scan, with LXD's consistency checks. */
export async function readBackupFile(deps: RecoverScanDeps, v: UnknownVolume): Promise<Record<string, unknown>> {
  const disk = v.project === "default" ? v.name : `${v.project}_${v.name}`;
  const file = join(deps.mountPath(v.pool), VOLUME_DIRS[v.type], disk, "backup.yaml");
  let doc: unknown;
  try {
    doc = parseYaml(await readFile(file, "utf8"));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ENOENT" ? `open ${file}: no such file or directory` : err.message;
    throw new Error(`Failed parsing backup file ${JSON.stringify(file)}: ${why}`);
  }
  const conf = (doc && typeof doc === "object" ? doc : {}) as Record<string, unknown>;
  const pool = conf.pool as { name?: string } | undefined;
  const what = `Instance ${JSON.stringify(v.name)} in project ${JSON.stringify(v.project)}`;
  if (pool?.name && pool.name !== v.pool) throw new Error(`${what} has pool name mismatch in its backup file (${JSON.stringify(pool.name)} doesn't match's pool's ${JSON.stringify(v.pool)})`);
  const container = conf.container as { name?: string } | undefined;
  if (!container || typeof container !== "object") throw new Error(`${what} has no instance information in its backup file`);
  if (container.name !== v.name) throw new Error(`${what} has a different instance name in its backup file (${JSON.stringify(container.name ?? "")})`);
  return conf;
}

/** Dependency errors of the unknown instances (missing profiles), deduplicated, as LXD lists them. */
export async function recoverDependencies(found: UnknownVolume[], deps: RecoverImportDeps): Promise<string[]> {
  const out = new Set<string>();
  for (const v of found.filter((x) => x.type === "container")) {
    for (const d of deps.instanceDependencies(v.project, await readBackupFile(deps, v))) out.add(d);
  }
  return [...out];
}

/** A volume's record as `lxd recover` makes it. */
export interface AdoptedVolume {
  description: string;
  config: Record<string, string>;
  contentType?: "filesystem" | "block";
}

/** LXD's import order: custom volumes first (instances may attach them), then instances. */
export async function importUnknownVolumes(found: UnknownVolume[], deps: RecoverImportDeps): Promise<void> {
  for (const v of found.filter((x) => x.type === "custom")) {
    const disk = `${v.project}_${v.name}`;
    const snaps = (await entries(join(deps.mountPath(v.pool), `${VOLUME_DIRS.custom}-snapshots`, disk))).filter((s) => s.isDirectory()).map((s) => s.name).sort();
    // A custom block volume is its raw disk, root.img, in the volume's directory (as LXD's ListVolumes tells them apart).
    const block = (await entries(join(deps.mountPath(v.pool), VOLUME_DIRS.custom, disk))).some((e) => e.name === "root.img" && e.isFile());
    const contentType = block ? "block" : "filesystem";
    try {
      await deps.adoptVolume(v.pool, v.project, "custom", v.name, { description: "", config: {}, contentType }, snaps.map((name) => ({ name, description: "", config: {}, contentType })));
    } catch (e) {
      throw new Error(`Failed importing custom volume ${JSON.stringify(v.name)} in project ${JSON.stringify(v.project)}: ${(e as Error).message}`);
    }
  }
  for (const v of found.filter((x) => x.type === "container")) {
    const backup = await readBackupFile(deps, v);
    try {
      await deps.recoverInstance(v.pool, v.project, v.name, backup);
    } catch (e) {
      throw new Error(`Failed creating instance ${JSON.stringify(v.name)} record in project ${JSON.stringify(v.project)}: ${(e as Error).message}`);
    }
  }
}

/**
 * The record of a lost pool as an instance on it saw it (the `pool` section of its backup.yaml,
 * LXD's preference over the user's config: it has every key), or undefined without one.
 */
export async function recoveredPoolRecord(found: UnknownVolume[], deps: RecoverScanDeps): Promise<{ driver: string; description: string; config: Record<string, string> } | undefined> {
  for (const v of found.filter((x) => x.type === "container")) {
    const pool = (await readBackupFile(deps, v)).pool;
    if (!pool || typeof pool !== "object") continue;
    const p = pool as { driver?: unknown; description?: unknown; config?: unknown };
    if (!p.config || typeof p.config !== "object") continue;
    const config = Object.fromEntries(Object.entries(p.config as Record<string, unknown>).map(([k, val]) => [k, String(val)]));
    return { driver: typeof p.driver === "string" ? p.driver : "", description: typeof p.description === "string" ? p.description : "", config };
  }
  return undefined;
}
