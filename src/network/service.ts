// Managed networks: the database rows and LXD's rules over the live drivers (live.ts), with
// this member's part of cluster-wide changes. Also lists the host's unmanaged interfaces the
// way LXD does (from /sys, no spawns). What instances ask of networks is port.ts.
import { interfaceState } from "./host/state.js";
import { mkdirSync, renameSync, rmSync } from "node:fs";
import type { Logger } from "pino";
import { BadRequest, Conflict, InternalError, NotFound, NotImplemented } from "../shared/errors.js";
import type { NetworkRepo, NetworkRow } from "../db/network-repo.js";
import { MemberConfigRepo } from "../db/member-config-repo.js";
import type { Ports } from "../ports.js";
import type { EventHub } from "../operations/events.js";
import { addresses, linkExists, routeDestinations } from "./host/ip.js";
import { interfaceExists, listInterfaces, unmanagedType } from "./host/sysfs.js";
import { interfaceNameError } from "./keys.js";
import { isNetworkType, networkDrivers } from "./registry.js";
import type { LocalFacts } from "./subnets.js";
import { aclNames, type NetworkAclService } from "./acls/service.js";
import type { LeaseView, NetworkConfig, NetworkDriver, NetworkStateView } from "./types.js";
import type { NetworkBgp } from "./bgp/network-bgp.js";
import { LiveNetworks } from "./live.js";
import { NetworkPort } from "./port.js";

/** The project holding the host's networks (and every project's without features.networks). */
const PROJECT = "default";

/** Network types as LXD 5.0.2 knows them; "ovn" (the one type a features.networks project may hold) has no driver here. */
const LXD_TYPES = ["bridge", "macvlan", "sriov", "ovn", "physical"];

export interface NetworkView {
  config: NetworkConfig;
  description: string;
  name: string;
  type: string;
  used_by: string[] | null;
  managed: boolean;
  status: string;
  locations: string[] | null;
}

export interface NetworkServiceDeps {
  repo: NetworkRepo;
  events: EventHub;
  log: Logger;
  ports: Pick<Ports, "cluster" | "instances" | "profiles">;
  /** $LXD_DIR/networks */
  dir: string;
  acls: NetworkAclService;
  /** dns.zone.* names zones that exist. */
  zones: { assertZonesExist(config: NetworkConfig): void };
  forwards: {
    firewallRules(network: string, config: NetworkConfig): { dnat: string[]; snat: string[] };
    renameNetwork(project: string, from: string, to: string): void;
    deleteNetwork(project: string, network: string): void;
  };
  /** The BGP speaker's view of networks (prefixes, peers); absent: no BGP. */
  bgp?: NetworkBgp;
  /** LXD's NetworkProject: the project whose networks a request in `project` uses (features.networks), and its config. */
  networkProject?(project: string): { name: string; config: Record<string, string> };
}

export function networkNameError(name: string): string | undefined {
  if (name.length > 0 && name.length < 2) return "Network interface is too short (minimum 2 characters)";
  return interfaceNameError(name);
}

/** LXD's common ValidateName (the OVN driver's): URL-segment safe, no ":". */
function ovnNameError(name: string): string | undefined {
  for (const c of ["/", "?", "&", "+", ":"]) if (name.includes(c)) return `Cannot contain "${c}"`;
  return undefined;
}

const dropEmpty = (c: NetworkConfig) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== ""));

export class NetworkService {
  /** Each member's state and own keys of a network (clustered). */
  readonly members: MemberConfigRepo;
  /** What instances ask of networks (ports.networks). */
  readonly port: NetworkPort;
  private readonly live: LiveNetworks;

  constructor(private readonly deps: NetworkServiceDeps) {
    this.members = new MemberConfigRepo(deps.repo.db, "network");
    this.live = new LiveNetworks({
      dir: deps.dir,
      log: deps.log,
      aclRules: (project, network, config) => deps.acls.firewallRules(project, network, config),
      forwardRules: (network, config) => deps.forwards.firewallRules(network, config),
      memberConfig: (name, config) => this.memberConfig(name, config),
    });
    this.port = new NetworkPort({ repo: deps.repo, live: this.live, projectOf: (project) => this.projectOf(project), row: (project, name) => this.row(project, name), bgp: deps.bgp });
  }

