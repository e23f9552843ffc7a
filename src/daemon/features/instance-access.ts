// Exec, console and file transfer for instances: everything that reaches inside a
// container through the instances port's runtime().
import { consoleRoutes } from "../../api/routes/instance-console.js";
import { execRoutes } from "../../api/routes/instance-exec.js";
import { fileRoutes } from "../../api/routes/instance-files.js";
import { sftpRoutes, sftpUpgrade } from "../../api/routes/instance-sftp.js";
import type { UpgradeRoute } from "../../api/websocket.js";
import type { Core, Feature } from "../feature.js";
import { ConsoleService } from "../../console/console-service.js";
import { ExecService } from "../../exec/exec-service.js";
import { FileService } from "../../files/file-service.js";
import type { RuntimeOf } from "../../instances/access.js";
import type { InstanceService } from "../../instances/service.js";

export class InstanceAccessFeature implements Feature {
  readonly name = "instance-access";
  private readonly exec: ExecService;
  private readonly files: FileService;
  private readonly console: ConsoleService;

  private readonly runtimeOf: RuntimeOf;

  constructor(core: Core, instances: InstanceService) {
    this.runtimeOf = (project, name) => instances.runtimeOf(project, name);
    this.exec = new ExecService({ runtimeOf: this.runtimeOf, operations: core.operations, log: core.log });
    this.files = new FileService({ runtimeOf: this.runtimeOf });
    this.console = new ConsoleService({ runtimeOf: this.runtimeOf, operations: core.operations });
  }

  routes() {
    return [
      ...execRoutes(this.exec),
      ...fileRoutes(this.files),
      ...consoleRoutes(this.console),
      ...sftpRoutes(),
    ];
  }

  upgrades(): UpgradeRoute[] {
    return [sftpUpgrade(this.runtimeOf)];
  }

  async stop(): Promise<void> {
    this.exec.stop();
    this.console.stop();
  }
}
