// Network address forwards on bridges: the rows, LXD's rules, and the firewall rules they give.
import { BadRequest, Conflict, InternalError, NotFound } from "../../shared/errors.js";
import type { NetworkForwardRepo, NetworkForwardRow } from "../../db/network-forward-repo.js";
import type { EventHub } from "../../operations/events.js";
import { formatCidr, networkOf, overlaps, parseCidr, type IpNet } from "../ipnet.js";
import { forwardNftRules, normaliseForward, parseListenAddress, validateForward, type ForwardPort, type ForwardPut } from "./rules.js";

/** Networks live in the default project (see NetworkService). */
const PROJECT = "default";

export interface NetworkForwardView {
  description: string;
  config: Record<string, string>;
  ports: ForwardPort[];
  listen_address: string;
  location: string;
}

export interface ForwardNetwork {
  name: string;
  type: string;
  config: Record<string, string>;
}

/** What forwards need of networks. */
export interface ForwardNetworks {
  /** The managed network or LXD's 404 ("Failed loading network: Network not found"). */
  require(name: string): ForwardNetwork;
  all(): ForwardNetwork[];
  refreshFirewall(name: string): Promise<void>;
}

export interface NetworkForwardServiceDeps {
  repo: NetworkForwardRepo;
  events: EventHub;
  networks(): ForwardNetworks;
}

/** The request body's shape before normalising (nil lists and maps allowed, as Go decodes them). */
export interface ForwardRequest {
  description?: string;
  config?: Record<string, string> | null;
  ports?: Partial<ForwardPort>[] | null;
}

const toPut = (r: ForwardRequest): ForwardPut => ({
  description: r.description ?? "",
  config: { ...(r.config ?? {}) },
  ports: (r.ports ?? []).map((p) => ({ description: p.description ?? "", protocol: p.protocol ?? "", listen_port: p.listen_port ?? "", target_port: p.target_port ?? "", target_address: p.target_address ?? "" })),
});

const subnetsOf = (config: Record<string, string>) => ({ 4: config["ipv4.address"], 6: config["ipv6.address"] });
const url = (network: string, listen: string) => `/1.0/networks/${encodeURIComponent(network)}/forwards/${encodeURIComponent(listen)}`;

export class NetworkForwardService {
  constructor(private readonly deps: NetworkForwardServiceDeps) {}

  private bridge(name: string): ForwardNetwork {
    const net = this.deps.networks().require(name);
    if (net.type !== "bridge") throw new BadRequest(`Network driver "${net.type}" does not support forwards`);
    return net;
  }

  private view(r: NetworkForwardRow): NetworkForwardView {
    return { description: r.description, config: r.config, ports: r.ports, listen_address: r.listen_address, location: "none" };
  }

  list(network: string): NetworkForwardView[] {
    this.bridge(network);
    return this.deps.repo.list(PROJECT, network).map((r) => this.view(r));
  }

  private require(network: string, listen: string): NetworkForwardRow {
    const row = this.deps.repo.get(PROJECT, network, listen);
    if (!row) throw new NotFound("Network forward not found");
    return row;
  }

  get(network: string, listen: string): NetworkForwardView {
    this.bridge(network);
    return this.view(this.require(network, listen));
  }

  /** NetworkForward.Etag: listen address, description, config, ports. */
  etagOf(network: string, listen: string): unknown {
    const r = this.require(network, listen);
    return [r.listen_address, r.description, r.config, r.ports];
  }

  /** getExternalSubnetInUse, for bridges: other networks' subnets, routes, SNAT and forward addresses. */
  private assertNoOverlap(network: string, listen: IpNet): void {
    const used: IpNet[] = [];
    const add = (v: string | undefined) => {
      for (const part of (v ?? "").split(",").map((s) => s.trim())) {
        if (!part || part === "none" || part === "auto") continue;
        const n = parseCidr(part.includes("/") ? part : `${part}/${part.includes(":") ? 128 : 32}`);
        if (n) used.push(networkOf(n));
      }
    };
    for (const net of this.deps.networks().all()) {
      const own = net.name === network;
      if (!own) {
        add(net.config["ipv4.address"]);
        add(net.config["ipv6.address"]);
        add(net.config["ipv4.nat.address"]);
        add(net.config["ipv6.nat.address"]);
      }
      add(net.config["ipv4.routes"]);
      add(net.config["ipv6.routes"]);
    }
    for (const f of this.deps.repo.all()) if (f.network !== network) add(f.listen_address);
    if (used.some((u) => overlaps(u, listen))) throw new InternalError(`Failed creating forward: Forward listen address "${formatCidr(listen)}" overlaps with another network or NIC`);
  }