  get repo(): NetworkRepo {
    return this.deps.repo;
  }

  /** A network's config on this member: the shared config with this member's own keys over it. */
  memberConfig(name: string, config: NetworkConfig): NetworkConfig {
    const cluster = this.deps.ports.cluster;
    if (!cluster?.clustered()) return config;
    const own = this.members.get(name, cluster.name());
    return own ? { ...config, ...own.config } : config;
  }

  /** Daemon start: bring every managed network up again, adopting what exists. */
  async startAll(): Promise<void> {
    for (const row of this.deps.repo.all()) {
      const driver = this.live.driverFor(row);
      this.live.set(row.name, driver);
      mkdirSync(this.live.dir(row.name), { recursive: true, mode: 0o711 });
      try {
        await driver.start();
        await this.bgpSetup(row);
      } catch (e) {
        this.deps.log.error({ err: e, network: row.name }, "failed to start network");
      }
    }
  }

  /**
   * Daemon stop. A full shutdown (instances stopped) tears every network down; a plain stop
   * keeps networks that instances still use, so running containers keep their link.
   */
  async stopAll(opts: { stopInstances: boolean }): Promise<void> {
    for (const [name, driver] of this.live.entries()) {
      if (!opts.stopInstances && this.instanceUsers(name).length > 0) continue;
      await driver.stop().catch((e) => this.deps.log.error({ err: e, network: name }, "failed to stop network"));
    }
    this.live.clear();
  }

  private instanceUsers(name: string): string[] {
    return this.deps.ports.instances.usedBy({ network: name });
  }

  usedBy(name: string): string[] {
    const profiles = this.deps.ports.profiles.referencing({ network: name });
    return [...profiles, ...this.instanceUsers(name)];
  }

  private managedView(row: NetworkRow): NetworkView {
    const used = this.usedBy(row.name);
    return {
      config: row.config,
      description: row.description,
      name: row.name,
      type: row.type,
      used_by: used.length ? used : null,
      managed: true,
      status: "Created",
      locations: ["none"],
    };
  }

  private unmanagedView(name: string): NetworkView {
    return { config: {}, description: "", name, type: unmanagedType(name, this.ovsBridges()), used_by: null, managed: false, status: "", locations: null };
  }

  private ovsBridges(): Set<string> {
    return new Set(this.deps.repo.all().filter((r) => r.config["bridge.driver"] === "openvswitch").map((r) => r.name));
  }

  /** The project holding the networks a request in `project` uses (itself with features.networks, else default). */
  projectOf(project: string): string {
    return this.deps.networkProject?.(project).name ?? PROJECT;
  }

  /**
   * Managed networks of the request's network project; the host's interfaces (less veth pairs,
   * as LXD) only when that is the default project.
   */
  list(project: string): NetworkView[] {
    const owner = this.projectOf(project);
    const rows = this.deps.repo.list(owner);
    if (owner !== PROJECT) return rows.map((r) => this.managedView(r));
    const managed = new Set(rows.map((r) => r.name));
    const host = listInterfaces().filter((n) => !managed.has(n) && !n.startsWith("veth"));
    return [...rows.map((r) => this.managedView(r)), ...host.map((n) => this.unmanagedView(n))];
  }

  view(project: string, name: string): NetworkView {
    const owner = this.projectOf(project);
    const row = this.deps.repo.get(owner, name);
    if (row) return this.managedView(row);
    // Host interfaces are seen from the default project only (doNetworkGet).
    if (owner === PROJECT && !name.startsWith("veth") && !networkNameError(name) && interfaceExists(name)) return this.unmanagedView(name);
    throw new NotFound("Network not found");
  }

  /** The managed row or LXD's 404 for write paths. */
  private row(project: string, name: string): NetworkRow {
    const row = this.deps.repo.get(this.projectOf(project), name);
    if (!row) throw new NotFound("Failed loading network: Network not found");
    return row;
  }

  async localFacts(): Promise<LocalFacts> {
    const { routes } = await routeDestinations();
    const addrs = (await addresses()).flatMap((l) => l.addr_info.map((a) => `${a.local}/${a.prefixlen}`));
    const networks = this.deps.repo.all().flatMap((r) => [r.config["ipv4.address"], r.config["ipv6.address"]].filter((v) => v && v !== "none" && v !== "auto"));
    return { routes, addresses: addrs, networks };
  }

