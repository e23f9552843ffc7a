// The networks feature: managed networks, their API, and NetworksPort for instance NICs.
import type { Core, Feature } from "../daemon/daemon.js";
import { NetworkRepo } from "../db/network-repo.js";
import type { Route } from "../api/route.js";
import { networkRoutes } from "./routes.js";
import { NetworkService } from "./service.js";

export class NetworksFeature implements Feature {
  readonly name = "networks";
  readonly service: NetworkService;

  constructor(private readonly core: Core) {
    this.service = new NetworkService({ repo: new NetworkRepo(core.db), events: core.events, log: core.log, ports: core.ports, dir: core.paths.networks });
    core.ports.networks = this.service;
  }

  routes(): Route[] {
    return networkRoutes(this.service, () => this.core.ports.projects);
  }

  async start(): Promise<void> {
    await this.service.startAll();
  }

  async stop(opts: { stopInstances: boolean }): Promise<void> {
    await this.service.stopAll(opts);
  }
}
