// What the cluster keeps in etcd, under one prefix (/nodelxd/):
//   log/<index>        the ordered statement log: one committed group of global writes per entry,
//                      appended with a revision-guarded txn (create-only key), never rewritten
//   snapshot           every global table at some log index (bootstrap, compaction, joins)
//   members/<name>     member records (url, roles, failure domain, state)
//   alive/<name>       heartbeats, on a lease: gone when a member stops renewing it
//   tokens/<name>      pending join tokens (secret, expiry)
//   lock/global        the write lock (etcd's lock recipe) serialising mutating requests
//   events/<name>      each member's latest event (watched by every member for /1.0/events)
//   election/leader/   the leader election of background tasks (leader.ts)
//   groups/<name>      cluster groups (name, description; membership is in the member records)
//   operations/<id>    the member an operation lives on (on the member's heartbeat lease)
//   runs/<subject>     the last minute a scheduled snapshot of <subject> was claimed (cluster-wide)
import type { Etcd3, Lease, Lock, Watcher } from "etcd3";
import { etcd3 } from "./etcd.js";

export const PREFIX = "/nodelxd/";
/** The write lock's key and lease: a member that dies holding the lock frees it within this many seconds. */
export const WRITE_LOCK_KEY = `${PREFIX}lock/global`;
export const WRITE_LOCK_TTL_SECONDS = 8;
const LOG = `${PREFIX}log/`;
const pad = (n: number) => String(n).padStart(14, "0");
export const logKey = (index: number) => LOG + pad(index);
export const indexOfKey = (key: string) => Number(key.slice(LOG.length));

export interface LogEntry {
  /** The member that wrote it. */
  member: string;
  /** Unique id, so the writer recognises its own entry on the watch. */
  id: string;
  stmts: [string, unknown[] | null][];
}

export interface Snapshot {
  index: number;
  tables: Record<string, Record<string, unknown>[]>;
}

export interface MemberRecord {
  name: string;
  url: string;
  description: string;
  roles: string[];
  failure_domain: string;
  groups: string[];
  config: Record<string, string>;
  /** "evacuated" while evacuated. */
  state: "" | "evacuated";
  /** Certificate fingerprint of the member (its own server certificate). */
  fingerprint: string;
}

export interface GroupRecord {
  name: string;
  description: string;
}

export interface JoinToken {
  name: string;
  secret: string;
  expires_at: string;
}

export class ClusterStore {
  readonly client: Etcd3;
  private heartbeatLease?: Lease;

  constructor(readonly endpoints: string[]) {
    this.client = new (etcd3().Etcd3)({ hosts: endpoints, dialTimeout: 3_000 });
  }

  close(): void {
    this.heartbeatLease?.release();
    this.client.close();
  }

  // ---- statement log ----

  /** The last log index (0 when empty) and the etcd revision the answer was read at. */
  async head(): Promise<{ index: number; revision: string }> {
    const r = await this.client.getAll().prefix(LOG).sort("Key", "Descend").limit(1).exec();
    const last = r.kvs[0];
    return { index: last ? indexOfKey(last.key.toString()) : 0, revision: String(r.header.revision) };
  }

  /** Entries with index > `after`, in order, and the revision they were read at. */
  async entriesAfter(after: number): Promise<{ entries: { index: number; entry: LogEntry }[]; revision: string }> {
    const r = await this.client.getAll().prefix(LOG).sort("Key", "Ascend").exec();
    const entries = r.kvs
      .map((kv) => ({ index: indexOfKey(kv.key.toString()), entry: JSON.parse(kv.value.toString()) as LogEntry }))
      .filter((e) => e.index > after);
    return { entries, revision: String(r.header.revision) };
  }

  /** Append at exactly `index`; false when that index is taken (someone else wrote first). */
  async append(index: number, entry: LogEntry): Promise<boolean> {
    const key = logKey(index);
    const r = await this.client.if(key, "Create", "==", 0).then(this.client.put(key).value(JSON.stringify(entry))).commit();
    return r.succeeded;
  }