  /**
   * networksPost's checks in LXD's order: name, type (default "ovn" in a features.networks
   * project, "bridge" otherwise), name rules, whether the type may live outside the default
   * project (only OVN may), then limits.networks of a features.networks project.
   */
  async create(project: string, req: { name: string; type?: string; description?: string; config?: NetworkConfig }): Promise<void> {
    const name = req.name;
    if (!name) throw new BadRequest("No name provided");
    const np = this.deps.networkProject?.(project) ?? { name: PROJECT, config: {} };
    const type = req.type || (np.name !== PROJECT ? "ovn" : "bridge");
    if (!LXD_TYPES.includes(type)) throw new BadRequest("Unknown driver");
    // OVN networks have no host interface of their name: only the common URL-safe rule applies.
    const nameErr = type === "ovn" ? ovnNameError(name) : networkNameError(name);
    if (nameErr) throw new BadRequest(nameErr);
    if (np.name !== PROJECT) {
      if (type !== "ovn") throw new BadRequest("Network type does not support non-default projects");
      const limit = np.config["limits.networks"];
      if (limit !== undefined && limit !== "") {
        const have = this.deps.repo.list(np.name).map((r) => r.name);
        if (!have.includes(name) && have.length >= Number(limit)) throw new BadRequest("Networks limit has been reached for project");
      }
    }
    // OVN (LXD's only project-capable type) has no driver here.
    if (!isNetworkType(type)) throw new NotImplemented(`Network type "${type}" isn't supported by this server`);
    const owner = np.name;
    return this.live.locked(name, async () => {
      if (this.deps.repo.get(owner, name)) throw new BadRequest("The network already exists");
      const row: NetworkRow = { project: owner, name, type, description: req.description ?? "", config: { ...(req.config ?? {}) } };
      const driver = this.live.driverFor(row);
      try {
        let facts: Promise<LocalFacts> | undefined;
        if (driver.fillConfig) row.config = await driver.fillConfig(row.config, () => (facts ??= this.localFacts()));
        driver.validate(row.config);
        this.validateAcls(row.config);
        row.config = dropEmpty(row.config);
        if (type === "bridge" && linkExists(name)) throw new Error(`Network interface "${name}" already exists`);
      } catch (e) {
        throw new InternalError((e as Error).message);
      }
      const live = this.live.driverFor(row);
      mkdirSync(this.live.dir(name), { recursive: true, mode: 0o711 });
      row.id = this.deps.repo.create(row);
      try {
        await live.start();
        await this.bgpSetup(row);
      } catch (e) {
        await live.stop().catch(() => {});
        this.deps.repo.delete(owner, name);
        rmSync(this.live.dir(name), { recursive: true, force: true });
        throw new InternalError((e as Error).message);
      }
      this.live.set(name, live);
      this.deps.events.lifecycle("network-created", `/1.0/networks/${name}`, { project: owner });
    });
  }

  /**
   * This member's part of a cluster-wide create: the network on this host with `config` (the
   * shared config and this member's keys). Returns the config as started (defaults filled).
   */
  async createHere(name: string, type: string, description: string, config: NetworkConfig): Promise<NetworkConfig> {
    return this.live.locked(name, async () => {
      const row: NetworkRow = { project: PROJECT, name, type, description, config: { ...config } };
      if (!isNetworkType(type)) throw new BadRequest("Unknown driver");
      const driver = this.live.build(PROJECT, name, type, row.config);
      try {
        let facts: Promise<LocalFacts> | undefined;
        if (driver.fillConfig) row.config = await driver.fillConfig(row.config, () => (facts ??= this.localFacts()));
        driver.validate(row.config);
        row.config = dropEmpty(row.config);
      } catch (e) {
        throw new InternalError((e as Error).message);
      }
      const live = this.live.build(PROJECT, name, type, row.config);
      mkdirSync(this.live.dir(name), { recursive: true, mode: 0o711 });
      try {
        await live.start();
      } catch (e) {
        await live.stop().catch(() => {});
        throw new InternalError((e as Error).message);
      }
      this.live.set(name, live);
      return row.config;
    });
  }

