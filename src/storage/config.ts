// Storage config keys: validators with LXD's messages, the volume keys every driver shares,
// and pool-config validation ("Invalid option", "Invalid value for option").
import type { KeyTable } from "../config/keys.js";
import type { Validator } from "../config/validators.js";
import { validateSchedule, VOLUME_SCHEDULE_ALIASES } from "../snapshots/cron.js";
import { parseByteSize } from "../shared/units.js";

/** LXD's units.ParseByteSizeString: "10MiB" → bytes; "" → 0; throws "Invalid value: X". */
export const isSize: Validator = (v) => {
  parseByteSize(v);
};

export const isBoolStrict: Validator = (v) => {
  if (!["true", "false", "yes", "no", "on", "off", "1", "0"].includes(v.toLowerCase())) throw new Error(`Invalid value for a boolean "${v}"`);
};

export const isExpiryExpression: Validator = (v) => {
  if (!/^(\s*\d+(M|H|d|w|m|y)\s*)+$/.test(v)) throw new Error("Invalid expiry expression");
};

/** Cron expressions or the volume @aliases, separated by ", " (LXD's validate.IsCron). */
export const isSchedule: Validator = (v) => validateSchedule(v, VOLUME_SCHEDULE_ALIASES);

const any: Validator = () => {};

/** Filesystem volume keys every driver here supports (LXD's common volume rules). */
export const commonVolumeKeys: KeyTable = {
  size: { validate: isSize, doc: "Size/quota of the storage volume" },
  "security.shifted": { validate: isBoolStrict, doc: "Enable id shifting overlay (an idmapped mount: the files keep host ids, containers see their own)" },
  "security.unmapped": { validate: isBoolStrict, doc: "Disable id mapping for the volume (its files keep host ids)" },
  "snapshots.expiry": { validate: isExpiryExpression, doc: "When snapshots are to be deleted" },
  "snapshots.schedule": { validate: isSchedule, doc: "Cron expression or schedule alias" },
  "snapshots.pattern": { validate: any, doc: "Pongo2 template for snapshot names" },
};

/** Pool keys every driver accepts. */
export const commonPoolKeys: KeyTable = {
  source: { validate: any, doc: "Path to block device, loop file or filesystem entry" },
  "volatile.initial_source": { validate: any, doc: "Source as given at creation" },
  "rsync.bwlimit": { validate: isSize, doc: "Upper limit on socket I/O for rsync" },
  "rsync.compression": { validate: isBoolStrict, doc: "Compress rsync migrations", default: "true" },
};

/**
 * Validate a pool config against a driver's pool and volume tables, with LXD's messages.
 * `volume.K` keys are checked against the volume table; `user.*` keys pass.
 */
export function validatePoolConfig(poolKeys: KeyTable, volumeKeys: KeyTable, config: Record<string, string>): void {
  for (const [key, value] of Object.entries(config)) {
    if (key.startsWith("user.")) continue;
    const spec = key.startsWith("volume.") ? volumeKeys[key.slice("volume.".length)] : poolKeys[key];
    if (!spec) throw new Error(`Invalid option "${key}"`);
    if (value === "") continue;
    try {
      spec.validate(value);
    } catch (e) {
      throw new Error(`Invalid value for option "${key}": ${(e as Error).message}`);
    }
  }
}

/** Validate a volume's own config (no volume. prefix). */
export function validateVolumeConfig(volumeKeys: KeyTable, config: Record<string, string>): void {
  for (const [key, value] of Object.entries(config)) {
    if (key.startsWith("user.")) continue;
    const spec = volumeKeys[key];
    if (!spec) throw new Error(`Invalid option "${key}"`);
    if (value === "") continue;
    try {
      spec.validate(value);
    } catch (e) {
      throw new Error(`Invalid value for option "${key}": ${(e as Error).message}`);
    }
  }
}
