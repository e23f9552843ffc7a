// Clustering: enabling it on a first member, join tokens, joining, the member list with
// heartbeats, and where an instance lives. Global state replication is replica.ts; the etcd
// layout is store.ts; forwarding and the write lock are router.ts.
import { createPrivateKey, randomBytes, timingSafeEqual, X509Certificate, type KeyObject } from "node:crypto";
import { AsyncLocalStorage } from "node:async_hooks";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import type { Logger } from "pino";
import { BadRequest, Conflict, Forbidden, InternalError, NotFound } from "../shared/errors.js";
import { setLocalMember, type Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import type { OperationManager } from "../operations/manager.js";
import type { LxdEvent, OperationView } from "../operations/types.js";
import { certFingerprint, type KeyPair } from "../daemon/certificates.js";
import type { Paths } from "../daemon/paths.js";
import type { ServerService } from "../daemon/server-service.js";
import type { TrustStore } from "../daemon/trust.js";
import type { ClusterPort } from "../ports.js";
import { FORWARDED_FOR, LOCAL_ONLY, memberRawGet, memberRequest, type MemberTls } from "./forward.js";
import type { Requestor } from "../shared/requestor.js";
import { localGet, localSet, Replica, takeSnapshot } from "./replica.js";
import { ClusterStore, type MemberRecord } from "./store.js";
import { Leadership } from "./leader.js";
import { ClusterGroups } from "./groups.js";
import { apiUrl } from "../shared/urls.js";

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
  /** Statuses of the instances living on this member ("project/name" → status). */
  localStatuses(): Record<string, string>;
}

export interface ClusterPutBody {
  server_name: string;
  enabled: boolean;
  server_address?: string;
  cluster_address?: string;
  cluster_certificate?: string;
  cluster_password?: string;
  member_config?: unknown[];
}

