// The feature modules the daemon loads, in start order (stopped in reverse). One line each.
import { DevlxdFeature } from "./devlxd.js";
import { HardwareEventsFeature } from "./hardware-events.js";
import { ImagesFeature } from "./images.js";
import { MetricsFeature } from "./metrics.js";
import { InstanceAccessFeature } from "./instance-access.js";
import { InstancesFeature } from "./instances.js";
import { NetworksFeature } from "./networks.js";
import { ProfilesFeature } from "./profiles.js";
import { ProjectsFeature } from "./projects.js";
import { SnapshotScheduleFeature } from "../../snapshots/scheduler.js";
import { StorageFeature } from "./storage.js";
import type { FeatureFactory } from "../feature.js";

export const features: FeatureFactory[] = [
  (core) => new ImagesFeature(core),
  (core) => new StorageFeature(core),
  (core) => new ProfilesFeature(core),
  (core) => new ProjectsFeature(core),
  (core) => new NetworksFeature(core),
  // Before instances: containers started at boot bind-mount its socket directory.
  (core) => new DevlxdFeature(core),
  // Before instances: adopted usb/unix-hotplug devices register for its events.
  (core) => new HardwareEventsFeature(core),
  (core) => new InstancesFeature(core),
  (core) => new InstanceAccessFeature(core),
  (core) => new SnapshotScheduleFeature(core),
  (core) => new MetricsFeature(core),
];
