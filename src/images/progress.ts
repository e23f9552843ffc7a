// Operation progress metadata as LXD writes it (shared.SetProgressMetadata):
// { progress: {stage, percent, processed, speed}, "<stage>_progress": "Prefix: 42% (1.20MB/s)" }.
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

/** LXD's units.GetByteSizeString: decimal units, two decimals. */
export function byteSize(n: number, precision = 2): string {
  if (n < 1000) return `${Math.round(n)}B`;
  let v = n;
  for (const unit of ["kB", "MB", "GB", "TB", "PB", "EB"]) {
    v /= 1000;
    if (v < 1000) return `${v.toFixed(precision)}${unit}`;
  }
  return `${v.toFixed(precision)}EB`;
}

export function progressMetadata(stage: string, prefix: string, percent: number, processed: number, speed: number): Record<string, unknown> {
  const progress: Record<string, string> = { stage };
  if (processed > 0) progress.processed = String(Math.round(processed));
  if (percent > 0) progress.percent = String(Math.round(percent));
  progress.speed = String(Math.round(speed));
  const text =
    percent > 0 ? `${prefix}: ${Math.round(percent)}% (${byteSize(speed)}/s)` : processed > 0 ? `${prefix}: ${byteSize(processed)} (${byteSize(speed)}/s)` : `${prefix} (${byteSize(speed)}/s)`;
  return { progress, [`${stage}_progress`]: text };
}

/**
 * A reporter turning byte counts into progress metadata, at most every `intervalMs`.
 * `total` 0 reports processed bytes instead of a percentage.
 */
export function progressReporter(stage: string, prefix: string, total: number, emit: (meta: Record<string, unknown>) => void, intervalMs = 500): (bytes: number) => void {
  const start = Date.now();
  let last = 0;
  return (bytes) => {
    const now = Date.now();
    if (now - last < intervalMs) return;
    last = now;
    const speed = bytes / Math.max((now - start) / 1000, 0.001);
    emit(progressMetadata(stage, prefix, total > 0 ? Math.min(100, Math.floor((bytes * 100) / total)) : 0, bytes, speed));
  };
}

/** Total size of the regular files under `dir` (symlinks not followed). */
export async function treeSize(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await lstat(p).catch(() => ({ size: 0 }))).size;
    }
  };
  await walk(dir);
  return total;
}
