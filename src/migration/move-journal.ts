// The journal of instance moves between cluster members (global table nodelxd_instance_moves),
// and what settles a move that a crash cut short. A move (cluster-move.ts) records itself before
// the target member starts its copy and drops the record once it ended either way; a record
// still there afterwards belongs to a move whose source or target daemon died in between.
// Settling it keeps the one rule a move has: the original is only deleted once the target holds
// the whole copy. So while the original exists, the copy (half or whole) goes; once the original
// is gone, the copy is complete and takes the instance's name. The copy is known by its name
// and the original's volatile.uuid, which a move carries over (never a user's instance that
// happens to have the name since).
import type { Db } from "../db/database.js";
import type { InstanceRow } from "../db/instance-repo.js";
import type { ClusterPort } from "../ports.js";
import type { InstanceService } from "../instances/service.js";
import { apiUrl } from "../shared/urls.js";

/** LXD's temporary name of the copy while a same-name move runs (instance.MoveTemporaryName). */
export const MOVE_PREFIX = "lxd-move-of-";

/** Whether an instance name is a move's staging copy (hidden from listings). */
export const isStagingName = (name: string): boolean => name.startsWith(MOVE_PREFIX);

export interface MoveRecord {
  project: string;
  /** The instance's name on the source member. */
  name: string;
  /** Its volatile.uuid (the copy carries it). */
  uuid: string;
  source: string;
  target: string;
  /** The copy's name on the target while the move runs. */
  dest: string;
  /** The name it takes there at the end. */
  final: string;
  started_at: string;
}

export class MoveJournal {
  constructor(private readonly db: Db) {}

  add(r: MoveRecord): void {
    this.db
      .prepare("INSERT OR REPLACE INTO nodelxd_instance_moves (project, name, uuid, source, target, dest, final, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
      .run(r.project, r.name, r.uuid, r.source, r.target, r.dest, r.final, r.started_at);
  }

  remove(project: string, name: string): void {
    this.db.prepare("DELETE FROM nodelxd_instance_moves WHERE project = ? AND name = ?").run(project, name);
  }

  /** The records of one instance (by its uuid). */
  ofInstance(project: string, uuid: string): MoveRecord[] {
    return this.db.prepare("SELECT * FROM nodelxd_instance_moves WHERE project = ? AND uuid = ?").all(project, uuid) as MoveRecord[];
  }

  /** The records member `member` took part in, of moves that began before `before` (ISO time). */
  involving(member: string, before: string): MoveRecord[] {
    return this.db.prepare("SELECT * FROM nodelxd_instance_moves WHERE (source = ? OR target = ?) AND started_at < ?").all(member, member, before) as MoveRecord[];
  }
}

export interface SettleDeps {
  cluster: ClusterPort;
  journal: MoveJournal;
  svc: InstanceService;
}

/**
 * Settle one interrupted move: the copy removed while the original exists, else renamed to the
 * instance's name. Steps on another member go through its API; if one cannot be done now (that
 * member is down), the record stays for the next try. Returns whether it was settled.
 */
export async function settleMove(d: SettleDeps, r: MoveRecord): Promise<boolean> {
  const { cluster, journal, svc } = d;
  const me = cluster.name();
  const sameInstance = (row: InstanceRow | undefined) => !!row && row.config["volatile.uuid"] === r.uuid;
  const named = svc.repo.get(r.project, r.name);
  const original = sameInstance(named) && named!.node === r.source ? named : undefined;
  const copy = r.dest !== r.name ? svc.repo.get(r.project, r.dest) : undefined;
  if (original && sameInstance(copy) && copy!.node !== original.node) {
    // The copy is a leftover (half, or whole but the source never deleted the original).
    if (copy!.node === me) {
      await cluster.withWriteLock(async () => {
        const row = svc.repo.get(r.project, r.dest);
        // A copy being made here right now belongs to a move that runs (a later one): not ours.
        svc.assertNotCreating(r.project, r.dest, "delete");
        if (row && sameInstance(row)) await svc.runtime.serialize(r.project, r.dest, () => svc.destroy(row));
      });
    } else {
      await cluster.peers().call(copy!.node, "DELETE", apiUrl(r.project, "instances", r.dest));
    }
  } else if (!original && sameInstance(copy) && r.final !== r.dest && !svc.repo.get(r.project, r.final)) {
    // The source deleted the original: the copy is whole, and becomes the instance.
    if (copy!.node === me) {
      await cluster.withWriteLock(() => svc.rename(r.project, r.dest, r.final, { applyTemplate: false }));
    } else {
      await cluster.peers().call(copy!.node, "POST", apiUrl(r.project, "instances", r.dest), { name: r.final });
    }
  }
  await cluster.withWriteLock(async () => journal.remove(r.project, r.name));
  return true;
}

/** Settle every record in `records`, each on its own (a failure leaves that one for later). */
export async function settleAll(d: SettleDeps, records: MoveRecord[], log?: { warn(o: object, m: string): void }): Promise<number> {
  let settled = 0;
  for (const r of records) {
    try {
      if (await settleMove(d, r)) settled++;
    } catch (err) {
      log?.warn({ err, project: r.project, instance: r.name, copy: r.dest }, "cannot settle an interrupted move yet");
    }
  }
  return settled;
}
