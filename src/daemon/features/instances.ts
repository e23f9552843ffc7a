// The instances feature: routes, the InstancesPort, and container adoption at start.
import { instanceRoutes } from "../../api/routes/instances.js";
import type { Core, Feature } from "../feature.js";
import { InstanceRuntime } from "../../instances/runtime.js";
import { InstanceService } from "../../instances/service.js";
import { SnapshotService } from "../../instances/snapshots.js";
import { snapshotRoutes } from "../../api/routes/instance-snapshots.js";
import { backupRoutes } from "../../api/routes/instance-backups.js";
import { BackupService } from "../../instances/backups.js";

export class InstancesFeature implements Feature {
  readonly name = "instances";
  readonly service: InstanceService;

  constructor(private readonly core: Core) {
    this.service = new InstanceService(core);
    this.service.runtime = new InstanceRuntime(core, this.service);
    this.service.snapshots = new SnapshotService(core, this.service);
    this.service.backups = new BackupService(core, this.service);
    core.ports.instances = this.service;
    const snapshots = this.service.snapshots;
    (core.ports.snapshotSchedules ??= []).push({ scheduled: () => snapshots.scheduled(), pruneExpired: () => snapshots.pruneExpired() });
  }

  routes() {
    return [...instanceRoutes(this.core, this.service), ...snapshotRoutes(this.core, this.service), ...backupRoutes(this.core, this.service)];
  }

  async start(): Promise<void> {
    await this.service.snapshots.recover();
    await this.service.backups?.recover();
    await this.service.runtime.adopt();
    this.service.backups?.startExpiry();
  }

  /** Ready once the instances to autostart have been started (or failed to), as LXD. */
  ready(): Promise<void> {
    return this.service.runtime.autostarted;
  }

  async stop(opts: { stopInstances: boolean }): Promise<void> {
    this.service.backups?.stopExpiry();
    await this.service.runtime.shutdown(opts.stopInstances);
  }
}
