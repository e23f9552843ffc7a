// The guest API feature: serves $LXD_DIR/devlxd/sock while the daemon runs (containers with
// security.devlxd get the directory at /dev/lxd, see the instance runtime).
import { join } from "node:path";
import type { Core, Feature } from "../feature.js";
import type { ImagesPort, InstancesPort } from "../../ports.js";
import { DevlxdServer } from "../../devlxd/server.js";

export class DevlxdFeature implements Feature {
  readonly name = "devlxd";
  private readonly server: DevlxdServer;

  constructor(core: Core, ports: { instances: Pick<InstancesPort, "running">; images: Pick<ImagesPort, "exportForGuest"> }) {
    this.server = new DevlxdServer({
      dir: join(core.paths.dir, "devlxd"),
      log: core.log,
      events: core.events,
      running: () => ports.instances.running(),
      exportImage: (project, fingerprint, res) => ports.images.exportForGuest(project, fingerprint, res),
    });
  }

  routes() {
    return [];
  }

  async start(): Promise<void> {
    await this.server.start();
  }

  async stop(): Promise<void> {
    await this.server.stop();
  }
}
