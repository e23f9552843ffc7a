// `lxd recover`'s scan (POST /internal/recover/validate): volumes found in the pools' directories
// that the database does not know. Only existing pools are scanned; on-disk names decode as LXD
// encodes them ("<project>_<name>" for custom volumes and for instances outside `default`).
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { VOLUME_DIRS } from "./drivers/types.js";

export interface UnknownVolume {
  name: string;
  type: "container" | "custom";
  snapshotCount: number;
  project: string;
  pool: string;
}

export interface RecoverScanDeps {
  /** The pool's mount path (its directories are read there). */
  mountPath(pool: string): string;
  /** Whether the database has this volume. */
  known(pool: string, project: string, type: string, name: string): boolean;
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
        const snapshots = (await entries(join(root, `${dir}-snapshots`, e.name))).filter((s) => s.isDirectory()).length;
        out.push({ name: decoded.name, type, snapshotCount: snapshots, project: decoded.project, pool });
      }
    }
  }
  return out;
}
