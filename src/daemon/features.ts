// The feature modules the daemon loads, in start order. One line each.
import type { FeatureFactory } from "./daemon.js";

export const features: FeatureFactory[] = [];
