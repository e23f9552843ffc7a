// The feature modules the daemon loads, in start order. One line each.
import { ImagesFeature } from "../images/feature.js";
import type { FeatureFactory } from "./daemon.js";

export const features: FeatureFactory[] = [
  (core) => new ImagesFeature(core),
];
