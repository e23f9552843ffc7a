// Leadership for cluster-wide background work (image auto-update and cache expiry, snapshot
// schedules of objects no single member owns, ...): an etcd election (etcd3's `Election`, on a
// lease of LEASE_TTL seconds). Every member campaigns; the one elected runs the leader-only
// tasks. A leader killed with -9 stops renewing its lease, etcd drops its campaign key when the
// lease expires, and the next candidate in line is elected — no manual step. A campaign that
// fails (etcd unreachable, lease lost) is restarted after a pause; until then this member does
// not lead. Every member also observes the election, to show the leader's `database-leader` role.
import { Election, type Campaign, type Etcd3, type ElectionObserver } from "etcd3";
import type { Logger } from "pino";
import { PREFIX } from "./store.js";

/** Seconds a dead leader keeps leadership at most. */
export const LEASE_TTL = 5;
const RETRY_MS = 1_000;

export class Leadership {
  private readonly election: Election;
  private campaign?: Campaign;
  private observer?: ElectionObserver;
  private leading = false;
  private current: string | undefined;
  private stopped = false;
  private retry?: NodeJS.Timeout;
  private listeners: ((leading: boolean) => void)[] = [];

  constructor(
    client: Etcd3,
    private readonly member: () => string,
    private readonly log: Logger,
  ) {
    this.election = new Election(client.namespace(PREFIX), "leader", LEASE_TTL);
  }

  /** Whether this member leads now. */
  isLeader(): boolean {
    return this.leading;
  }

  /** The leading member as last observed (undefined while there is none). */
  leader(): string | undefined {
    return this.leading ? this.member() : this.current;
  }

  /** Called with true when this member becomes the leader, false when it stops leading. */
  onChange(fn: (leading: boolean) => void): void {
    this.listeners.push(fn);
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.run();
    await this.observe();
  }

  private async observe(): Promise<void> {
    try {
      const obs = await this.election.observe();
      this.observer = obs;
      this.current = obs.leader();
      obs.on("change", (v) => (this.current = v));
      obs.on("error", () => undefined);
      obs.on("disconnected", () => undefined);
    } catch (err) {
      this.log.warn({ err }, "cannot observe the cluster leader election");
    }
  }

  private set(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.log.info({ member: this.member(), leading }, leading ? "cluster leader: this member" : "cluster leader: no longer this member");
    for (const fn of this.listeners) {
      try {
        fn(leading);
      } catch (err) {
        this.log.warn({ err }, "leadership listener failed");
      }
    }
  }

  private run(): void {
    if (this.stopped) return;
    const c = this.election.campaign(this.member());
    this.campaign = c;
    c.on("elected", () => {
      if (this.campaign === c && !this.stopped) this.set(true);
    });
    c.on("error", (err: Error) => {
      if (this.campaign !== c) return;
      this.log.warn({ err: err.message }, "cluster leader campaign failed; campaigning again");
      this.set(false);
      this.campaign = undefined;
      c.resign().catch(() => undefined);
      this.retry = setTimeout(() => this.run(), RETRY_MS);
      this.retry.unref();
    });
  }

  /** Campaign again under a new name (after a rename of this member). */
  async rename(): Promise<void> {
    await this.campaign?.proclaim(this.member()).catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const c = this.campaign;
    this.campaign = undefined;
    this.set(false);
    await c?.resign().catch(() => undefined);
    await this.observer?.cancel().catch(() => undefined);
  }
}
