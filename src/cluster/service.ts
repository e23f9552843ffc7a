// Clustering: this member's membership (resumed at start, heartbeats, instance status reports,
// events relayed through etcd), the ClusterPort other features use, and talking to the other
// members. Its parts: enrolment.ts (enabling, join tokens, joining), members.ts (the member
// list, placement, evacuation), groups.ts. Global state replication is replica.ts; the etcd
// layout is store.ts; forwarding and the write lock are router.ts.
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { Logger } from "pino";
import { BadRequest, InternalError } from "../shared/errors.js";
import { setLocalMember, type Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import type { OperationManager } from "../operations/manager.js";
import type { LxdEvent, OperationView } from "../operations/types.js";
import { certFingerprint, type KeyPair } from "../daemon/certificates.js";
import type { Paths } from "../daemon/paths.js";
import type { ServerService } from "../daemon/server-service.js";
import type { TrustStore } from "../daemon/trust.js";
import type { ClusterPort } from "../ports.js";
import { FORWARDED_FOR, LOCAL_ONLY, memberRequest, type MemberTls } from "./forward.js";
import type { ServerAddress } from "../images/remote/types.js";
import type { Requestor } from "../shared/requestor.js";
import { localGet, localSet, Replica } from "./replica.js";
import { ClusterStore } from "./store.js";
import { Leadership } from "./leader.js";
import { ClusterGroups } from "./groups.js";
import { ClusterEnrolment } from "./enrolment.js";
import { ClusterMembers } from "./members.js";
import { MemberPeers } from "./peers.js";
import { RequestLock } from "./request-lock.js";
import { currentWriteLock, insideWriteLock, runHoldingWriteLock } from "../shared/write-lock.js";

export interface ClusterDeps {
  paths: Paths;
  db: Db;
  log: Logger;
  events: EventHub;
  operations: OperationManager;
  server: ServerService;
  trust: TrustStore;
  keypair: KeyPair;
  architecture: string;
  /** `--etcd-endpoints`: where a first member finds etcd (joiners learn it from the cluster). */
  etcdEndpoints: string[];
  /** Serve another TLS certificate (the cluster's). */
  setTls(tls: { cert: string; key: string }): Promise<void>;
  /** Bring up the cluster's storage pools on this member (a joiner); returns each pool's local source. */
  adoptPools(): Promise<Record<string, string>>;
  /** A first member: its volumes on pools that are not shared become its own. */
  claimLocalVolumes(member: string): void;
  /** Statuses of the instances living on this member ("project/name" → status). */
  localStatuses(): Record<string, string>;
}

/** Instance statuses each member reports for its own instances. */
type StatusReport = Record<string, string>;

export class ClusterService implements ClusterPort {
  private member = "";
  store?: ClusterStore;
  replica?: Replica;
  private tlsPair?: KeyPair;
  private heartbeat?: NodeJS.Timeout;
  /** Last known instance statuses of other members ("project/name" → status), per member. */
  private reports = new Map<string, StatusReport>();
  leadership?: Leadership;
  private leaderListeners: ((leading: boolean) => void)[] = [];
  private replicatedListeners: ((tables: Set<string>) => void)[] = [];

  readonly groups: ClusterGroups;
  /** The member list: views, placement, edits, evacuation. */
  readonly members: ClusterMembers;
  /** Enabling clustering, join tokens, joining. */
  readonly enrolment: ClusterEnrolment;

  constructor(private readonly d: ClusterDeps) {
    // Which rows are this member's own (custom volumes on local pools) is known from the start:
    // the features recover their state before the member reconnects.
    const name = localGet(d.db, "member_name");
    if (name) setLocalMember(d.db, name);
    this.groups = new ClusterGroups(this, d.events);
    this.members = new ClusterMembers(
      {
        name: () => this.member,
        requireStore: () => this.requireStore(),
        tls: () => this.tls(),
        leader: () => this.leadership?.leader(),
        offlineThreshold: () => this.offlineThreshold(),
        renamedSelf: (to) => this.renamedSelf(to),
      },
      { db: d.db, architecture: d.architecture, groupMembers: (group) => this.groups.membersOf(group) },
    );
    this.enrolment = new ClusterEnrolment(
      {
        clustered: () => this.clustered(),
        requireStore: () => this.requireStore(),
        certificate: () => this.certificate(),
        connectAs: (name, endpoints, opts) => this.connectAs(name, endpoints, opts),
        members: () => this.members.list(),
      },
      d,
    );
  }

  /**
   * Whether this member runs the cluster's leader-only background tasks: always on a standalone
   * daemon; on a member, only while it holds the etcd election (never before it reconnected).
   */
  leads(): boolean {
    if (!this.member) return localGet(this.d.db, "member_name") === undefined;
    return this.leadership?.isLeader() ?? false;
  }

  /** Whether work on an object living on member `node` runs here ("" is this daemon when standalone). */
  owns(node: string): boolean {
    if (!this.member) return !this.isMember();
    return node === this.member;
  }

  isMember(): boolean {
    return !!this.member || localGet(this.d.db, "member_name") !== undefined;
  }

  settleLeftovers(what: string, fn: (here: (node: string) => boolean) => Promise<void>): void {
    if (!this.isMember()) return;
    if (!this.clustered()) {
      this.d.log.warn(`not back in the cluster: ${what} left half done by a crash are left for the next start`);
      return;
    }
    const here = (node: string) => this.owns(node);
    void this.withWriteLock(() => fn(here)).catch((err) => this.d.log.warn({ err }, `settling ${what} left half done by a crash failed`));
  }

  /**
   * Run background work that writes global state under the cluster write lock, as a request
   * would (router.ts): caught up with the log first, its writes appended before the lock is
   * released, so the log order is this member's order for them too. Within work that holds it
   * already (a request, or an outer call) it just runs, taking it again if that work is in a
   * stretch outside it (the etcd lock is not re-entrant).
   */
  async withWriteLock<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.clustered()) return fn();
    if (currentWriteLock()) return insideWriteLock(fn);
    const lock = await this.takeWriteLock();
    try {
      return await runHoldingWriteLock(lock, fn);
    } finally {
      await lock.end().catch(() => undefined);
    }
  }

  /** The cluster-wide write lock for one request or job, held and caught up. */
  takeWriteLock(): Promise<RequestLock> {
    const replica = this.replica!;
    return RequestLock.take({ take: () => this.requireStore().lock(), catchUp: () => replica.catchUp(), flush: () => replica.flush() });
  }

  /** Claim a scheduled run cluster-wide (see ClusterStore.claimRun). */
  async claimRun(subject: string, minute: number): Promise<boolean> {
    return this.requireStore().claimRun(subject, minute);
  }

  private memberPeers?: MemberPeers;

  peers(): MemberPeers {
    return (this.memberPeers ??= new MemberPeers(this.members, () => this.tls()));
  }

  /** Be told when this member starts or stops leading. */
  onReplicated(fn: (tables: Set<string>) => void): void {
    this.replicatedListeners.push(fn);
  }

  onLeadership(fn: (leading: boolean) => void): void {
    this.leaderListeners.push(fn);
    this.leadership?.onChange(fn);
  }

  clustered(): boolean {
    return this.member !== "";
  }

  name(): string {
    return this.member;
  }

  /** The certificate members present to each other (the cluster's once clustered). */
  tls(): MemberTls {
    const kp = this.tlsPair ?? this.d.keypair;
    return { cert: kp.cert, key: kp.key, fingerprint: kp.fingerprint };
  }

  certificate(): KeyPair {
    return this.tlsPair ?? this.d.keypair;
  }

  poolSource(pool: string): string | undefined {
    // Read before start() too: a joined member's pools are brought up before it reconnects.
    return localGet(this.d.db, `pool_source:${pool}`);
  }

  remoteStatus(project: string, name: string, node: string): string | undefined {
    return this.reports.get(node)?.[`${project}/${name}`];
  }

  /** Resume membership after a restart. */
  async start(): Promise<void> {
    const name = localGet(this.d.db, "member_name");
    if (!name) return;
    const endpoints = JSON.parse(localGet(this.d.db, "etcd_endpoints") ?? "[]") as string[];
    // After recover-from-quorum-loss, etcd is the truth: rebuild the replica from it once.
    const fresh = localGet(this.d.db, "reload_replica") === "1";
    await this.connectAs(name, endpoints, { fresh });
    if (fresh) localSet(this.d.db, "reload_replica", "0");
  }

  async stop(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.leadership?.stop();
    await this.replica?.stop();
    this.store?.close();
  }

  private loadClusterCert(): void {
    const cert = readFileSync(this.d.paths.clusterCert, "utf8");
    const key = readFileSync(this.d.paths.clusterKey, "utf8");
    this.tlsPair = { cert, key, fingerprint: certFingerprint(cert) };
    this.d.trust.setClusterFingerprint(this.tlsPair.fingerprint);
  }

  /** Become member `name` on the etcd at `endpoints`: the cluster certificate (written by enrolment) loaded, then connected. */
  private async connectAs(name: string, endpoints: string[], opts: { fresh?: boolean }): Promise<void> {
    this.loadClusterCert();
    await this.connect(name, endpoints, opts);
  }

  /** Connect to etcd, replicate, heartbeat: the common tail of bootstrap, join and restart. */
  private async connect(name: string, endpoints: string[], opts: { fresh?: boolean }): Promise<void> {
    const store = new ClusterStore(endpoints);
    const replica = new Replica({
      db: this.d.db,
      store,
      member: () => this.member,
      log: this.d.log,
      onApplied: (tables) => {
        if (tables.has("certificates") || tables.has("*")) this.d.trust.reload();
        if (tables.has("config") || tables.has("*")) this.d.server.reload();
        this.d.server.invalidate();
        for (const fn of this.replicatedListeners) fn(tables);
      },
    });
    this.member = name;
    setLocalMember(this.d.db, name);
    this.store = store;
    this.replica = replica;
    await replica.start(opts);
    this.d.server.setClusterInfo(() => ({ clustered: this.clustered(), name: this.member, certificate: this.certificate() }));
    await this.beat();
    this.heartbeat = setInterval(() => {
      void this.beat();
      void this.publishStatuses();
    }, 2_000);
    // Events: each member relays its lifecycle and operation events (not admin-only ones, whose
    // metadata may hold secrets) through etcd; every member delivers the others' to its listeners.
    this.d.events.location = name;
    this.d.operations.location = name;
    this.d.operations.hooks = {
      created: (id) => void store.indexOperation(id, this.member).catch(() => undefined),
      removed: (id) => void store.unindexOperation(id).catch(() => undefined),
    };
    // Operations a crash of this member's previous daemon interrupted answer (as failed) from any member.
    for (const id of this.d.operations.interrupted()) this.d.operations.hooks.created(id);
    this.d.events.tap = (event, opts) => {
      if (opts.adminOnly || event.type === "logging") return;
      void store.publishEvent(this.member, event).catch(() => undefined);
    };
    await store.watchEvents((member, event) => {
      if (member !== this.member) this.d.events.deliver(event as LxdEvent);
    });
    // Instance state changes here reach the other members' listings at once.
    this.d.events.subscribe({
      filter: { types: new Set(["lifecycle"]) },
      send: (event) => {
        const action = String((event.metadata as { action?: string }).action ?? "");
        if (action.startsWith("instance-")) setTimeout(() => void this.publishStatuses(), 50);
      },
    });
    this.heartbeat.unref();
    const leadership = new Leadership(store.client, () => this.member, this.d.log);
    for (const fn of this.leaderListeners) leadership.onChange(fn);
    this.leadership = leadership;
    await leadership.start();
    const w = await store.client.watch().prefix("/nodelxd/status/").create();
    w.on("put", (kv) => this.reports.set(kv.key.toString().slice("/nodelxd/status/".length), JSON.parse(kv.value.toString())));
    const all = await store.client.getAll().prefix("/nodelxd/status/").strings();
    for (const [k, v] of Object.entries(all)) this.reports.set(k.slice("/nodelxd/status/".length), JSON.parse(v));
  }

  private async beat(): Promise<void> {
    try {
      await this.store?.beat(this.member, 30);
    } catch (err) {
      this.d.log.warn({ err }, "cluster heartbeat failed");
    }
  }

  private lastReport = "";

  /** Publish this member's instance statuses when they changed (lifecycle events, heartbeats). */
  private async publishStatuses(): Promise<void> {
    if (!this.store) return;
    const text = JSON.stringify(this.d.localStatuses());
    if (text === this.lastReport) return;
    this.lastReport = text;
    await this.store.client.put(`/nodelxd/status/${this.member}`).value(text).catch(() => (this.lastReport = ""));
  }

  offlineThreshold(): number {
    return Number(this.d.server.get("cluster.offline_threshold") ?? "20") || 20;
  }

  /** GET /1.0/cluster. */
  view(): { server_name: string; enabled: boolean; member_config: unknown[] } {
    return { server_name: this.member, enabled: this.clustered(), member_config: [] };
  }

  requireStore(): ClusterStore {
    if (!this.store) throw new BadRequest("Server isn't part of a cluster");
    return this.store;
  }

  /** This member was renamed (members.ts): it goes by `to` from now on. */
  private async renamedSelf(to: string): Promise<void> {
    localSet(this.d.db, "member_name", to);
    this.member = to;
    setLocalMember(this.d.db, to);
    this.d.events.location = to;
    this.d.operations.location = to;
    await this.leadership?.rename();
    this.d.server.invalidate();
  }

  // ---- talking to the other members ----

  /** Every member's name, sorted. */
  memberNames(): Promise<string[]> {
    return this.members.names();
  }

  /**
   * Tell member `name` to do its own part of a cluster-wide change (LXD's cluster notification):
   * the request carries the local-only header, is not forwarded or locked there, and writes no
   * global state (the member asked writes it). Resolves with the reply's metadata.
   */
  async notifyMember(name: string, method: string, path: string, body?: unknown): Promise<unknown> {
    const url = await this.members.url(name);
    this.d.log.debug({ member: name, method, path }, "telling a member to do its part");
    const r = await memberRequest(url, this.tls(), method, path, body, { [LOCAL_ONLY]: "1" }).catch((e: Error) => ({ status: 0, body: { error: e.message }, text: "" }));
    if (r.status < 200 || r.status >= 300) throw new InternalError(`Failed to notify peer ${url.replace(/^https:\/\//, "")}: ${r.body?.error ?? r.text}`);
    return r.body?.metadata;
  }

  /** The other online members as LXD image servers: each presents the cluster certificate and is asked with it. */
  async imagePeers(): Promise<ServerAddress[]> {
    const tls = this.tls();
    return (await this.members.othersOnline()).map((m) => ({ server: m.url, certificate: tls.cert, client: { cert: tls.cert, key: tls.key } }));
  }

  /**
   * Operations of every other online member (GET /1.0/operations on one member lists the whole
   * cluster's, as LXD): each is asked for its own only, on behalf of the same client (so a
   * restricted client sees there what it would see here).
   */
  async remoteOperations(query: string, who: Requestor): Promise<OperationView[]> {
    const others = await this.members.othersOnline();
    const headers = this.onBehalfOf(who);
    const lists = await Promise.all(
      others.map(async (m) => {
        const r = await memberRequest(m.url, this.tls(), "GET", `/1.0/operations?${query}`, undefined, headers).catch(() => undefined);
        if (!r || r.status !== 200 || !r.body?.metadata) return [];
        return Object.values(r.body.metadata as Record<string, OperationView[]>).flat();
      }),
    );
    return lists.flat();
  }

  async remoteInstances(query: string, who: Requestor): Promise<Map<string, Record<string, unknown>[]>> {
    const others = await this.members.othersOnline();
    const out = new Map<string, Record<string, unknown>[]>();
    await Promise.all(
      others.map(async (m) => {
        const r = await memberRequest(m.url, this.tls(), "GET", `/1.0/instances?${query}`, undefined, this.onBehalfOf(who)).catch(() => undefined);
        if (r?.status === 200 && Array.isArray(r.body?.metadata)) out.set(m.server_name, r.body.metadata as Record<string, unknown>[]);
      }),
    );
    return out;
  }

  /** Headers of a member's local-only request made for a client (a restricted client stays restricted there). */
  private onBehalfOf(who: Requestor): Record<string, string> {
    const headers: Record<string, string> = { [LOCAL_ONLY]: "1" };
    if (who.protocol === "tls" && who.username !== "cluster" && who.fingerprint) headers[FORWARDED_FOR] = who.fingerprint;
    return headers;
  }

  /** The member url operation `id` lives on (undefined: nowhere known). */
  async operationUrl(id: string): Promise<string | undefined> {
    const member = await this.requireStore().operationMember(id);
    if (!member || member === this.member) return undefined;
    return this.members.url(member).catch(() => undefined);
  }

  /**
   * PUT /1.0/cluster/certificate: replace the cluster certificate and key on every member (as
   * LXD: the member asked tells every other member first, with the old certificate, then itself;
   * a member told by another only replaces its own). Any member that cannot be told fails the
   * request before this member changes.
   */
  async replaceCertificate(cert: string, key: string, notified: boolean): Promise<void> {
    this.requireStore();
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(cert);
    } catch {
      throw new BadRequest("Certificate must be base64 encoded PEM certificate: <nil>");
    }
    let pk: KeyObject;
    try {
      pk = createPrivateKey(key);
    } catch {
      throw new BadRequest("Private key must be base64 encoded PEM key: <nil>");
    }
    if (!x509.checkPrivateKey(pk)) throw new BadRequest("tls: private key does not match public key");
    if (!notified) {
      const others = (await this.members.list()).filter((m) => m.server_name !== this.member);
      for (const m of others) {
        const r = await memberRequest(m.url, this.tls(), "PUT", "/1.0/cluster/certificate", { cluster_certificate: cert, cluster_certificate_key: key }, { [LOCAL_ONLY]: "1" }).catch(
          (e: Error) => ({ status: 0, body: { error: e.message }, text: "" }),
        );
        if (r.status !== 200) throw new InternalError(`Failed to update the certificate of cluster member "${m.server_name}": ${r.body?.error ?? r.text}`);
      }
    }
    writeFileSync(`${this.d.paths.clusterCert}.new`, cert, { mode: 0o644 });
    writeFileSync(`${this.d.paths.clusterKey}.new`, key, { mode: 0o600 });
    renameSync(`${this.d.paths.clusterKey}.new`, this.d.paths.clusterKey);
    renameSync(`${this.d.paths.clusterCert}.new`, this.d.paths.clusterCert);
    this.loadClusterCert();
    this.d.server.invalidate();
    // New handshakes get it; this reply still travels on the open connection.
    await this.d.setTls(this.tlsPair!);
    this.d.events.lifecycle("cluster-certificate-updated", "/1.0/cluster/certificate");
  }
}
