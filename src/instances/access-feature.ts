// Exec, console and file transfer for instances: everything that reaches inside a
// container through the instances port's runtime().
import { execRoutes } from "../api/routes/instance-exec.js";
import type { Core, Feature } from "../daemon/daemon.js";
import { ExecService } from "../exec/exec-service.js";

export class InstanceAccessFeature implements Feature {
  readonly name = "instance-access";
  private readonly exec: ExecService;

  constructor(core: Core) {
    this.exec = new ExecService(core);
  }

  routes() {
    return [...execRoutes(this.exec)];
  }

  async stop(): Promise<void> {
    this.exec.stop();
  }
}
