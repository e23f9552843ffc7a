// The snapshot scheduler as a feature: started with the daemon, given every source of
// scheduled snapshots (custom volumes, instances) by the wiring.
import type { Core, Feature } from "../feature.js";
import type { ClusterPort, SnapshotScheduleSource } from "../../ports.js";
import { SnapshotScheduler } from "../../snapshots/scheduler.js";

export class SnapshotScheduleFeature implements Feature {
  readonly name = "snapshot-schedule";
  readonly scheduler: SnapshotScheduler;

  constructor(core: Core, deps: { cluster: ClusterPort; sources: SnapshotScheduleSource[] }) {
    this.scheduler = new SnapshotScheduler({ db: core.db, log: core.log, cluster: deps.cluster }, () => deps.sources);
  }

  routes() {
    return [];
  }

  async start(): Promise<void> {
    this.scheduler.start();
  }

  async stop(): Promise<void> {
    await this.scheduler.stop();
  }
}
