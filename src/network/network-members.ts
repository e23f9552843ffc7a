// Networks in a cluster, as LXD 5.0.2 makes them: `POST /1.0/networks?target=m1` records a
// pending network with member m1's own keys (`parent`, `bridge.external_interfaces`,
// `bgp.ipv4.nexthop`, `bgp.ipv6.nexthop`); once every member has them, `POST /1.0/networks`
// without a target fills the shared config, creates the network on this member, tells every
// other member to create its part and marks it created. Deleting removes it from every member.
// The member asked writes every record (it holds the cluster write lock); members told to do
// their part only touch their host.
import { BadRequest, InternalError, NotFound } from "../shared/errors.js";
import type { ClusterPort, Ports } from "../ports.js";
import type { EventHub } from "../operations/events.js";
import { apiStatus } from "../db/member-config-repo.js";
import type { NetworkRow } from "../db/network-repo.js";
import type { NetworkConfig } from "./types.js";
import { networkNameError, type NetworkService, type NetworkView } from "./service.js";
import { isNetworkType } from "./registry.js";

/** LXD's db.NodeSpecificNetworkConfig. */
export const MEMBER_SPECIFIC_NETWORK_KEYS = ["bgp.ipv4.nexthop", "bgp.ipv6.nexthop", "bridge.external_interfaces", "parent"];

const PROJECT = "default";
const isMemberKey = (k: string) => MEMBER_SPECIFIC_NETWORK_KEYS.includes(k);
const memberPart = (c: NetworkConfig) => Object.fromEntries(Object.entries(c).filter(([k]) => isMemberKey(k)));
const sharedPart = (c: NetworkConfig) => Object.fromEntries(Object.entries(c).filter(([k]) => !isMemberKey(k)));

export interface NetworkCreate {
  name: string;
  type?: string;
  description?: string;
  config?: NetworkConfig;
}

export class NetworkMembers {
  constructor(
    private readonly svc: NetworkService,
    private readonly ports: Pick<Ports, "cluster">,
    private readonly events: EventHub,
  ) {}

  private get cluster(): ClusterPort | undefined {
    return this.ports.cluster.clustered() ? this.ports.cluster : undefined;
  }

  clustered(): boolean {
    return this.cluster !== undefined;
  }

  private names(): Promise<string[]> {
    return this.cluster!.memberNames();
  }

  private checkName(name: string): void {
    if (!name) throw new BadRequest("No name provided");
    const err = networkNameError(name);
    if (err) throw new BadRequest(err);
  }

  /** `POST /1.0/networks?target=member`: record the member's own keys of a pending network. */
  async createPending(target: string, req: NetworkCreate): Promise<void> {
    this.checkName(req.name);
    const type = req.type || "bridge";
    if (!isNetworkType(type)) throw new BadRequest("Unknown driver");
    const config = req.config ?? {};
    for (const key of Object.keys(config)) {
      if (!isMemberKey(key)) throw new BadRequest(`Config key "${key}" may not be used as member-specific key`);
    }
    const existing = this.svc.repo.get(PROJECT, req.name);
    if (existing) {
      if ((existing.state ?? "created") !== "pending") throw new InternalError("Network is not in pending state");
      if (existing.type !== type) throw new InternalError("Requested network type doesn't match type in existing database record");
    }
    if (!(await this.names()).includes(target)) throw new NotFound("Cluster member not found");
    if (existing && this.svc.members.get(req.name, target)) throw new BadRequest(`The network is already defined on member "${target}"`);
    this.svc.repo.db.transaction(() => {
      if (!existing) this.svc.repo.create({ project: PROJECT, name: req.name, type, description: req.description ?? "", config: {}, state: "pending" });
      this.svc.members.insert(req.name, target, config, "pending");
    })();
  }

  /** Whether an untargeted create goes the cluster way (more than one member, or a network not created yet). */
  async needsCluster(name: string): Promise<boolean> {
    if (!this.cluster) return false;
    const row = this.svc.repo.get(PROJECT, name);
    if (row && (row.state ?? "created") !== "created") return true;
    return (await this.names()).length > 1;
  }

