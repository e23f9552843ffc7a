// The feature modules the daemon loads, in start order. One line each.
import type { FeatureFactory } from "./daemon.js";
import { NetworksFeature } from "../network/feature.js";

export const features: FeatureFactory[] = [
  (core) => new NetworksFeature(core),
];
