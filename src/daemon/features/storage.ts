import { recoverRoutes } from "../../api/routes/recover.js";
import { storagePoolRoutes } from "../../api/routes/storage-pools.js";
import type { Core, Feature } from "../feature.js";
import type { Ports, SnapshotScheduleSource } from "../../ports.js";
import { PoolService } from "../../storage/pool-service.js";
import { PoolMembers } from "../../storage/pool-members.js";
import { VolumeBackupService } from "../../storage/volume-backups.js";
import { VolumeSnapshotService } from "../../storage/volume-snapshots.js";
import { VolumeCopyService } from "../../storage/volume-copy.js";
import { VolumeMigration } from "../../migration/volumes.js";
import { repairMissingSnapshotRecords } from "../../storage/snapshot-records.js";
import { storagePort } from "../../storage/port.js";
import { DaemonStorage } from "../../storage/daemon-storage.js";

export class StorageFeature implements Feature {
  readonly name = "storage";
  readonly service: PoolService;
  /** What other features ask of storage (instance volumes, pools, recover). */
  readonly port: ReturnType<typeof storagePort>;
  readonly snapshots: VolumeSnapshotService;
  readonly backups: VolumeBackupService;
  readonly copies: VolumeCopyService;
  readonly migration: VolumeMigration;
  /** storage.backups_volume / storage.images_volume. */
  readonly daemonStorage: DaemonStorage;
  private readonly members: PoolMembers;
  /** Custom volumes' scheduled snapshots and expiring snapshots and backups. */
  readonly scheduleSource: SnapshotScheduleSource;
  private readonly cluster: Ports["cluster"];

  constructor(
    private readonly core: Core,
    ports: Pick<Ports, "cluster" | "images" | "instances" | "projects">,
  ) {
    const { db, log, events, paths, server } = core;
    this.cluster = ports.cluster;
    this.service = new PoolService({ db, log, events, paths, server, ports });
    this.port = storagePort(this.service);
    this.daemonStorage = new DaemonStorage({ lxdDir: paths.dir, log, config: (key) => server.get(key) }, this.service);
    this.snapshots = new VolumeSnapshotService({ db, log, events, cluster: ports.cluster, instances: ports.instances }, this.service);
    this.backups = new VolumeBackupService({ db, log, events, lxdDir: paths.dir }, this.service, this.snapshots);
    const volumesProject = (project: string) => ports.projects.effectiveProject(project, "storage.volumes");
    this.copies = new VolumeCopyService(volumesProject, this.service, this.snapshots);
    this.migration = new VolumeMigration({ operations: core.operations, lxdDir: paths.dir }, this.service, this.snapshots, this.copies);
    this.members = new PoolMembers({ db, log, events, lxdDir: paths.dir, server, cluster: ports.cluster }, this.service);
    const snapshots = this.snapshots;
    const backups = this.backups;
    this.scheduleSource = { scheduled: () => snapshots.scheduled(), pruneExpired: async () => (await snapshots.pruneExpired(), await backups.pruneExpired()), prunesOwn: true };
    this.service.volumes.customVolumeListeners.push({ renamed: (v, to) => backups.volumeRenamed(v, to), deleted: (v) => backups.volumeDeleted(v) });
    server.setStorageInfo(() => this.service.environment());
  }

  routes() {
    const deps = { operations: this.core.operations, config: (key: string) => this.core.server.get(key), members: this.members };
    return [...storagePoolRoutes(deps, this.service, this.snapshots, this.backups, { copies: this.copies, migration: this.migration }), ...recoverRoutes(this.service)];
  }

  async start() {
    // A cluster member settles its crash leftovers' rows once it is back in the cluster (ready()).
    const standalone = !this.cluster.isMember();
    await this.service.start({ leftovers: standalone });
    await this.daemonStorage.mountAll();
    repairMissingSnapshotRecords(this.core.db, this.core.log);
    if (standalone) await this.backups.recover();
    else this.backups.recoverFiles();
  }

  async ready(): Promise<void> {
    this.cluster.settleLeftovers("volumes and volume backups", async (here) => {
      await this.service.recoverLeftovers(here);
      await this.backups.recoverRows(here);
    });
  }

  async stop(opts: { stopInstances: boolean }) {
    await this.daemonStorage.unmountAll();
    return this.service.stop(opts);
  }
}
