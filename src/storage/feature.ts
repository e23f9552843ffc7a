import { storagePoolRoutes } from "../api/routes/storage-pools.js";
import type { Core, Feature } from "../daemon/daemon.js";
import { PoolService } from "./pool-service.js";
import { VolumeSnapshotService } from "./volume-snapshots.js";

export class StorageFeature implements Feature {
  readonly name = "storage";
  readonly service: PoolService;
  readonly snapshots: VolumeSnapshotService;

  constructor(private readonly core: Core) {
    this.service = new PoolService(core);
    this.snapshots = new VolumeSnapshotService(core, this.service);
    const snapshots = this.snapshots;
    (core.ports.snapshotSchedules ??= []).push({ scheduled: () => snapshots.scheduled(), pruneExpired: () => snapshots.pruneExpired() });
    core.ports.storage = this.service;
    core.server.setStorageInfo(() => this.service.environment());
  }

  routes() {
    return storagePoolRoutes(this.core, this.service, this.snapshots);
  }

  start() {
    return this.service.start();
  }

  stop(opts: { stopInstances: boolean }) {
    return this.service.stop(opts);
  }
}
