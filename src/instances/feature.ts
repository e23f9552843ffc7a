// The instances feature: routes, the InstancesPort, and container adoption at start.
import { instanceRoutes } from "../api/routes/instances.js";
import type { Core, Feature } from "../daemon/daemon.js";
import { InstanceRuntime } from "./runtime.js";
import { InstanceService } from "./service.js";

export class InstancesFeature implements Feature {
  readonly name = "instances";
  readonly service: InstanceService;

  constructor(private readonly core: Core) {
    this.service = new InstanceService(core);
    this.service.runtime = new InstanceRuntime(core, this.service);
    core.ports.instances = this.service;
  }

  routes() {
    return instanceRoutes(this.core, this.service);
  }

  async start(): Promise<void> {
    await this.service.runtime.adopt();
  }

  async stop(opts: { stopInstances: boolean }): Promise<void> {
    await this.service.runtime.shutdown(opts.stopInstances);
  }
}
