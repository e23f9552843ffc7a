// The networks feature: managed networks, their API, and NetworksPort for instance NICs.
import type { Core, Feature } from "../daemon/daemon.js";
import { NetworkRepo } from "../db/network-repo.js";
import { NetworkAclRepo } from "../db/network-acl-repo.js";
import { networkAclRoutes } from "./acls/routes.js";
import { NetworkAclService } from "./acls/service.js";
import type { Route } from "../api/route.js";
import { networkRoutes } from "./routes.js";
import { NetworkService } from "./service.js";

export class NetworksFeature implements Feature {
  readonly name = "networks";
  readonly service: NetworkService;
  readonly acls: NetworkAclService;

  constructor(core: Core) {
    this.acls = new NetworkAclService({
      repo: new NetworkAclRepo(core.db),
      events: core.events,
      networkProject: (project) => core.ports.projects?.effectiveProject(project, "networks") ?? project,
      networks: () => ({ list: (project) => this.service.managed(project), refreshAcls: (name) => this.service.refreshAcls(name) }),
    });
    this.service = new NetworkService({ repo: new NetworkRepo(core.db), events: core.events, log: core.log, ports: core.ports, dir: core.paths.networks, acls: this.acls });
    core.ports.networks = this.service;
  }

  routes(): Route[] {
    return [...networkRoutes(this.service), ...networkAclRoutes(this.acls)];
  }

  async start(): Promise<void> {
    await this.service.startAll();
  }

  async stop(opts: { stopInstances: boolean }): Promise<void> {
    await this.service.stopAll(opts);
  }
}
