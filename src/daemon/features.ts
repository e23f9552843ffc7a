// The feature modules the daemon loads, in start order. One line each.
import { InstanceAccessFeature } from "../instances/access-feature.js";
import type { FeatureFactory } from "./daemon.js";

export const features: FeatureFactory[] = [
  (core) => new InstanceAccessFeature(core),
];