/** Instance statuses each member reports for its own instances. */
type StatusReport = Record<string, string>;

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}$/;

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
  /** Set in the async context of work that holds the cluster write lock (see withWriteLock). */
  private readonly lockHeld = new AsyncLocalStorage<boolean>();

  readonly groups: ClusterGroups;

  constructor(private readonly d: ClusterDeps) {
    this.groups = new ClusterGroups(this, d.events);
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
    if (!this.member) return localGet(this.d.db, "member_name") === undefined;
    return node === this.member;
  }

  /**
   * Run background work that writes global state under the cluster write lock, as a request
   * would (router.ts): caught up with the log first, its writes appended before the lock is
   * released, so the log order is this member's order for them too.
   */
  async withWriteLock<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.clustered()) return fn();
    // Nested in work that took it already (the lock is not re-entrant in etcd).
    if (this.lockHeld.getStore()) return fn();
    const release = await this.requireStore().lock();
    try {
      await this.replica!.catchUp();
      return await this.lockHeld.run(true, fn);
    } finally {
      await this.replica!.flush().catch(() => undefined);
      await release();
    }
  }

  /** Claim a scheduled run cluster-wide (see ClusterStore.claimRun). */
  async claimRun(subject: string, minute: number): Promise<boolean> {
    return this.requireStore().claimRun(subject, minute);
  }

  /** Be told when this member starts or stops leading. */
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
    return this.member ? localGet(this.d.db, `pool_source:${pool}`) : undefined;
  }

  remoteStatus(project: string, name: string, node: string): string | undefined {
    return this.reports.get(node)?.[`${project}/${name}`];
  }

  /** Resume membership after a restart. */
  async start(): Promise<void> {
    const name = localGet(this.d.db, "member_name");
    if (!name) return;
    const endpoints = JSON.parse(localGet(this.d.db, "etcd_endpoints") ?? "[]") as string[];
    this.loadClusterCert();
    // After recover-from-quorum-loss, etcd is the truth: rebuild the replica from it once.
    const fresh = localGet(this.d.db, "reload_replica") === "1";
    await this.connect(name, endpoints, { fresh });
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

  // ---- GET/PUT /1.0/cluster ----

  view(): { server_name: string; enabled: boolean; member_config: unknown[] } {
    return { server_name: this.member, enabled: this.clustered(), member_config: [] };
  }

  /** PUT /1.0/cluster: bootstrap (no cluster_address) or join. Runs as an operation, as LXD. */
  update(body: ClusterPutBody): OperationView {
    if (!body.enabled) throw new BadRequest("Disabling clustering is not supported");
    if (this.clustered()) throw new BadRequest("This server is already clustered");
    const name = body.server_name;
    if (!name || !NAME_RE.test(name)) throw new BadRequest("Invalid server name");
    const joining = !!body.cluster_address;
    return this.d.operations.create({
      class: "task",
      description: joining ? "Joining cluster" : "Creating bootstrap node",
      run: async () => {
        if (joining) await this.join(name, body);
        else await this.bootstrap(name);
        this.d.events.lifecycle(joining ? "cluster-member-added" : "cluster-enabled", `/1.0/cluster/members/${name}`);
      },
    });
  }

  private async bootstrap(name: string): Promise<void> {
    const endpoints = this.d.etcdEndpoints;
    if (endpoints.length === 0) throw new BadRequest("This member has no etcd to cluster on (start it with --etcd-endpoints)");
    const address = this.d.server.get("cluster.https_address") || this.d.server.get("core.https_address");
    if (!address) throw new BadRequest("Can't enable clustering: core.https_address must be set");
    const store = new ClusterStore(endpoints);
    try {
      if (await store.initialised()) throw new Conflict("The etcd cluster already holds a cluster (join it with a token instead)");
      // The first member's certificate becomes the cluster's.
      writeFileSync(this.d.paths.clusterCert, this.d.keypair.cert, { mode: 0o644 });
      writeFileSync(this.d.paths.clusterKey, this.d.keypair.key, { mode: 0o600 });
      this.d.db.transaction(() => {
        this.d.db.prepare("UPDATE instances SET node = ?").run(name);
        localSet(this.d.db, "applied_index", "0");
      })();
      await store.putSnapshot(takeSnapshot(this.d.db, 0));
      const added = await store.addMember(this.record(name, address, ["database"]));
      if (!added) throw new Conflict(`Member "${name}" already exists`);
    } finally {
      store.close();
    }
    this.d.db.transaction(() => {
      localSet(this.d.db, "member_name", name);
      localSet(this.d.db, "etcd_endpoints", JSON.stringify(endpoints));
    })();
    this.loadClusterCert();
    // After recover-from-quorum-loss, etcd is the truth: rebuild the replica from it once.
    const fresh = localGet(this.d.db, "reload_replica") === "1";
    await this.connect(name, endpoints, { fresh });
    if (fresh) localSet(this.d.db, "reload_replica", "0");
  }

  private record(name: string, address: string, roles: string[]): MemberRecord {
    return {
      name,
      url: `https://${address}`,
      description: "",
      roles,
      failure_domain: "default",
      groups: ["default"],
      config: {},
      state: "",
      fingerprint: this.d.keypair.fingerprint,
    };
  }

  private async join(name: string, body: ClusterPutBody): Promise<void> {
    const token = decodeToken(body.cluster_password ?? "");
    if (!token) throw new BadRequest("A join token is required (cluster_password)");
    if (!body.cluster_certificate) throw new BadRequest("The cluster certificate is required");
    const address = body.server_address || this.d.server.get("core.https_address");
    if (!address) throw new BadRequest("The server address is required");
    if (this.d.server.get("core.https_address") !== address) await this.d.server.update({ "core.https_address": address }, "merge");
    const clusterFp = certFingerprint(body.cluster_certificate);
    const own = this.d.keypair;
    const r = await memberRequest(`https://${body.cluster_address}`, { cert: own.cert, key: own.key, fingerprint: clusterFp }, "POST", "/internal/cluster/accept", {
      name,
      secret: token.secret,
      address,
      fingerprint: own.fingerprint,
      architecture: this.d.architecture,
    });
    if (r.status !== 200) throw new BadRequest(`Failed to join cluster: ${r.body?.error ?? r.text}`);
    const accepted = r.body.metadata as { etcd_endpoints: string[]; cluster_cert: string; cluster_key: string };
    writeFileSync(this.d.paths.clusterCert, accepted.cluster_cert, { mode: 0o644 });
    writeFileSync(this.d.paths.clusterKey, accepted.cluster_key, { mode: 0o600 });
    this.d.db.transaction(() => {
      localSet(this.d.db, "member_name", name);
      localSet(this.d.db, "etcd_endpoints", JSON.stringify(accepted.etcd_endpoints));
      localSet(this.d.db, "applied_index", "0");
    })();
    this.loadClusterCert();
    await this.connect(name, accepted.etcd_endpoints, { fresh: true });
    const sources = await this.d.adoptPools();
    for (const [pool, source] of Object.entries(sources)) localSet(this.d.db, `pool_source:${pool}`, source);
    await this.d.setTls(this.tlsPair!);
  }

  /** POST /internal/cluster/accept (from a joining server, not yet trusted): check the secret, add the member. */
  async accept(body: { name?: string; secret?: string; address?: string; fingerprint?: string }): Promise<{ etcd_endpoints: string[]; cluster_cert: string; cluster_key: string }> {
    const store = this.requireStore();
    const { name, secret, address } = body;
    if (typeof name !== "string" || !NAME_RE.test(name) || typeof secret !== "string" || typeof address !== "string") throw new BadRequest("Invalid join request");
    if (!(await store.consumeToken(name, secret))) throw new Forbidden("No valid join token for this member");
    const rec = this.record(name, address, []);
    rec.fingerprint = typeof body.fingerprint === "string" ? body.fingerprint : "";
    if (!(await store.addMember(rec))) throw new Conflict(`The cluster already has a member with name: ${name}`);
    const kp = this.certificate();
    return { etcd_endpoints: store.endpoints, cluster_cert: kp.cert, cluster_key: kp.key };
  }

  requireStore(): ClusterStore {
    if (!this.store) throw new BadRequest("Server isn't part of a cluster");
    return this.store;
  }

  // ---- join tokens ----

  async createToken(name: string): Promise<OperationView> {
    const store = this.requireStore();
    if (!name || !NAME_RE.test(name)) throw new BadRequest("Invalid server name");
    if (await store.member(name)) throw new Conflict(`The cluster already has a member with name: ${name}`);
    if ((await store.tokens()).some((t) => t.name === name)) throw new Conflict(`A join token already exists for the name: ${name}`);
    const secret = randomBytes(32).toString("hex");
    const expiresAt = new Date(Date.now() + 3 * 3600_000);
    await store.putToken({ name, secret, expires_at: expiresAt.toISOString() });
    const online = (await this.members()).filter((m) => m.status === "Online").map((m) => m.url.replace(/^https:\/\//, ""));
    return this.d.operations.create({
      class: "token",
      description: "Requesting a cluster join token",
      adminOnly: true,
      mayCancel: true,
      metadata: { serverName: name, secret, fingerprint: this.certificate().fingerprint, addresses: online, expiresAt: expiresAt.toISOString() },
      run: async (ctx) => {
        // Done when the token is used (by any member accepting the joiner) or expires; cancelling revokes it.
        while (!ctx.signal.aborted && Date.now() < expiresAt.getTime()) {
          await new Promise((r) => setTimeout(r, 1000));
          if (!(await store.tokens().catch(() => [{ name }])).some((t) => t.name === name)) return;
        }
        await store.deleteToken(name).catch(() => undefined);
      },
    });
  }

  // ---- members ----

  async members(): Promise<MemberView[]> {
    const store = this.requireStore();
    const [records, beats] = await Promise.all([store.members(), store.heartbeats()]);
    return records.map((m) => this.memberView(m, beats.get(m.name)));
  }

  async memberGet(name: string): Promise<MemberView> {
    const store = this.requireStore();
    const m = await store.member(name);
    if (!m) throw new NotFound("Member not found");
    return this.memberView(m, (await store.heartbeats()).get(name));
  }

  private memberView(m: MemberRecord, beat: number | undefined): MemberView {
    const threshold = this.offlineThreshold();
    const age = beat === undefined ? Infinity : (Date.now() - beat) / 1000;
    let status = "Online";
    let message = "Fully operational";
    if (m.state === "evacuated") {
      status = "Evacuated";
      message = "Unavailable due to maintenance";
    } else if (age > threshold) {
      status = "Offline";
      message = beat === undefined ? "No heartbeat" : `No heartbeat for ${Math.round(age)}s (${new Date(beat).toISOString()})`;
    }
    return {
      server_name: m.name,
      url: m.url,
      database: m.roles.includes("database"),
      status,
      message,
      architecture: this.d.architecture,
      failure_domain: m.failure_domain,
      description: m.description,
      config: m.config,
      groups: m.groups,
      roles: this.leadership?.leader() === m.name && status === "Online" ? [...m.roles, "database-leader"] : m.roles,
    };
  }

  /** Every member's name, sorted. */
  async memberNames(): Promise<string[]> {
    return (await this.requireStore().members()).map((m) => m.name).sort();
  }

  /**
   * Tell member `name` to do its own part of a cluster-wide change (LXD's cluster notification):
   * the request carries the local-only header, is not forwarded or locked there, and writes no
   * global state (the member asked writes it). Resolves with the reply's metadata.
   */
  async notifyMember(name: string, method: string, path: string, body?: unknown): Promise<unknown> {
    const url = await this.memberUrl(name);
    this.d.log.debug({ member: name, method, path }, "telling a member to do its part");
    const r = await memberRequest(url, this.tls(), method, path, body, { [LOCAL_ONLY]: "1" }).catch((e: Error) => ({ status: 0, body: { error: e.message }, text: "" }));
    if (r.status < 200 || r.status >= 300) throw new InternalError(`Failed to notify peer ${url.replace(/^https:\/\//, "")}: ${r.body?.error ?? r.text}`);
    return r.body?.metadata;
  }

  async memberUrl(name: string): Promise<string> {
    const m = await this.requireStore().member(name);
    if (!m) throw new NotFound("Member not found");
    return m.url;
  }

  /**
   * The online, not evacuated member with the fewest instances (LXD 5.0.2's default placement),
   * among the members of cluster group `group` when given (`--target @group`).
   */
  async schedule(group?: string): Promise<string> {
    const among = group === undefined ? undefined : new Set(await this.groups.membersOf(group));
    const candidates = (await this.members()).filter((m) => m.status === "Online" && (!among || among.has(m.server_name))).map((m) => m.server_name);
    if (candidates.length === 0) throw new BadRequest("No suitable cluster member could be found");
    const counts = new Map((this.d.db.prepare("SELECT node, COUNT(*) AS n FROM instances GROUP BY node").all() as { node: string; n: number }[]).map((r) => [r.node, r.n]));
    return candidates.sort((a, b) => (counts.get(a) ?? 0) - (counts.get(b) ?? 0) || a.localeCompare(b))[0];
  }

  async updateMember(name: string, patch: { description?: string; failure_domain?: string; roles?: string[]; config?: Record<string, string>; groups?: string[] }): Promise<void> {
    const store = this.requireStore();
    const m = await store.member(name);
    if (!m) throw new NotFound("Member not found");
    if (patch.roles !== undefined) patch = { ...patch, roles: editedRoles(m.roles, patch.roles) };
    await store.putMember({ ...m, ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) });
  }

  async renameMember(from: string, to: string): Promise<void> {
    const store = this.requireStore();
    if (!NAME_RE.test(to)) throw new BadRequest("Invalid server name");
    const m = await store.member(from);
    if (!m) throw new NotFound("Member not found");
    if (!(await store.renameMember(from, { ...m, name: to }))) throw new Conflict(`The cluster already has a member with name: ${to}`);
    this.d.db.prepare("UPDATE instances SET node = ? WHERE node = ?").run(to, from);
    // Its pools' and networks' member rows and its custom volumes follow (LXD keys them by member id).
    for (const t of ["storage_pools_members", "networks_members"]) this.d.db.prepare(`UPDATE ${t} SET member = ? WHERE member = ?`).run(to, from);
    this.d.db.prepare("UPDATE storage_volumes SET node = ? WHERE node = ?").run(to, from);
    if (from === this.member) {
      localSet(this.d.db, "member_name", to);
      this.member = to;
      setLocalMember(this.d.db, to);
      this.d.events.location = to;
      this.d.operations.location = to;
      await this.leadership?.rename();
      this.d.server.invalidate();
    }
  }

  async removeMember(name: string, force: boolean): Promise<void> {
    const store = this.requireStore();
    if (!(await store.member(name))) throw new NotFound("Member not found");
    if (name === this.member && !force) throw new BadRequest("A member cannot remove itself without --force (use another member)");
    const count = (this.d.db.prepare("SELECT COUNT(*) AS n FROM instances WHERE node = ?").get(name) as { n: number }).n;
    if (count > 0 && !force) throw new BadRequest(`Node still has the following instances: ${count}`);
    if (force) this.d.db.prepare("DELETE FROM instances WHERE node = ?").run(name);
    // The member's own rows of pools and networks go with it (pools and networks stay for the others).
    for (const t of ["storage_pools_members", "networks_members"]) this.d.db.prepare(`DELETE FROM ${t} WHERE member = ?`).run(name);
    await store.removeMember(name);
    await store.client.delete().key(`/nodelxd/status/${name}`);
  }

  async setEvacuated(name: string, evacuated: boolean): Promise<void> {
    const store = this.requireStore();
    const m = await store.member(name);
    if (!m) throw new NotFound("Member not found");
    await store.putMember({ ...m, state: evacuated ? "evacuated" : "" });
  }

  /** Copy an image file from the first other online member that has it (held in memory: small images). */
  async fetchImage(project: string, fingerprint: string, file: string): Promise<void> {
    const others = (await this.members()).filter((m) => m.status === "Online" && m.server_name !== this.member);
    for (const m of others) {
      const r = await memberRawGet(m.url, this.tls(), apiUrl(project, "images", fingerprint, "export")).catch(() => undefined);
      if (!r || r.status !== 200 || /multipart/.test(r.type)) continue;
      const tmp = `${file}.fetch-${process.pid}`;
      writeFileSync(tmp, r.body, { mode: 0o600 });
      renameSync(tmp, file);
      return;
    }
    throw new Error(`No cluster member has the files of image ${fingerprint}`);
  }

  /**
   * Operations of every other online member (GET /1.0/operations on one member lists the whole
   * cluster's, as LXD): each is asked for its own only, on behalf of the same client (so a
   * restricted client sees there what it would see here).
   */
  async remoteOperations(query: string, who: Requestor): Promise<OperationView[]> {
    const others = (await this.members()).filter((m) => m.status === "Online" && m.server_name !== this.member);
    const headers: Record<string, string> = { [LOCAL_ONLY]: "1" };
    if (who.protocol === "tls" && who.username !== "cluster" && who.fingerprint) headers[FORWARDED_FOR] = who.fingerprint;
    const lists = await Promise.all(
      others.map(async (m) => {
        const r = await memberRequest(m.url, this.tls(), "GET", `/1.0/operations?${query}`, undefined, headers).catch(() => undefined);
        if (!r || r.status !== 200 || !r.body?.metadata) return [];
        return Object.values(r.body.metadata as Record<string, OperationView[]>).flat();
      }),
    );
    return lists.flat();
  }

  /** The member url operation `id` lives on (undefined: nowhere known). */
  async operationUrl(id: string): Promise<string | undefined> {
    const member = await this.requireStore().operationMember(id);
    if (!member || member === this.member) return undefined;
    return this.memberUrl(member).catch(() => undefined);
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
      const others = (await this.members()).filter((m) => m.server_name !== this.member);
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
    // Serve the new certificate once this reply is on its way (it travels on the open connection).
    setTimeout(() => void this.d.setTls(this.tlsPair!).catch((err) => this.d.log.error({ err }, "cannot serve the new cluster certificate")), 50);
    this.d.events.lifecycle("cluster-certificate-updated", "/1.0/cluster/certificate");
  }

  /** Run an instance request against this member's own API (through its router: the write lock, as any client). */
  private async selfRequest(method: string, path: string, body?: unknown): Promise<void> {
    const url = await this.memberUrl(this.member);
    const r = await memberRequest(url, this.tls(), method, path, body);
    if (r.status === 202) {
      const w = await memberRequest(url, this.tls(), "GET", `/1.0/operations/${r.body.metadata.id}/wait?timeout=120`);
      if (w.body?.metadata?.status_code !== 200) throw new Error(w.body?.metadata?.err || w.body?.error || "operation failed");
    } else if (r.status >= 400) throw new Error(r.body?.error ?? r.text);
  }

  /** Evacuate (stop every running instance, marked so restore starts them again) or restore this member. */
  async evacuate(name: string, action: "evacuate" | "restore", statuses: () => Record<string, string>): Promise<void> {
    if (name !== this.member) throw new BadRequest("Evacuation runs on the member itself");
    if (action === "evacuate") {
      await this.setEvacuated(name, true);
      const running = Object.entries(statuses())
        .filter(([, st]) => st === "Running")
        .map(([k]) => k);
      localSet(this.d.db, "evacuated", JSON.stringify(running));
      for (const key of running) {
        const [project, inst] = key.split("/");
        await this.selfRequest("PUT", apiUrl(project, "instances", inst, "state"), { action: "stop", timeout: 30, force: false });
      }
      return;
    }
    const stopped = JSON.parse(localGet(this.d.db, "evacuated") ?? "[]") as string[];
    await this.setEvacuated(name, false);
    for (const key of stopped) {
      const [project, inst] = key.split("/");
      await this.selfRequest("PUT", apiUrl(project, "instances", inst, "state"), { action: "start", timeout: 30 });
    }
    localSet(this.d.db, "evacuated", "[]");
  }

  /** Whether a join secret matches (constant time). */
  static secretMatches(given: string, expected: string): boolean {
    const a = Buffer.from(given);
    const b = Buffer.from(expected);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  static clusterCertExists(paths: Paths): boolean {
    return existsSync(paths.clusterCert);
  }
}

export interface MemberView {
  server_name: string;
  url: string;
  database: boolean;
  status: string;
  message: string;
  architecture: string;
  failure_domain: string;
  description: string;
  config: Record<string, string>;
  groups: string[];
  roles: string[];
}

/** Roles a client may add or drop (clustering_edit_roles); the database roles follow the member's place in etcd. */
const EDITABLE_ROLES = new Set(["event-hub", "ovn-chassis"]);
const AUTOMATIC_ROLES = new Set(["database-leader", "database-standby"]);

/** A member's roles after a PUT of `wanted` (LXD's checks on the "database" role). */
export function editedRoles(current: string[], wanted: string[]): string[] {
  const has = current.includes("database");
  if (has && !wanted.includes("database")) throw new BadRequest(`The "database" role cannot be dropped at this time`);
  if (!has && wanted.includes("database")) throw new BadRequest(`The "database" role cannot be added at this time`);
  const out = has ? ["database"] : [];
  for (const r of wanted) {
    if (r === "database" || AUTOMATIC_ROLES.has(r)) continue;
    if (!EDITABLE_ROLES.has(r)) throw new BadRequest(`Invalid cluster role "${r}"`);
    if (!out.includes(r)) out.push(r);
  }
  return out;
}

/** LXD's join token: base64 of JSON {server_name, fingerprint, addresses, secret, expires_at}. */
export function decodeToken(text: string): { server_name: string; secret: string; fingerprint: string; addresses: string[] } | undefined {
  try {
    const t = JSON.parse(Buffer.from(text, "base64").toString("utf8"));
    if (typeof t.secret !== "string" || typeof t.server_name !== "string") return undefined;
    return t;
  } catch {
    return undefined;
  }
}
