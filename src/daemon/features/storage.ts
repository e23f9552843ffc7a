import { recoverRoutes } from "../../api/routes/recover.js";
import { storagePoolRoutes } from "../../api/routes/storage-pools.js";
import type { Core, Feature } from "../feature.js";
import { PoolService } from "../../storage/pool-service.js";
import { VolumeBackupService } from "../../storage/volume-backups.js";
import { VolumeSnapshotService } from "../../storage/volume-snapshots.js";
import { VolumeCopyService } from "../../storage/volume-copy.js";
import { VolumeMigration } from "../../migration/volumes.js";
import { repairMissingSnapshotRecords } from "../../storage/snapshot-records.js";
import { storagePort } from "../../storage/port.js";

export class StorageFeature implements Feature {
  readonly name = "storage";
  readonly service: PoolService;
  readonly snapshots: VolumeSnapshotService;
  readonly backups: VolumeBackupService;
  readonly copies: VolumeCopyService;
  readonly migration: VolumeMigration;

  constructor(private readonly core: Core) {
    this.service = new PoolService(core);
    this.snapshots = new VolumeSnapshotService(core, this.service);
    this.backups = new VolumeBackupService(core, this.service, this.snapshots);
    // Projects load after storage: asked per request.
    const volumesProject = (project: string) => core.ports.projects?.effectiveProject(project, "storage.volumes") ?? project;
    this.copies = new VolumeCopyService(volumesProject, this.service, this.snapshots);
    this.migration = new VolumeMigration(core, this.service, this.snapshots, this.copies);
    const snapshots = this.snapshots;
    const backups = this.backups;
    (core.ports.snapshotSchedules ??= []).push({ scheduled: () => snapshots.scheduled(), pruneExpired: async () => (await snapshots.pruneExpired(), await backups.pruneExpired()), prunesOwn: true });
    this.service.volumes.customVolumeListeners.push({ renamed: (v, to) => backups.volumeRenamed(v, to), deleted: (v) => backups.volumeDeleted(v) });
    core.ports.storage = storagePort(this.service);
    core.server.setStorageInfo(() => this.service.environment());
  }

  routes() {
    return [...storagePoolRoutes(this.core, this.service, this.snapshots, this.backups, { copies: this.copies, migration: this.migration }), ...recoverRoutes(this.service)];
  }

  async start() {
    await this.service.start();
    repairMissingSnapshotRecords(this.core.db, this.core.log);
    await this.backups.recover();
  }

  stop(opts: { stopInstances: boolean }) {
    return this.service.stop(opts);
  }
}
