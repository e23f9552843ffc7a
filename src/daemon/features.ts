// The feature modules the daemon loads, in start order. One line each.
import type { FeatureFactory } from "./daemon.js";
import { InstancesFeature } from "../instances/feature.js";

export const features: FeatureFactory[] = [
  (core) => new InstancesFeature(core),
];
