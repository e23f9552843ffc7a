// Becoming a cluster: enabling clustering on a first member (PUT /1.0/cluster), join tokens
// (POST /1.0/cluster/members), joining with one, and a member accepting the joiner
// (/internal/cluster/accept).
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import type { Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import type { OperationManager } from "../operations/manager.js";
import type { OperationView } from "../operations/types.js";
import { certFingerprint, type KeyPair } from "../daemon/certificates.js";
import type { Paths } from "../daemon/paths.js";
import type { ServerService } from "../daemon/server-service.js";
import { BadRequest, Conflict, Forbidden } from "../shared/errors.js";
import { memberRequest } from "./forward.js";
import { MEMBER_NAME_RE, type MemberView } from "./members.js";
import { localSet, takeSnapshot } from "./replica.js";
import { ClusterStore, type MemberRecord } from "./store.js";

export interface ClusterPutBody {
  server_name: string;
  enabled: boolean;
  server_address?: string;
  cluster_address?: string;
  cluster_certificate?: string;
  cluster_password?: string;
  member_config?: unknown[];
}

/** What enrolment needs of the cluster service. */
export interface EnrolmentHost {
  clustered(): boolean;
  requireStore(): ClusterStore;
  /** The certificate members present to each other (the cluster's once clustered). */
  certificate(): KeyPair;
  /** Become member `name` on the etcd at `endpoints`: load the cluster certificate just written, connect. */
  connectAs(name: string, endpoints: string[], opts: { fresh?: boolean }): Promise<void>;
  /** The member list (a token carries the online members' addresses). */
  members(): Promise<MemberView[]>;
}

export interface EnrolmentDeps {
  paths: Pick<Paths, "clusterCert" | "clusterKey">;
  db: Db;
  events: Pick<EventHub, "lifecycle">;
  operations: Pick<OperationManager, "create">;
  server: Pick<ServerService, "get" | "update">;
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
}

export class ClusterEnrolment {
  constructor(
    private readonly cluster: EnrolmentHost,
    private readonly d: EnrolmentDeps,
  ) {}

  /** PUT /1.0/cluster: bootstrap (no cluster_address) or join. Runs as an operation, as LXD. */
  enable(body: ClusterPutBody): OperationView {
    if (!body.enabled) throw new BadRequest("Disabling clustering is not supported");
    if (this.cluster.clustered()) throw new BadRequest("This server is already clustered");
    const name = body.server_name;
    if (!name || !MEMBER_NAME_RE.test(name)) throw new BadRequest("Invalid server name");
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
        this.d.claimLocalVolumes(name);
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
    await this.cluster.connectAs(name, endpoints, {});
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
    await this.cluster.connectAs(name, accepted.etcd_endpoints, { fresh: true });
    const sources = await this.d.adoptPools();
    for (const [pool, source] of Object.entries(sources)) localSet(this.d.db, `pool_source:${pool}`, source);
    await this.d.setTls(this.cluster.certificate());
  }

  /** POST /internal/cluster/accept (from a joining server, not yet trusted): check the secret, add the member. */
  async accept(body: { name?: string; secret?: string; address?: string; fingerprint?: string }): Promise<{ etcd_endpoints: string[]; cluster_cert: string; cluster_key: string }> {
    const store = this.cluster.requireStore();
    const { name, secret, address } = body;
    if (typeof name !== "string" || !MEMBER_NAME_RE.test(name) || typeof secret !== "string" || typeof address !== "string") throw new BadRequest("Invalid join request");
    if (!(await store.consumeToken(name, secret))) throw new Forbidden("No valid join token for this member");
    const rec = this.record(name, address, []);
    rec.fingerprint = typeof body.fingerprint === "string" ? body.fingerprint : "";
    if (!(await store.addMember(rec))) throw new Conflict(`The cluster already has a member with name: ${name}`);
    const kp = this.cluster.certificate();
    return { etcd_endpoints: store.endpoints, cluster_cert: kp.cert, cluster_key: kp.key };
  }

  // ---- join tokens ----

  async createToken(name: string): Promise<OperationView> {
    const store = this.cluster.requireStore();
    if (!name || !MEMBER_NAME_RE.test(name)) throw new BadRequest("Invalid server name");
    if (await store.member(name)) throw new Conflict(`The cluster already has a member with name: ${name}`);
    if ((await store.tokens()).some((t) => t.name === name)) throw new Conflict(`A join token already exists for the name: ${name}`);
    const secret = randomBytes(32).toString("hex");
    const expiresAt = new Date(Date.now() + 3 * 3600_000);
    await store.putToken({ name, secret, expires_at: expiresAt.toISOString() });
    const online = (await this.cluster.members()).filter((m) => m.status === "Online").map((m) => m.url.replace(/^https:\/\//, ""));
    return this.d.operations.create({
      class: "token",
      description: "Requesting a cluster join token",
      adminOnly: true,
      mayCancel: true,
      metadata: { serverName: name, secret, fingerprint: this.cluster.certificate().fingerprint, addresses: online, expiresAt: expiresAt.toISOString() },
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
