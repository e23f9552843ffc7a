// The one snapshot scheduler: every minute (and once at start, for the current minute) it
// takes the scheduled snapshots that are due and prunes expired ones, for every source
// (instances, custom volumes). A run is claimed in the database before it is taken, so a
// schedule never runs twice for one minute, even across a restart or a crash; a crash after
// the claim loses that minute's snapshot rather than taking it twice.
//
// In a cluster every member runs this scheduler: a subject living on a member (an instance) is
// taken by that member, one that no member owns (a custom volume) by the cluster leader only
// (the etcd election, cluster/leader.ts), and the claim is made cluster-wide in etcd, so a
// leader and its successor after a failover never both take one minute's snapshot.
import type { Logger } from "pino";
import type { Db } from "../db/database.js";
import type { ClusterPort, ScheduledSubject, SnapshotScheduleSource } from "../ports.js";
import { scheduleIsDue } from "./cron.js";

const MINUTE = 60_000;

export interface SnapshotSchedulerDeps {
  db: Db;
  log: Logger;
  /** Standalone: not clustered, leads and owns everything, the write lock runs at once. */
  cluster: Pick<ClusterPort, "clustered" | "leads" | "owns" | "claimRun" | "withWriteLock">;
}

export class SnapshotScheduler {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly deps: SnapshotSchedulerDeps,
    private readonly sources: () => SnapshotScheduleSource[],
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether `subject`'s snapshots are taken on this member. */
  private runsHere(subject: ScheduledSubject): boolean {
    const cluster = this.deps.cluster;
    return subject.member === undefined ? cluster.leads() : cluster.owns(subject.member);
  }

  /** Claim a run: in the cluster's etcd when clustered, else in the local table. */
  private async claimHere(subject: string, minute: number): Promise<boolean> {
    const cluster = this.deps.cluster;
    if (cluster.clustered()) return this.claim(subject, minute) && (await cluster.claimRun(subject, minute));
    return this.claim(subject, minute);
  }

  /** In a cluster, background writes take the cluster write lock, as requests do. */
  private locked(fn: () => Promise<void>): Promise<void> {
    return this.deps.cluster.withWriteLock(fn);
  }

  /** Claim `subject`'s run for `minute`: true only for the first claim of that minute. */
  claim(subject: string, minute: number): boolean {
    const r = this.deps.db
      .prepare(
        `INSERT INTO snapshot_schedule_runs (subject, last_minute) VALUES (?, ?)
         ON CONFLICT (subject) DO UPDATE SET last_minute = excluded.last_minute WHERE last_minute < excluded.last_minute`,
      )
      .run(subject, minute);
    return r.changes === 1;
  }

  /** Subjects due in the minute starting at `minute` * 60 s. */
  due(minute: number): ScheduledSubject[] {
    const date = new Date(minute * MINUTE);
    return this.sources()
      .flatMap((s) => s.scheduled())
      .filter((s) => scheduleIsDue(s.schedule, s.id, date));
  }

  /** One pass: take what is due this minute (claimed first), then prune expired snapshots. */
  async tick(): Promise<void> {
    const minute = Math.floor(this.now() / MINUTE);
    for (const subject of this.due(minute)) {
      if (this.stopped) return;
      if (!this.runsHere(subject)) continue;
      let claimed: boolean;
      try {
        claimed = await this.claimHere(subject.key, minute);
      } catch (e) {
        this.deps.log.warn({ err: e, subject: subject.key }, "cannot claim a scheduled snapshot run");
        continue;
      }
      if (!claimed) continue;
      try {
        await this.locked(() => subject.take());
      } catch (e) {
        this.deps.log.warn({ err: e, subject: subject.key }, "scheduled snapshot failed");
      }
    }
    for (const source of this.sources()) {
      if (this.stopped) return;
      // Each member prunes what lives on it; what no member owns is pruned by the leader.
      if (!source.prunesOwn && !this.deps.cluster.leads()) continue;
      await this.locked(() => source.pruneExpired()).catch((e) => this.deps.log.warn({ err: e }, "pruning expired snapshots failed"));
    }
  }

  start(): void {
    this.stopped = false;
    const schedule = () => {
      if (this.stopped) return;
      // A second into the next minute, so a clock a little behind still lands in that minute.
      const wait = MINUTE - (this.now() % MINUTE) + 1000;
      this.timer = setTimeout(() => {
        this.running = this.tick().finally(schedule);
      }, wait);
      this.timer.unref();
    };
    this.running = this.tick().finally(schedule);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => {});
  }
}
