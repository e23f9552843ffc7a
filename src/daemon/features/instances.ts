// The instances feature: routes, the InstancesPort, and instance adoption at start. The wiring
// of the instances tiers happens here once: the service owns the rows; the runtime, watcher and
// devices get the service as InstanceRecords and the driver from the registry.
import { isStagingName } from "../../migration/move-journal.js";
import { instanceRoutes } from "../../api/routes/instances.js";
import type { Core, Feature } from "../feature.js";
import type { ClusterPort, Ports, SnapshotScheduleSource } from "../../ports.js";
import { instanceDrivers } from "../../instances/drivers/index.js";
import { InstanceDevices } from "../../instances/instance-devices.js";
import { InstanceFiles } from "../../instances/instance-files.js";
import { InstanceRuntime } from "../../instances/runtime.js";
import { InstanceService } from "../../instances/service.js";
import { SnapshotService } from "../../instances/snapshots.js";
import { InstanceMigration } from "../../migration/instances.js";
import { ClusterMove } from "../../migration/cluster-move.js";
import { Evacuation } from "../../migration/evacuation.js";
import { snapshotRoutes } from "../../api/routes/instance-snapshots.js";
import { backupRoutes } from "../../api/routes/instance-backups.js";
import { BackupService } from "../../instances/backups.js";
import { InstanceWatcher } from "../../instances/watcher.js";
import { BackupFile } from "../../instances/backup-file.js";
import { InstanceRecovery } from "../../instances/recover.js";
import { assertSnapshotRecords } from "../../storage/snapshot-records.js";

export class InstancesFeature implements Feature {
  readonly name = "instances";
  readonly service: InstanceService;
  private readonly watcher: InstanceWatcher;
  private readonly files: InstanceFiles;
  private readonly backupFile: BackupFile;
  private readonly migration: InstanceMigration;
  /** Moves to another cluster member (instance POST with ?target=, evacuation). */
  readonly clusterMove: ClusterMove;
  /** Evacuating and restoring this member's instances. */
  readonly evacuation: Evacuation;
  private readonly cluster: ClusterPort;
  private unfollow?: () => void;
  /** Instances' scheduled snapshots and expiring snapshots. */
  readonly scheduleSource: SnapshotScheduleSource;

  /** `ports`: the other features' (storage and projects are built before this one). */
  /** When this daemon started: moves journalled before then are not running any more. */
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly core: Core,
    ports: Omit<Ports, "instances">,
  ) {
    this.cluster = ports.cluster;
    const svc = (this.service = new InstanceService({ db: core.db, ports, events: core.events, host: core.host, paths: core.paths, log: core.log }));
    const log = core.log;
    const driver = instanceDrivers.lxc.load({ lxdDir: core.paths.dir, paths: core.paths, log });
    const devices = (svc.devices = new InstanceDevices({ records: svc, driver, ports: { ...ports, instances: svc }, log }));
    const mountVolume = (project: string, pool: string, name: string) => ports.storage.mountInstanceVolume(project, pool, name);
    svc.runtime = new InstanceRuntime({ records: svc, driver, devices, mountVolume, beforeStart: (p, n, config) => {
        assertSnapshotRecords(core.db, p, n);
        return svc.snapshots.startupSnapshot(p, n, config);
      }, events: core.events, log });
    this.watcher = new InstanceWatcher({ records: svc, runtime: svc.runtime, devices, events: core.events, warnings: core.warnings, log });
    this.files = new InstanceFiles(driver, (row) => svc.volumeDir(row));
    const cluster = ports.cluster;
    svc.snapshots = new SnapshotService({ db: core.db, events: core.events, log, storage: ports.storage, projects: ports.projects, ownsHere: (node) => cluster.owns(node) }, svc);
    const backupDeps = { db: core.db, log, events: core.events, lxdDir: core.paths.dir, architecture: core.host.kernel_architecture, cluster, ports };
    svc.backups = new BackupService(backupDeps, svc, svc.snapshots);
    this.migration = new InstanceMigration({ operations: core.operations, storage: ports.storage, lxdDir: core.paths.dir }, svc);
    this.clusterMove = new ClusterMove({ cluster, operations: core.operations, migration: this.migration }, svc);
    const attempt = <T>(fn: () => T): T | undefined => {
      try {
        return fn();
      } catch {
        return undefined;
      }
    };
    this.evacuation = new Evacuation(
      {
        cluster,
        move: this.clusterMove,
        poolDriver: (pool) => attempt(() => ports.storage.getPool(pool).driver),
        networkType: (project, network) => attempt(() => ports.networks.get(project, network).type),
        log,
      },
      svc,
    );
    svc.recovery = new InstanceRecovery(svc, (row) => this.watcher.reconcileUnrecorded(row));
    this.backupFile = new BackupFile(svc, log);
    const snapshots = svc.snapshots;
    this.scheduleSource = { scheduled: () => snapshots.scheduled(), pruneExpired: () => snapshots.pruneExpired(), prunesOwn: true };
  }

  routes() {
    const { operations, events, server } = this.core;
    const migration = this.migration;
    return [
      ...instanceRoutes({ operations, events, cluster: this.cluster, migration, clusterMove: this.clusterMove }, this.service, this.files),
      ...snapshotRoutes({ operations, migration }, this.service),
      ...backupRoutes({ operations, config: (key) => server.get(key) }, this.service),
    ];
  }

  async start(): Promise<void> {
    // A cluster member settles its crash leftovers' rows once it is back in the cluster (ready()).
    if (!this.cluster.isMember()) {
      await this.service.snapshots.recover();
      await this.service.backups.recover();
    } else {
      this.service.backups.recoverFiles();
    }
    await this.watcher.adopt();
    this.service.backups.startExpiry();
    // backup.yaml in each instance volume follows the instance's lifecycle (for `lxd recover`).
    this.unfollow = this.backupFile.follow(this.core.events);
  }

  /** Ready once the instances to autostart have been started (or failed to), as LXD. */
  async ready(): Promise<void> {
    await this.watcher.autostarted;
    // Moves to or from this member that its previous daemon did not see to the end (a crash).
    // In the background: a step on another member may wait for that member.
    void this.clusterMove.recover(this.startedAt, this.core.log).catch((err) => this.core.log.warn({ err }, "settling interrupted moves failed"));
    // Creates a crash cut short (a half instance is never running meanwhile). Only now is this
    // member known to be clustered; there a cluster move's copy is the move journal's to settle,
    // and the removals are cluster writes, which wait for the store: in the background.
    const creates = this.service.recoverCreates(this.cluster.clustered() ? { leave: isStagingName } : {});
    if (this.cluster.clustered()) void creates.catch((err) => this.core.log.warn({ err }, "removing half-created instances failed"));
    else await creates;
    this.cluster.settleLeftovers("snapshots and backups", async (here) => {
      await this.service.snapshots.recover(here);
      await this.service.backups.recoverRows(here);
    });
  }

  async stop(opts: { stopInstances: boolean }): Promise<void> {
    this.service.backups.stopExpiry();
    this.unfollow?.();
    await this.backupFile.settled();
    await this.watcher.shutdown(opts.stopInstances);
  }
}