  /** LXD's networkPartiallyCreated: errored, or shared config already written. */
  private partiallyCreated(row: NetworkRow): boolean {
    return row.state === "errored" || Object.keys(row.config).some((k) => !isMemberKey(k));
  }

  /** `POST /1.0/networks` (no target) in a cluster: create the pending network on every member. */
  async createEverywhere(req: NetworkCreate): Promise<void> {
    const config = req.config ?? {};
    for (const key of Object.keys(config)) {
      if (isMemberKey(key)) throw new InternalError(`Config key "${key}" is cluster member specific`);
    }
    const type = req.type || "bridge";
    const row = this.svc.repo.get(PROJECT, req.name);
    if (row) {
      if ((row.state ?? "created") === "created") throw new InternalError("The network is already created");
      if (type !== row.type) throw new InternalError(`Requested network type "${type}" doesn't match type in existing database record "${row.type}"`);
    }
    if (!row) throw new InternalError("Network not pending on any node (use --target <node> first)");
    const names = await this.names();
    const defined = new Map(this.svc.members.all(req.name).map((r) => [r.member, r]));
    let shared = row.config;
    if (this.partiallyCreated(row)) {
      if (Object.keys(config).length > 0) throw new InternalError("Network already partially created. Please do not specify any global config when re-running create");
    } else {
      const missing = names.filter((n) => !defined.has(n));
      if (missing.length > 0) throw new InternalError(`Network not defined on nodes: ${missing.join(", ")}`);
      try {
        shared = sharedPart(await this.svc.fillShared(req.name, type, config));
      } catch (e) {
        throw new InternalError((e as Error).message);
      }
      this.svc.repo.db.transaction(() => {
        this.svc.repo.update(PROJECT, req.name, req.description ?? row.description, shared);
        this.svc.repo.setState(PROJECT, req.name, "errored");
      })();
    }
    const self = this.cluster!.name();
    for (const member of [self, ...names.filter((n) => n !== self)]) {
      const own = defined.get(member);
      if (own?.state === "created") continue;
      const body = { name: req.name, type, description: req.description ?? row.description, config: { ...shared, ...(own?.config ?? {}) } };
      const started = member === self ? await this.svc.createHere(body.name, type, body.description, body.config) : ((await this.cluster!.notifyMember(member, "POST", "/1.0/networks", body)) as NetworkConfig | null);
      this.svc.members.set(req.name, member, "created", memberPart({ ...(own?.config ?? {}), ...(started ?? {}) }));
    }
    this.svc.repo.setState(PROJECT, req.name, "created");
    this.events.lifecycle("network-created", `/1.0/networks/${req.name}`, { project: PROJECT });
  }

  /** This member's part of a cluster-wide create, asked by another member. */
  createHere(req: NetworkCreate): Promise<NetworkConfig> {
    return this.svc.createHere(req.name, req.type || "bridge", req.description ?? "", req.config ?? {});
  }

  /** A single-member cluster created a network the plain way: this member's row says so. */
  recordCreatedHere(name: string): void {
    if (!this.cluster) return;
    const row = this.svc.repo.get(PROJECT, name);
    if (row) this.svc.members.set(name, this.cluster.name(), "created", memberPart(row.config));
  }

  /** `DELETE /1.0/networks/{name}` in a cluster: from every member it was created on, then the records. */
  async deleteEverywhere(name: string): Promise<void> {
    const row = this.svc.repo.get(PROJECT, name);
    if (!row) throw new NotFound("Network not found");
    if ((row.state ?? "created") === "created") {
      if (this.svc.usedBy(name).length > 0) throw new BadRequest("The network is currently in use");
    }
    const self = this.cluster!.name();
    const rows = new Map(this.svc.members.all(name).map((r) => [r.member, r]));
    const onHost = (m: string) => (rows.has(m) ? rows.get(m)!.state === "created" : row.state === "created");
    for (const member of (await this.names()).filter((n) => n !== self && onHost(n))) {
      await this.cluster!.notifyMember(member, "DELETE", `/1.0/networks/${encodeURIComponent(name)}`);
    }
    if (row.state === "created") return this.svc.delete(PROJECT, name);
    if (onHost(self)) await this.svc.deleteHere(name);
    this.svc.repo.delete(PROJECT, name);
    this.events.lifecycle("network-deleted", `/1.0/networks/${name}`, { project: PROJECT });
  }