  /** Validate and fill a network's shared config (the member asked, before any member creates it). */
  async fillShared(name: string, type: string, config: NetworkConfig): Promise<NetworkConfig> {
    if (!isNetworkType(type)) throw new BadRequest("Unknown driver");
    const driver = networkDrivers[type]({ name, config: { ...config }, dir: this.live.dir(name), log: this.deps.log });
    let out = { ...config };
    if (driver.fillConfig) out = await driver.fillConfig(out, () => this.localFacts());
    this.validateAcls(out);
    return dropEmpty(out);
  }

  /**
   * This member's part of a cluster-wide update (the member asked writes the record): the new
   * shared config, with this member's keys, applied to this host.
   */
  async applyHere(name: string, shared: NetworkConfig): Promise<void> {
    return this.live.locked(name, async () => {
      const row = this.row(PROJECT, name);
      const driver = this.live.driver(row);
      const next = this.memberConfig(name, dropEmpty(shared));
      try {
        driver.validate(next);
        await driver.update(next);
      } catch (e) {
        throw new InternalError((e as Error).message);
      }
    });
  }

  /** This member's part of a cluster-wide delete: the network off this host. */
  async deleteHere(name: string): Promise<void> {
    return this.live.locked(name, async () => {
      const row = this.deps.repo.get(PROJECT, name);
      const driver = this.live.get(name) ?? (row ? this.live.driverFor(row) : undefined);
      if (row && row.state === "created") await this.bgpClear(row).catch(() => undefined);
      await driver?.stop();
      this.live.delete(name);
      rmSync(this.live.dir(name), { recursive: true, force: true });
    });
  }

  /** The object If-Match compares against (what GET shows, minus used_by/status); GET uses the same shape. */
  etagOf(project: string, name: string): unknown {
    const row = this.row(project, name);
    return { name: row.name, managed: true, type: row.type, description: row.description, config: row.config };
  }

  async update(project: string, name: string, req: { description?: string; config?: NetworkConfig }, mode: "replace" | "merge"): Promise<void> {
    return this.live.locked(name, async () => {
      const row = this.row(project, name);
      if ((row.state ?? "created") !== "created") throw new BadRequest("Cannot update network global config when not in created state");
      const driver = this.live.driver(row);
      let next: NetworkConfig = mode === "replace" ? { ...(req.config ?? {}) } : { ...row.config, ...(req.config ?? {}) };
      try {
        const filler = driver as NetworkDriver & { populateAuto?(c: NetworkConfig, f: () => Promise<LocalFacts>): Promise<NetworkConfig> };
        if (filler.populateAuto && Object.values(next).includes("auto")) next = await filler.populateAuto(next, () => this.localFacts());
        driver.validate(next);
        this.validateAcls(next);
      } catch (e) {
        throw new BadRequest((e as Error).message);
      }
      next = dropEmpty(next);
      const description = req.description ?? (mode === "merge" ? row.description : "");
      // user.* keys are the user's notes: changing only them touches nothing on the host.
      const hostKeys = (c: NetworkConfig) => JSON.stringify(Object.entries(c).filter(([k]) => !k.startsWith("user.")).sort());
      if (hostKeys(next) !== hostKeys(row.config)) {
        try {
          // The host gets this member's keys too (a cluster member's own `bridge.external_interfaces` ...).
          await driver.update(this.memberConfig(name, next));
          await this.bgpSetup({ ...row, config: next }, row.config);
        } catch (e) {
          await driver.update(this.memberConfig(name, row.config)).catch((err) => this.deps.log.error({ err, network: name }, "failed to restore network after failed update"));
          throw new InternalError((e as Error).message);
        }
      }
      this.deps.repo.update(row.project, name, description, next);
      this.deps.events.lifecycle("network-updated", `/1.0/networks/${name}`, { project: row.project });
    });
  }

