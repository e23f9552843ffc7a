// Storage drivers by name. One line each.
import { dirDriver } from "./dir.js";
import type { DriverDefinition } from "./types.js";

export const storageDrivers: Record<string, DriverDefinition> = {
  dir: dirDriver,
};
