// The in-process event hub behind GET /1.0/events.
import { currentRequestor } from "./request-context.js";
import type { EventRequestor, EventType, LxdEvent } from "./types.js";

export interface EventFilter {
  types: Set<EventType>;
  /** undefined = all projects */
  project?: string;
  /**
   * A restricted client: only events of these projects reach it, and never those published
   * as admin-only (e.g. certificate token operations, whose metadata holds a secret).
   */
  projects?: Set<string>;
}

export interface PublishOptions {
  /** Only unrestricted clients may receive it. */
  adminOnly?: boolean;
}

export interface Subscriber {
  filter: EventFilter;
  send(event: LxdEvent, encoded: string): void;
}

export class EventHub {
  private readonly subscribers = new Set<Subscriber>();
  /** The cluster member name events carry ("none" standalone). */
  location = "none";
  /** Sees every event published here (not delivered ones): a cluster member relays them to the others. */
  tap?: (event: LxdEvent, opts: PublishOptions) => void;

  subscribe(sub: Subscriber): () => void {
    this.subscribers.add(sub);
    return () => this.subscribers.delete(sub);
  }

  get size(): number {
    return this.subscribers.size;
  }

  publish(type: EventType, metadata: unknown, project?: string, opts: PublishOptions = {}): void {
    if (this.subscribers.size === 0 && !this.tap) return;
    const event: LxdEvent = { type, timestamp: new Date().toISOString(), metadata, location: this.location };
    if (project !== undefined) event.project = project;
    this.tap?.(event, opts);
    this.deliver(event, opts);
  }

  /** Hand an event (made here or relayed from another member) to the subscribers it is for. */
  deliver(event: LxdEvent, opts: PublishOptions = {}): void {
    if (this.subscribers.size === 0) return;
    const { type, project } = event;
    const encoded = JSON.stringify(event);
    for (const sub of this.subscribers) {
      if (!sub.filter.types.has(type)) continue;
      if (sub.filter.project !== undefined && project !== undefined && sub.filter.project !== project) continue;
      const allowed = sub.filter.projects;
      if (allowed && (opts.adminOnly || project === undefined || !allowed.has(project))) continue;
      sub.send(event, encoded);
    }
  }

  /** A lifecycle event, e.g. lifecycle("instance-created", "/1.0/instances/c1"). */
  lifecycle(action: string, source: string, opts: { project?: string; context?: Record<string, unknown>; requestor?: EventRequestor } = {}): void {
    const metadata: Record<string, unknown> = { action, source };
    if (opts.context && Object.keys(opts.context).length > 0) metadata.context = opts.context;
    const requestor = opts.requestor ?? currentRequestor();
    if (requestor) metadata.requestor = requestor;
    this.publish("lifecycle", metadata, opts.project ?? "default");
  }
}
