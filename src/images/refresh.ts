// Image freshness, as LXD's autoUpdateImage and pruneExpiredImages: an image with a recorded
// source is pulled again by its alias; a new fingerprint replaces it (cached flag and last use
// carried over, aliases moved, the old image deleted, "image-refreshed"). Background tasks:
// auto-update at start and every images.auto_update_interval hours (0: never), expiry of cached images
// unused for images.remote_cache_expiry days (at start, daily). A change of either key runs
// its task at once (the keys are re-read every few seconds: no per-request work).
import type { Logger } from "pino";
import { asBackgroundTask, inBackgroundTask } from "./background.js";
import type { Requestor } from "../shared/requestor.js";
import type { EventHub } from "../operations/events.js";
import type { ImagePuller } from "./pull.js";
import type { ImageService } from "./service.js";

export interface RefresherDeps {
  images: ImageService;
  puller: ImagePuller;
  events: EventHub;
  log: Logger;
  config: (key: string) => string | undefined;
  /** Whether this daemon runs the background tasks (in a cluster: only the elected leader). */
  leads?: () => boolean;
  /**
   * Run global writes under the cluster write lock (at once standalone, or when the caller holds
   * it already): background refresh and expiry write as a request would.
   */
  writeLock?: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Be told when this member becomes the cluster leader (the tasks then run at once, as at a start). */
  onLeadership?: (fn: (leading: boolean) => void) => void;
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;
const CONFIG_POLL_MS = 3000;

export class ImageRefresher {
  private timers: NodeJS.Timeout[] = [];
  private autoUpdateTimer?: NodeJS.Timeout;
  private lastKeys = { interval: "", expiry: "" };
  private running?: Promise<unknown>;
  private readonly abort = new AbortController();

  constructor(private readonly deps: RefresherDeps) {}

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    return this.deps.writeLock && inBackgroundTask() ? this.deps.writeLock(fn) : fn();
  }

  /**
   * Refresh one image of `project` from its source. Resolves true when a new image replaced it.
   * Download failures are logged and count as "up to date", as LXD's autoUpdateImage does.
   */
  async refresh(project: string, fingerprint: string, opts: { signal?: AbortSignal; onMetadata?: (patch: Record<string, unknown>) => void; requestor?: Requestor } = {}): Promise<boolean | undefined> {
    const { images, puller, log } = this.deps;
    const old = images.find(project, fingerprint);
    if (!old) return undefined;
    const source = images.source(project, fingerprint);
    if (!source) return undefined;
    let fresh;
    try {
      fresh = await puller.pull(project, { server: source.server, protocol: source.protocol, certificate: source.certificate || undefined, alias: source.alias, type: old.type }, {
        autoUpdate: true,
        public: old.public,
        signal: opts.signal,
        onMetadata: opts.onMetadata,
        requestor: opts.requestor,
      });
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      log.error({ err: (e as Error).message, fingerprint }, "Failed to update the image");
      opts.onMetadata?.({ refreshed: false });
      return false;
    }
    if (fresh.fingerprint === fingerprint) {
      opts.onMetadata?.({ refreshed: false });
      return false;
    }
    await this.locked(async () => {
      images.replaceWith(project, old, fresh.fingerprint);
      await images.delete(project, fingerprint, opts.requestor);
    });
    opts.onMetadata?.({ refreshed: true });
    this.deps.events.lifecycle("image-refreshed", `/1.0/images/${fingerprint}`, { project });
    return true;
  }

  /** Every auto-updating image with a source, once. */
  async autoUpdateAll(): Promise<void> {
    for (const row of this.deps.images.withSources()) {
      if (this.abort.signal.aborted) return;
      if (!row.auto_update) continue;
      await this.refresh(row.project, row.fingerprint, { signal: this.abort.signal }).catch((e) => this.deps.log.warn({ err: (e as Error).message }, "image auto-update failed"));
    }
  }

  /** Delete cached images unused for images.remote_cache_expiry days (0: keep). */
  async pruneExpired(): Promise<void> {
    const days = Number(this.deps.config("images.remote_cache_expiry") ?? "10");
    if (!(days > 0)) return;
    const cutoff = Date.now() - days * DAY;
    for (const row of this.deps.images.cachedRows()) {
      const used = Date.parse(row.last_used_at.startsWith("0001-") ? row.uploaded_at : row.last_used_at);
      if (Number.isNaN(used) || used >= cutoff) continue;
      this.deps.log.info({ fingerprint: row.fingerprint, project: row.project }, "Deleting expired cached image");
      await this.locked(() => this.deps.images.delete(row.project, row.fingerprint)).catch((e) => this.deps.log.warn({ err: (e as Error).message }, "expired image deletion failed"));
    }
  }

  /** Run one background job at a time (a leader-only task: skipped on a member that does not lead). */
  private serial(job: () => Promise<void>): void {
    if (this.deps.leads && !this.deps.leads()) return;
    const prev = this.running ?? Promise.resolve();
    this.running = prev.then(() => asBackgroundTask(job)).catch((e) => this.deps.log.warn({ err: (e as Error).message }, "image task failed"));
  }

  private scheduleAutoUpdate(): void {
    if (this.autoUpdateTimer) clearInterval(this.autoUpdateTimer);
    this.autoUpdateTimer = undefined;
    const hours = Number(this.deps.config("images.auto_update_interval") ?? "6");
    if (!(hours > 0)) return;
    this.autoUpdateTimer = setInterval(() => this.serial(() => this.autoUpdateAll()), Math.min(hours * HOUR, 2 ** 31 - 1));
    this.autoUpdateTimer.unref();
  }

  start(): void {
    this.lastKeys = { interval: this.deps.config("images.auto_update_interval") ?? "", expiry: this.deps.config("images.remote_cache_expiry") ?? "" };
    // As LXD: both tasks run once at start (a restart refreshes auto-updating images at once).
    this.serial(() => this.pruneExpired());
    if (Number(this.deps.config("images.auto_update_interval") ?? "6") > 0) this.serial(() => this.autoUpdateAll());
    this.scheduleAutoUpdate();
    this.deps.onLeadership?.((leading) => {
      if (!leading || this.abort.signal.aborted) return;
      this.serial(() => this.pruneExpired());
      if (Number(this.deps.config("images.auto_update_interval") ?? "6") > 0) this.serial(() => this.autoUpdateAll());
    });
    const daily = setInterval(() => this.serial(() => this.pruneExpired()), DAY);
    daily.unref();
    const poll = setInterval(() => {
      const interval = this.deps.config("images.auto_update_interval") ?? "";
      const expiry = this.deps.config("images.remote_cache_expiry") ?? "";
      // As LXD resets the task when the key changes: it runs now, then on the new schedule.
      if (interval !== this.lastKeys.interval) {
        this.scheduleAutoUpdate();
        if (Number(interval || "6") > 0) this.serial(() => this.autoUpdateAll());
      }
      if (expiry !== this.lastKeys.expiry) this.serial(() => this.pruneExpired());
      this.lastKeys = { interval, expiry };
    }, CONFIG_POLL_MS);
    poll.unref();
    this.timers.push(daily, poll);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    for (const t of this.timers) clearInterval(t);
    if (this.autoUpdateTimer) clearInterval(this.autoUpdateTimer);
    await this.running?.catch(() => {});
  }
}