  /** PUT/PATCH without a target in a cluster: member keys are refused (LXD's check). */
  checkUpdate(config: NetworkConfig | undefined): void {
    if (!this.cluster) return;
    for (const k of Object.keys(config ?? {})) {
      if (isMemberKey(k)) throw new BadRequest(`Config key "${k}" is cluster member specific`);
    }
  }

  /**
   * PUT/PATCH with `?target=` (served by that member): only this member's own keys change (the
   * others must keep their values, LXD's check); its row is written and its host updated.
   */
  async updateHere(name: string, config: NetworkConfig, mode: "replace" | "merge"): Promise<void> {
    const row = this.svc.repo.get(PROJECT, name);
    if (!row) throw new NotFound("Network not found");
    const cur = this.svc.memberConfig(name, row.config);
    for (const [k, v] of Object.entries(config)) {
      if (!isMemberKey(k) && cur[k] !== v) throw new BadRequest(`Config key "${k}" may not be used as member-specific key`);
    }
    const self = this.cluster!.name();
    const own = this.svc.members.get(name, self);
    const next = mode === "replace" ? memberPart(config) : { ...(own?.config ?? {}), ...memberPart(config) };
    const kept = Object.fromEntries(Object.entries(next).filter(([, v]) => v !== ""));
    this.svc.members.set(name, self, own?.state ?? "created", kept);
    try {
      await this.svc.applyHere(name, row.config);
    } catch (e) {
      this.svc.members.set(name, self, own?.state ?? "created", own?.config ?? {});
      throw e;
    }
    this.events.lifecycle("network-updated", `/1.0/networks/${name}`, { project: PROJECT, context: { target: self } });
  }

  /** The ETag a member-specific view (`?target=`) carries. */
  memberEtag(name: string): unknown {
    const row = this.svc.repo.get(PROJECT, name);
    if (!row) throw new NotFound("Network not found");
    return { name: row.name, managed: true, type: row.type, description: row.description, config: this.svc.memberConfig(name, row.config) };
  }

  /** After this member updated a network's record and host: every other member applies it to its host. */
  async updateEverywhere(name: string): Promise<void> {
    if (!this.cluster) return;
    const row = this.svc.repo.get(PROJECT, name);
    if (!row) return;
    const self = this.cluster.name();
    const rows = new Map(this.svc.members.all(name).map((r) => [r.member, r]));
    for (const member of (await this.names()).filter((n) => n !== self && (!rows.has(n) || rows.get(n)!.state === "created"))) {
      await this.cluster.notifyMember(member, "PUT", `/1.0/networks/${encodeURIComponent(name)}`, { description: row.description, config: row.config });
    }
  }

  /**
   * The API view in a cluster: without a target the shared config (member keys left out), the
   * network's status and members; with `memberSpecific` (a `?target=` request served here) this
   * member's config and status here.
   */
  async view(v: NetworkView, memberSpecific: boolean): Promise<NetworkView> {
    if (!this.cluster || !v.managed) return v;
    const row = this.svc.repo.get(PROJECT, v.name);
    if (!row) return v;
    const rows = this.svc.members.all(v.name);
    const state = row.state ?? "created";
    const locations = state === "created" ? await this.names() : rows.map((r) => r.member);
    if (memberSpecific) {
      const own = rows.find((r) => r.member === this.cluster!.name());
      return { ...v, config: this.svc.memberConfig(v.name, row.config), status: apiStatus(own?.state ?? state), locations };
    }
    return { ...v, config: sharedPart(row.config), status: apiStatus(state), locations };
  }
}
