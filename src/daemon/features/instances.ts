// The instances feature: routes, the InstancesPort, and instance adoption at start. The wiring
// of the instances tiers happens here once: the service owns the rows; the runtime, watcher and
// devices get the service as InstanceRecords and the driver from the registry.
import { instanceRoutes } from "../../api/routes/instances.js";
import type { Core, Feature } from "../feature.js";
import { ownsHere } from "../ports.js";
import { instanceDrivers } from "../../instances/drivers/index.js";
import { InstanceDevices } from "../../instances/instance-devices.js";
import { InstanceFiles } from "../../instances/instance-files.js";
import { InstanceRuntime } from "../../instances/runtime.js";
import { InstanceService } from "../../instances/service.js";
import { SnapshotService, type SnapshotStorage } from "../../instances/snapshots.js";
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
  private unfollow?: () => void;

  constructor(private readonly core: Core) {
    const svc = (this.service = new InstanceService({ db: core.db, ports: core.ports, events: core.events, host: core.host, paths: core.paths }));
    const log = core.log;
    const driver = instanceDrivers.lxc.load({ lxdDir: core.paths.dir, paths: core.paths, log });
    const devices = (svc.devices = new InstanceDevices({ records: svc, driver, ports: core.ports, log }));
    const mountVolume = (project: string, pool: string, name: string) => {
      const storage = core.ports.storage;
      if (!storage) throw new Error("Storage is not available (no storage feature loaded)");
      return storage.mountInstanceVolume(project, pool, name);
    };
    svc.runtime = new InstanceRuntime({ records: svc, driver, devices, mountVolume, beforeStart: (p, n, config) => {
        assertSnapshotRecords(core.db, p, n);
        return svc.snapshots.startupSnapshot(p, n, config);
      }, events: core.events, log });
    this.watcher = new InstanceWatcher({ records: svc, runtime: svc.runtime, devices, events: core.events, warnings: core.warnings, log });
    this.files = new InstanceFiles(driver, (row) => svc.volumeDir(row));
    // Storage and projects load before instances (features/index.ts).
    const storage = core.ports.storage;
    const projects = core.ports.projects;
    const snapshotStorage = (s: typeof storage): s is NonNullable<typeof storage> & SnapshotStorage =>
      !!s?.createInstanceSnapshot && !!s.deleteInstanceSnapshot && !!s.renameInstanceSnapshot && !!s.restoreInstanceSnapshot && !!s.mountInstanceSnapshot && !!s.syncInstanceVolume;
    if (!snapshotStorage(storage) || !projects) throw new Error("instances need the storage (with snapshots) and projects features loaded first");
    svc.snapshots = new SnapshotService({ db: core.db, events: core.events, log, storage, projects, ownsHere: (node) => ownsHere(core.ports, node) }, svc);
    svc.backups = new BackupService(core, svc, svc.snapshots);
    core.ports.instances = svc;
    svc.recovery = new InstanceRecovery(svc, (row) => this.watcher.reconcileUnrecorded(row));
    this.backupFile = new BackupFile(svc, log);
    const snapshots = svc.snapshots;
    (core.ports.snapshotSchedules ??= []).push({ scheduled: () => snapshots.scheduled(), pruneExpired: () => snapshots.pruneExpired(), prunesOwn: true });
  }

  routes() {
    return [...instanceRoutes(this.core, this.service, this.files), ...snapshotRoutes(this.core, this.service), ...backupRoutes(this.core, this.service)];
  }

  async start(): Promise<void> {
    await this.service.snapshots.recover();
    await this.service.backups?.recover();
    await this.watcher.adopt();
    this.service.backups?.startExpiry();
    // backup.yaml in each instance volume follows the instance's lifecycle (for `lxd recover`).
    this.unfollow = this.backupFile.follow(this.core.events);
  }

  /** Ready once the instances to autostart have been started (or failed to), as LXD. */
  ready(): Promise<void> {
    return this.watcher.autostarted;
  }

  async stop(opts: { stopInstances: boolean }): Promise<void> {
    this.service.backups?.stopExpiry();
    this.unfollow?.();
    await this.backupFile.settled();
    await this.watcher.shutdown(opts.stopInstances);
  }
}
