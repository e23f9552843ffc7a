// lvm pool and volume keys, and the pool defaults upstream fills in at creation.
import { statfsSync } from "node:fs";
import { join } from "node:path";
import { commonPoolKeys, commonVolumeKeys, isBoolStrict, isSize } from "../config.js";
import { assertLvmName } from "./lvm-tools.js";
import type { DriverEnv, DriverInfo, PoolSpec } from "./types.js";

export const THINPOOL_DEFAULT = "LXDThinPool";
/** Marks a VG as used by a pool (upstream's lvmVgPoolMarker). */
export const VG_MARKER = "lxd_pool";
/** Marks an LV whose filesystem is made at its first activation (created where the kernel can't activate). */
export const UNFORMATTED_TAG = "nodelxd_unformatted";
export const DEFAULT_VOLUME_SIZE = "10GiB";
const FILESYSTEMS = ["ext4", "xfs", "btrfs"];
export const NO_DM_REASON = "no device-mapper in this kernel";

export const isBool = (v: string) => ["true", "1", "yes", "on"].includes(v.toLowerCase());
export const isFalse = (v: string | undefined) => v !== undefined && ["false", "0", "no", "off"].includes(v.toLowerCase());

const poolKeys = {
  ...commonPoolKeys,
  size: { validate: isSize, doc: "Size of the loop file backing the volume group" },
  "lvm.vg_name": { validate: (v: string) => assertLvmName("volume group", v), doc: "Name of the volume group" },
  "lvm.thinpool_name": { validate: (v: string) => assertLvmName("thin pool", v), doc: "Thin pool where volumes are created", default: THINPOOL_DEFAULT },
  "lvm.thinpool_metadata_size": { validate: isSize, doc: "Size of the thin pool's metadata volume (0: lvm picks)" },
  "lvm.use_thinpool": { validate: isBoolStrict, doc: "Whether the pool uses a thin pool for logical volumes", default: "true" },
  "lvm.vg.force_reuse": { validate: isBoolStrict, doc: "Force using an existing non-empty volume group" },
};

const volumeKeys = {
  ...commonVolumeKeys,
  "block.filesystem": {
    validate: (v: string) => {
      if (!FILESYSTEMS.includes(v)) throw new Error(`Invalid value "${v}" (not one of ${JSON.stringify(FILESYSTEMS)})`);
    },
    doc: "Filesystem of the storage volume",
    default: "ext4",
  },
  "block.mount_options": { validate: () => {}, doc: "Mount options for block devices", default: "discard" },
  "lvm.stripes": { validate: (v: string) => void (/^\d+$/.test(v) || (() => { throw new Error(`Invalid value "${v}"`); })()), doc: "Number of stripes (thick volumes)" },
  "lvm.stripes.size": { validate: isSize, doc: "Size of stripes (thick volumes)" },
};

export const baseInfo: DriverInfo = { name: "lvm", remote: false, optimizedImages: true, poolKeys, volumeKeys, mutablePoolKeys: ["lvm.vg_name", "lvm.thinpool_name"] };

export const loopFile = (env: DriverEnv, pool: string) => join(env.lxdDir, "disks", `${pool}.img`);

/** LXD's default loop size: a fifth of the free space, between 5 and 30 GiB. */
function defaultLoopSizeGiB(path: string): number {
  const st = statfsSync(path);
  const freeGiB = Math.floor((st.bavail * st.bsize) / 2 ** 30);
  if (freeGiB > 30) return 30;
  if (freeGiB > 5) return Math.floor(freeGiB / 5) || 5;
  return 5;
}

/** Fill in a new pool's config as upstream's Create does (source, size, VG and thin pool names). */
export function fillLvmDefaults(pool: PoolSpec, env: DriverEnv): Record<string, string> {
  const config = { ...pool.config };
  if (isFalse(config["lvm.use_thinpool"])) {
    if (config["lvm.thinpool_name"]) throw new Error("The key lvm.use_thinpool cannot be set to false when lvm.thinpool_name is set");
    if (config["lvm.thinpool_metadata_size"]) throw new Error("The key lvm.use_thinpool cannot be set to false when lvm.thinpool_metadata_size is set");
  } else if (!config["lvm.thinpool_name"]) config["lvm.thinpool_name"] = THINPOOL_DEFAULT;
  const source = config.source ?? "";
  if (source === "" || source === loopFile(env, pool.name)) {
    config.source = loopFile(env, pool.name);
    if (!config["lvm.vg_name"]) config["lvm.vg_name"] = pool.name;
    if (!config.size) config.size = `${defaultLoopSizeGiB(env.lxdDir)}GiB`;
  } else if (source.startsWith("/")) {
    if (!source.startsWith("/dev/")) throw new Error("Custom loop file locations are not supported");
    config["volatile.initial_source"] = source;
    config.size = "";
    if (!config["lvm.vg_name"]) config["lvm.vg_name"] = pool.name;
    config.source = config["lvm.vg_name"];
  } else {
    if (config["lvm.vg_name"] && config["lvm.vg_name"] !== source) throw new Error("Invalid combination of source and lvm.vg_name properties");
    config["lvm.vg_name"] = source;
    config["volatile.initial_source"] = source;
    config.size = "";
  }
  for (const k of Object.keys(config)) if (config[k] === "") delete config[k];
  return config;
}
