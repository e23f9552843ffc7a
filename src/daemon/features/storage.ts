import { recoverRoutes } from "../../api/routes/recover.js";
import { storagePoolRoutes } from "../../api/routes/storage-pools.js";
import type { Core, Feature } from "../feature.js";
import { PoolService } from "../../storage/pool-service.js";
import { VolumeBackupService } from "../../storage/volume-backups.js";
import { VolumeSnapshotService } from "../../storage/volume-snapshots.js";

export class StorageFeature implements Feature {
  readonly name = "storage";
  readonly service: PoolService;
  readonly snapshots: VolumeSnapshotService;
  readonly backups: VolumeBackupService;

  constructor(private readonly core: Core) {
    this.service = new PoolService(core);
    this.snapshots = new VolumeSnapshotService(core, this.service);
    this.backups = new VolumeBackupService(core, this.service, this.snapshots);
    const snapshots = this.snapshots;
    const backups = this.backups;
    (core.ports.snapshotSchedules ??= []).push({ scheduled: () => snapshots.scheduled(), pruneExpired: async () => (await snapshots.pruneExpired(), await backups.pruneExpired()) });
    this.service.customVolumeListeners.push({ renamed: (v, to) => backups.volumeRenamed(v, to), deleted: (v) => backups.volumeDeleted(v) });
    core.ports.storage = this.service;
    core.server.setStorageInfo(() => this.service.environment());
  }

  routes() {
    return [...storagePoolRoutes(this.core, this.service, this.snapshots, this.backups), ...recoverRoutes(this.service)];
  }

  async start() {
    await this.service.start();
    await this.backups.recover();
  }

  stop(opts: { stopInstances: boolean }) {
    return this.service.stop(opts);
  }
}
