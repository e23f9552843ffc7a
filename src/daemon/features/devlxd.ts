// The guest API feature: serves $LXD_DIR/devlxd/sock while the daemon runs (containers with
// security.devlxd get the directory at /dev/lxd, see the instance runtime).
import { join } from "node:path";
import type { Core, Feature } from "../feature.js";
import { DevlxdServer } from "../../devlxd/server.js";

export class DevlxdFeature implements Feature {
  readonly name = "devlxd";
  private readonly server: DevlxdServer;

  constructor(core: Core) {
    this.server = new DevlxdServer({
      dir: join(core.paths.dir, "devlxd"),
      log: core.log,
      events: core.events,
      running: () => core.ports.instances?.running?.() ?? [],
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
