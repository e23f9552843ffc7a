// Storage drivers by name. One line each.
import { btrfsDriver } from "./btrfs.js";
import { cephDriver } from "./ceph.js";
import { cephfsDriver } from "./cephfs.js";
import { dirDriver } from "./dir.js";
import type { DriverDefinition } from "./types.js";
import { zfsDriver } from "./zfs.js";

export const storageDrivers: Record<string, DriverDefinition> = {
  dir: dirDriver,
  btrfs: btrfsDriver,
  zfs: zfsDriver,
  ceph: cephDriver,
  cephfs: cephfsDriver,
};