  /** Watch log appends from `revision` on. */
  async watchLog(fromRevision: string, onEntry: (index: number, entry: LogEntry) => void): Promise<Watcher> {
    const w = await this.client.watch().prefix(LOG).startRevision(fromRevision).create();
    w.on("put", (kv) => onEntry(indexOfKey(kv.key.toString()), JSON.parse(kv.value.toString()) as LogEntry));
    return w;
  }

  /** Drop log entries up to `index` (they are in the snapshot). */
  async compact(index: number): Promise<void> {
    const keys = await this.client.getAll().prefix(LOG).keys();
    const old = keys.filter((k) => indexOfKey(k) <= index);
    for (const k of old) await this.client.delete().key(k);
  }

  async snapshot(): Promise<Snapshot | undefined> {
    const raw = await this.client.get(`${PREFIX}snapshot`).string();
    return raw ? (JSON.parse(raw) as Snapshot) : undefined;
  }

  async putSnapshot(s: Snapshot): Promise<void> {
    await this.client.put(`${PREFIX}snapshot`).value(JSON.stringify(s));
  }

  /**
   * Take the cluster-wide write lock, waiting while another member holds it (etcd3's acquire is a
   * try-lock: retried with a short backoff); resolves with its release.
   */
  async lock(timeoutMs = 300_000): Promise<() => Promise<void>> {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      const lock: Lock = this.client.lock(WRITE_LOCK_KEY).ttl(WRITE_LOCK_TTL_SECONDS);
      try {
        await lock.acquire();
        return async () => {
          await lock.release().catch(() => undefined);
        };
      } catch (err) {
        if (!(err instanceof etcd3().EtcdLockFailedError) || Date.now() > deadline) throw err;
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  // ---- members ----

  async members(): Promise<MemberRecord[]> {
    const all = await this.client.getAll().prefix(`${PREFIX}members/`).strings();
    return Object.values(all)
      .map((v) => JSON.parse(v) as MemberRecord)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async member(name: string): Promise<MemberRecord | undefined> {
    const raw = await this.client.get(`${PREFIX}members/${name}`).string();
    return raw ? (JSON.parse(raw) as MemberRecord) : undefined;
  }

  /** Create a member record; false if the name is taken. */
  async addMember(m: MemberRecord): Promise<boolean> {
    const key = `${PREFIX}members/${m.name}`;
    const r = await this.client.if(key, "Create", "==", 0).then(this.client.put(key).value(JSON.stringify(m))).commit();
    return r.succeeded;
  }

  async putMember(m: MemberRecord): Promise<void> {
    await this.client.put(`${PREFIX}members/${m.name}`).value(JSON.stringify(m));
  }

  async renameMember(from: string, to: MemberRecord): Promise<boolean> {
    const key = `${PREFIX}members/${to.name}`;
    const r = await this.client
      .if(key, "Create", "==", 0)
      .then(this.client.put(key).value(JSON.stringify(to)), this.client.delete().key(`${PREFIX}members/${from}`), this.client.delete().key(`${PREFIX}alive/${from}`))
      .commit();
    return r.succeeded;
  }

  async removeMember(name: string): Promise<void> {
    await this.client.delete().key(`${PREFIX}members/${name}`);
    await this.client.delete().key(`${PREFIX}alive/${name}`);
  }

  /** Heartbeats (member name → last beat, ms since epoch). */
  async heartbeats(): Promise<Map<string, number>> {
    const all = await this.client.getAll().prefix(`${PREFIX}alive/`).strings();
    return new Map(Object.entries(all).map(([k, v]) => [k.slice(`${PREFIX}alive/`.length), Number(v)]));
  }

  /** Renew this member's heartbeat (on a lease, so a member gone for long disappears from alive/). */
  async beat(name: string, ttlSeconds: number): Promise<void> {
    if (!this.heartbeatLease) {
      const lease = this.client.lease(ttlSeconds);
      lease.on("lost", () => {
        if (this.heartbeatLease === lease) this.heartbeatLease = undefined;
      });
      this.heartbeatLease = lease;
    }
    await this.heartbeatLease.put(`${PREFIX}alive/${name}`).value(String(Date.now()));
  }

  // ---- join tokens ----

  async putToken(t: JoinToken): Promise<void> {
    await this.client.put(`${PREFIX}tokens/${t.name}`).value(JSON.stringify(t));
  }

  async tokens(): Promise<JoinToken[]> {
    const all = await this.client.getAll().prefix(`${PREFIX}tokens/`).strings();
    return Object.values(all).map((v) => JSON.parse(v) as JoinToken);
  }

  /** Take (consume) a token by name and secret: true once, false if unknown, used or wrong. */
  async consumeToken(name: string, secret: string): Promise<boolean> {
    const key = `${PREFIX}tokens/${name}`;
    const r = await this.client.get(key).exec();
    const kv = r.kvs[0];
    if (!kv) return false;
    const t = JSON.parse(kv.value.toString()) as JoinToken;
    if (t.secret !== secret || Date.parse(t.expires_at) < Date.now()) return false;
    const d = await this.client.if(key, "Mod", "==", String(kv.mod_revision)).then(this.client.delete().key(key)).commit();
    return d.succeeded;
  }

  async deleteToken(name: string): Promise<void> {
    await this.client.delete().key(`${PREFIX}tokens/${name}`);
  }

  /** Whether anything of a cluster is stored (a second bootstrap on the same etcd is refused). */
  async initialised(): Promise<boolean> {
    const r = await this.client.getAll().prefix(`${PREFIX}members/`).count();
    return r > 0;
  }

  // ---- cluster groups ----

  async groups(): Promise<GroupRecord[]> {
    const all = await this.client.getAll().prefix(`${PREFIX}groups/`).strings();
    return Object.values(all).map((v) => JSON.parse(v) as GroupRecord);
  }

  /** Create a group record; false if the name is taken. */
  async addGroup(g: GroupRecord): Promise<boolean> {
    const key = `${PREFIX}groups/${g.name}`;
    const r = await this.client.if(key, "Create", "==", 0).then(this.client.put(key).value(JSON.stringify(g))).commit();
    return r.succeeded;
  }

  async putGroup(g: GroupRecord): Promise<void> {
    await this.client.put(`${PREFIX}groups/${g.name}`).value(JSON.stringify(g));
  }

  async deleteGroup(name: string): Promise<void> {
    await this.client.delete().key(`${PREFIX}groups/${name}`);
  }

  // ---- operation index ----

  /** Record where operation `id` lives (on the heartbeat lease: a dead member's entries expire). */
  async indexOperation(id: string, member: string): Promise<void> {
    const key = `${PREFIX}operations/${id}`;
    if (this.heartbeatLease) await this.heartbeatLease.put(key).value(member);
    else await this.client.put(key).value(member);
  }

  async unindexOperation(id: string): Promise<void> {
    await this.client.delete().key(`${PREFIX}operations/${id}`);
  }

  /** The member operation `id` lives on, if any member has it. */
  async operationMember(id: string): Promise<string | undefined> {
    return (await this.client.get(`${PREFIX}operations/${id}`).string()) ?? undefined;
  }

  // ---- scheduled runs ----

  /**
   * Claim `subject`'s scheduled run for `minute` cluster-wide: true only for the first claim of
   * that minute (a revision-guarded txn, so two members, or a leader and its successor, never both win).
   */
  async claimRun(subject: string, minute: number): Promise<boolean> {
    const key = `${PREFIX}runs/${subject}`;
    for (;;) {
      const r = await this.client.get(key).exec();
      const kv = r.kvs[0];
      if (kv && Number(kv.value.toString()) >= minute) return false;
      const guard = kv ? this.client.if(key, "Mod", "==", String(kv.mod_revision)) : this.client.if(key, "Create", "==", 0);
      const t = await guard.then(this.client.put(key).value(String(minute))).commit();
      if (t.succeeded) return true;
    }
  }

  // ---- events ----

  async publishEvent(member: string, event: unknown): Promise<void> {
    await this.client.put(`${PREFIX}events/${member}`).value(JSON.stringify(event));
  }

  async watchEvents(onEvent: (member: string, event: unknown) => void): Promise<Watcher> {
    const w = await this.client.watch().prefix(`${PREFIX}events/`).create();
    w.on("put", (kv) => onEvent(kv.key.toString().slice(`${PREFIX}events/`.length), JSON.parse(kv.value.toString())));
    return w;
  }
}