  async create(network: string, req: ForwardRequest & { listen_address?: string }): Promise<string> {
    const net = this.bridge(network);
    const put = normaliseForward(toPut(req));
    let listen: ReturnType<typeof parseListenAddress>;
    try {
      listen = parseListenAddress((req.listen_address ?? "").trim());
    } catch (e) {
      throw new InternalError(`Failed creating forward: ${(e as Error).message}`);
    }
    if (this.deps.repo.get(PROJECT, network, listen.text)) throw new Conflict("Failed creating forward: A forward for that listen address already exists");
    try {
      validateForward(listen, put, subnetsOf(net.config));
    } catch (e) {
      throw new InternalError(`Failed creating forward: ${(e as Error).message}`);
    }
    this.assertNoOverlap(network, { family: listen.family, ip: listen.ip, prefix: listen.family === 4 ? 32 : 128 });
    this.deps.repo.create({ project: PROJECT, network, listen_address: listen.text, ...put });
    try {
      await this.deps.networks().refreshFirewall(network);
    } catch (e) {
      this.deps.repo.delete(PROJECT, network, listen.text);
      await this.deps.networks().refreshFirewall(network).catch(() => {});
      throw new InternalError(`Failed creating forward: ${(e as Error).message}`);
    }
    this.deps.events.lifecycle("network-forward-created", url(network, listen.text), { project: PROJECT });
    return url(network, listen.text);
  }

  async update(network: string, listen: string, req: ForwardRequest, mode: "put" | "patch"): Promise<void> {
    const net = this.bridge(network);
    const cur = this.require(network, listen);
    let put = toPut(req);
    if (mode === "patch") {
      put = { ...put, config: { ...cur.config, ...put.config } };
      if (req.ports === undefined || req.ports === null) put.ports = cur.ports;
    }
    put = normaliseForward(put);
    try {
      validateForward(parseListenAddress(cur.listen_address), put, subnetsOf(net.config));
    } catch (e) {
      throw new InternalError(`Failed updating forward: ${(e as Error).message}`);
    }
    const next: NetworkForwardRow = { ...cur, ...put };
    this.deps.repo.update(next);
    try {
      await this.deps.networks().refreshFirewall(network);
    } catch (e) {
      this.deps.repo.update(cur);
      await this.deps.networks().refreshFirewall(network).catch(() => {});
      throw new InternalError(`Failed updating forward: ${(e as Error).message}`);
    }
    this.deps.events.lifecycle("network-forward-updated", url(network, listen), { project: PROJECT });
  }

  async delete(network: string, listen: string): Promise<void> {
    this.bridge(network);
    const cur = this.deps.repo.get(PROJECT, network, listen);
    if (!cur) throw new NotFound("Failed deleting forward: Network forward not found");
    this.deps.repo.delete(PROJECT, network, listen);
    try {
      await this.deps.networks().refreshFirewall(network);
    } catch (e) {
      this.deps.repo.create(cur);
      throw new InternalError(`Failed deleting forward: ${(e as Error).message}`);
    }
    this.deps.events.lifecycle("network-forward-deleted", url(network, listen), { project: PROJECT });
  }

  /** The DNAT and hairpin rules of a network's forwards, for its firewall. */
  firewallRules(network: string, config: Record<string, string>): { dnat: string[]; snat: string[] } {
    const forwards = this.deps.repo.list(PROJECT, network).map((f) => {
      const listen = parseListenAddress(f.listen_address);
      const ports = validateForward(listen, f, subnetsOf(config));
      return { listen: listen.text, family: listen.family, defaultTarget: f.config.target_address || undefined, ports };
    });
    return forwardNftRules(forwards);
  }
}
