// The networks feature: managed networks, their API, and NetworksPort for instance NICs.
import type { Core, Feature } from "../feature.js";
import { NetworkRepo } from "../../db/network-repo.js";
import { NetworkAclRepo } from "../../db/network-acl-repo.js";
import { networkAclRoutes } from "../../api/routes/network-acls.js";
import { NetworkAclService } from "../../network/acls/service.js";
import { NetworkForwardRepo } from "../../db/network-forward-repo.js";
import { networkForwardRoutes } from "../../api/routes/network-forwards.js";
import { NetworkForwardService } from "../../network/forwards/service.js";
import { NetworkZoneRepo } from "../../db/network-zone-repo.js";
import { DnsServer } from "../../network/zones/dns-server.js";
import { networkZoneRoutes } from "../../api/routes/network-zones.js";
import { NetworkZoneService } from "../../network/zones/service.js";
import type { Route } from "../../api/route.js";
import { networkRoutes } from "../../api/routes/networks.js";
import { NetworkMembers } from "../../network/network-members.js";
import { NetworkService } from "../../network/service.js";
import { join } from "node:path";
import { Gobgpd } from "../../network/bgp/gobgpd.js";
import { NetworkBgp } from "../../network/bgp/network-bgp.js";
import { BgpSpeaker } from "../../network/bgp/speaker.js";
import { bgpRoutes } from "../../api/routes/bgp.js";
import { networkPeerRoutes } from "../../api/routes/network-peers.js";

export class NetworksFeature implements Feature {
  readonly name = "networks";
  readonly service: NetworkService;
  readonly acls: NetworkAclService;
  readonly forwards: NetworkForwardService;
  readonly zones: NetworkZoneService;
  private readonly dns: DnsServer;
  readonly bgp: BgpSpeaker;

  constructor(private readonly core: Core) {
    this.acls = new NetworkAclService({
      repo: new NetworkAclRepo(core.db),
      events: core.events,
      networkProject: (project) => core.ports.projects?.effectiveProject(project, "networks") ?? project,
      networks: () => ({ list: (project) => this.service.managed(project), refreshAcls: (name) => this.service.refreshFirewall(name) }),
    });
    this.zones = new NetworkZoneService({
      repo: new NetworkZoneRepo(core.db),
      events: core.events,
      networkProject: (project) => core.ports.projects?.effectiveProject(project, "networks") ?? project,
      networks: () => ({ list: () => this.service.managed("default"), leases: (name) => this.service.leases("default", name) }),
    });
    this.dns = new DnsServer((zone, full) => this.zones.content(zone, full), core.log);
    core.ports.dns = this.dns;
    const forwardRepo = new NetworkForwardRepo(core.db);
    const bgpLog = core.log.child({ component: "bgp" });
    this.bgp = new BgpSpeaker(new Gobgpd(join(core.paths.dir, "bgp"), bgpLog), bgpLog);
    core.ports.bgp = this.bgp;
    this.forwards = new NetworkForwardService({
      repo: forwardRepo,
      events: core.events,
      networks: () => ({
        require: (name) => this.service.requireManaged(name),
        all: () => this.service.managed("default"),
        refreshFirewall: (name) => this.service.refreshFirewall(name),
      }),
    });
    this.service = new NetworkService({
      repo: new NetworkRepo(core.db),
      events: core.events,
      log: core.log,
      ports: core.ports,
      dir: core.paths.networks,
      acls: this.acls,
      zones: this.zones,
      forwards: {
        firewallRules: (network, config) => this.forwards.firewallRules(network, config),
        renameNetwork: (project, from, to) => forwardRepo.renameNetwork(project, from, to),
        deleteNetwork: (project, network) => forwardRepo.deleteNetwork(project, network),
      },
      networkProject: (project) => {
        const projects = core.ports.projects;
        const name = projects?.effectiveProject(project, "networks") ?? project;
        return { name, config: projects?.projectConfig?.(project) ?? {} };
      },
      bgp: new NetworkBgp(this.bgp, (network) => forwardRepo.list("default", network).map((f) => f.listen_address), bgpLog),
    });
    core.ports.networks = this.service.port;
  }

  routes(): Route[] {
    return [...networkRoutes(this.service, () => this.core.ports.projects, new NetworkMembers(this.service, this.core.ports, this.core.events)), ...networkAclRoutes(this.acls), ...networkForwardRoutes(this.forwards, (project, name) => this.service.requireManaged(name, project)), ...networkZoneRoutes(this.zones), ...networkPeerRoutes(this.service, () => this.core.ports.projects), ...bgpRoutes(this.bgp)];
  }

  async start(): Promise<void> {
    await this.service.startAll();
  }

  async stop(opts: { stopInstances: boolean }): Promise<void> {
    await this.dns.close();
    await this.service.stopAll(opts);
    await this.bgp.stop();
  }
}
