import { recoverRoutes } from "../api/routes/recover.js";
import { storagePoolRoutes } from "../api/routes/storage-pools.js";
import type { Core, Feature } from "../daemon/daemon.js";
import { PoolService } from "./pool-service.js";

export class StorageFeature implements Feature {
  readonly name = "storage";
  readonly service: PoolService;

  constructor(core: Core) {
    this.service = new PoolService(core);
    core.ports.storage = this.service;
    core.server.setStorageInfo(() => this.service.environment());
  }

  routes() {
    return [...storagePoolRoutes(this.service), ...recoverRoutes(this.service)];
  }

  start() {
    return this.service.start();
  }

  stop(opts: { stopInstances: boolean }) {
    return this.service.stop(opts);
  }
}
