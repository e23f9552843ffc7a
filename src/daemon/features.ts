// The feature modules the daemon loads, in start order (stopped in reverse). One line each.
import { DevlxdFeature } from "../devlxd/feature.js";
import { ImagesFeature } from "../images/feature.js";
import { MetricsFeature } from "../metrics/feature.js";
import { InstanceAccessFeature } from "../instances/access-feature.js";
import { InstancesFeature } from "../instances/feature.js";
import { NetworksFeature } from "../network/feature.js";
import { ProfilesFeature } from "../profiles/feature.js";
import { ProjectsFeature } from "../projects/feature.js";
import { SnapshotScheduleFeature } from "../snapshots/scheduler.js";
import { StorageFeature } from "../storage/feature.js";
import type { FeatureFactory } from "./daemon.js";

export const features: FeatureFactory[] = [
  (core) => new ImagesFeature(core),
  (core) => new StorageFeature(core),
  (core) => new ProfilesFeature(core),
  (core) => new ProjectsFeature(core),
  (core) => new NetworksFeature(core),
  // Before instances: containers started at boot bind-mount its socket directory.
  (core) => new DevlxdFeature(core),
  (core) => new InstancesFeature(core),
  (core) => new InstanceAccessFeature(core),
  (core) => new SnapshotScheduleFeature(core),
  (core) => new MetricsFeature(core),
];