  async rename(project: string, name: string, to: string): Promise<void> {
    if (!to) throw new BadRequest("No name provided");
    const err = networkNameError(to);
    if (err) throw new BadRequest(err);
    return this.live.locked(name, async () => {
      const row = this.row(project, name);
      const owner = row.project;
      if (this.deps.repo.get(owner, to)) throw new Conflict(`Network "${to}" already exists`);
      if (this.usedBy(name).length > 0) throw new BadRequest("The network is currently in use");
      if (row.type === "bridge" && linkExists(to)) throw new Conflict(`Network interface "${to}" already exists`);
      const old = this.live.driver(row);
      await this.bgpClear(row);
      await old.stop();
      this.live.delete(name);
      this.deps.repo.rename(owner, name, to);
      this.deps.forwards.renameNetwork(owner, name, to);
      renameSync(this.live.dir(name), this.live.dir(to));
      const renamed = this.live.driverFor({ ...row, name: to });
      try {
        await renamed.start();
      } catch (e) {
        await renamed.stop().catch(() => {});
        this.deps.repo.rename(owner, to, name);
        this.deps.forwards.renameNetwork(owner, to, name);
        renameSync(this.live.dir(to), this.live.dir(name));
        await old.start().catch(() => {});
        this.live.set(name, old);
        throw new InternalError((e as Error).message);
      }
      this.live.set(to, renamed);
      await this.bgpSetup({ ...row, name: to }).catch((err) => this.deps.log.error({ err, network: to }, "BGP setup after rename"));
      this.deps.events.lifecycle("network-renamed", `/1.0/networks/${to}`, { project: owner, context: { old_name: name } });
    });
  }

  async delete(project: string, name: string): Promise<void> {
    return this.live.locked(name, async () => {
      const row = this.row(project, name);
      const owner = row.project;
      if (this.usedBy(name).length > 0) throw new BadRequest("The network is currently in use");
      await this.bgpClear(row);
      await this.live.driver(row).stop();
      this.live.delete(name);
      this.deps.forwards.deleteNetwork(owner, name);
      this.deps.repo.delete(owner, name);
      rmSync(this.live.dir(name), { recursive: true, force: true });
      this.deps.events.lifecycle("network-deleted", `/1.0/networks/${name}`, { project: owner });
    });
  }

  private async bgpSetup(row: NetworkRow, old?: NetworkConfig): Promise<void> {
    if (row.id !== undefined) await this.deps.bgp?.setup({ ...row, id: row.id }, old);
  }

  /** Withdraw a network's peers and prefixes (never fails the caller). */
  private async bgpClear(row: NetworkRow): Promise<void> {
    if (row.id === undefined || !this.deps.bgp) return;
    await this.deps.bgp.clear({ ...row, id: row.id }).catch((err) => this.deps.log.warn({ err, network: row.name }, "BGP clear"));
  }

  /** security.acls names ACLs that exist (LXD checks this after the per-key rules). */
  private validateAcls(config: NetworkConfig): void {
    if (config["security.acls"]) this.deps.acls.assertExist(PROJECT, aclNames(config["security.acls"]));
    this.deps.zones.assertZonesExist(config);
  }

  /** AclNetworks: the managed networks of a project (ACL usage). */
  managed(project: string): { name: string; type: string; config: NetworkConfig }[] {
    return this.deps.repo.list(project);
  }

  /** An ACL this network names, or one of its forwards, changed. */
  async refreshFirewall(name: string): Promise<void> {
    return this.live.locked(name, async () => {
      const row = this.row(PROJECT, name);
      await this.live.driver(row).refreshFirewall?.();
      if (row.id !== undefined) await this.deps.bgp?.refreshForwards({ ...row, id: row.id });
    });
  }

  /** The managed network (forwards), or LXD's 404. */
  requireManaged(name: string, project = PROJECT): NetworkRow {
    return this.row(project, name);
  }

  async state(project: string, name: string): Promise<NetworkStateView> {
    const owner = this.projectOf(project);
    const row = this.deps.repo.get(owner, name);
    if (row) return this.live.driver(row).state();
    // Any host interface answers, from any project (networkStateGet does not ask the project).
    if (networkNameError(name) || !interfaceExists(name)) throw new NotFound("Network not found");
    return interfaceState(name);
  }

  async leases(project: string, name: string): Promise<LeaseView[]> {
    const driver = this.live.driver(this.row(project, name));
    if (!driver.leases) throw new BadRequest(`Network "${name}" of type "${driver.type}" has no DHCP leases`);
    return driver.leases(this.deps.ports.instances.nicsOn(name));
  }

}
