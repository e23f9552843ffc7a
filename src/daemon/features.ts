// The feature modules the daemon loads, in start order. One line each.
import { ProfilesFeature } from "../profiles/feature.js";
import { StorageFeature } from "../storage/feature.js";
import { ImagesFeature } from "../images/feature.js";
import type { FeatureFactory } from "./daemon.js";
import { InstancesFeature } from "../instances/feature.js";

export const features: FeatureFactory[] = [
  (core) => new StorageFeature(core),
  (core) => new ProfilesFeature(core),
  (core) => new ImagesFeature(core),
  (core) => new InstancesFeature(core),
];
