// `lxc copy c1 c2 --refresh` on one server (LXD's instanceCreateAsCopy in refresh mode): the
// existing target keeps its identity; its snapshots that the source does not have with the
// same name and creation time are deleted, the missing ones are copied (oldest first), and
// the main volume is synced from the source (only changed files move: rsync --delete).
import { InternalError } from "../shared/errors.js";
import type { InstanceRow } from "../db/instance-repo.js";
import type { SnapshotRow } from "../db/snapshot-repo.js";
import { InstanceService } from "./service.js";

/** LXD's CompareSnapshots: which source snapshots to send, which target snapshots to delete. */
export function compareSnapshots<S extends { name: string; createdAt: string }, T extends { name: string; createdAt: string }>(
  source: S[],
  target: T[],
  same: (a: string, b: string) => boolean = (a, b) => new Date(a).getTime() === new Date(b).getTime(),
): { sync: S[]; remove: T[] } {
  const bySource = new Map(source.map((s) => [s.name, s]));
  const byTarget = new Map(target.map((t) => [t.name, t]));
  const remove = target.filter((t) => !bySource.has(t.name) || !same(bySource.get(t.name)!.createdAt, t.createdAt));
  const sync = source.filter((s) => !byTarget.has(s.name) || !same(s.createdAt, byTarget.get(s.name)!.createdAt));
  return { sync, remove };
}

/** The target must not run while it is refreshed (LXD's LockExclusive). */
export function assertRefreshable(svc: InstanceService, row: InstanceRow): void {
  if (svc.runtime.isRunning(row)) throw new InternalError("Failed getting exclusive access to instance: Instance is running");
}

/**
 * Refresh the existing instance `name` from `source` (an instance, or one of its snapshots when
 * `snapshot` is given: then only the main volume is synced from it).
 */
export async function refreshFromCopy(svc: InstanceService, project: string, name: string, source: InstanceRow, opts: { snapshot?: string; instanceOnly: boolean; signal?: AbortSignal }): Promise<void> {
  const storage = svc.deps.ports.storage;
  const target = svc.require(project, name);
  assertRefreshable(svc, target);
  const pool = InstanceService.rootDisk(svc.expanded(target).devices).pool;
  await svc.runtime.serialize(project, name, async () => {
    if (!opts.instanceOnly && !opts.snapshot) {
      const { sync, remove } = compareSnapshots<SnapshotRow, SnapshotRow>(svc.snapshots.list(source), svc.snapshots.list(target));
      for (const s of remove) await svc.snapshots.deleteLocked(project, name, s.name);
      await svc.snapshots.copySome(source, sync, project, name, pool, opts.signal);
    }
    const from = opts.snapshot ? await (await svc.snapshots.copySource(source.project, `${source.name}/${opts.snapshot}`)).dir() : await svc.volumeDir(source);
    await storage.syncInstanceVolume(project, pool, name, from, { signal: opts.signal });
    // The synced files carry the source's ownership: the next start shifts them if the maps differ.
    const lastIdmap = opts.snapshot ? svc.snapshots.require(source, opts.snapshot).config["volatile.last_state.idmap"] : source.config["volatile.last_state.idmap"];
    svc.repo.patchConfig(project, name, { "volatile.last_state.idmap": lastIdmap ?? "[]" });
  });
}
