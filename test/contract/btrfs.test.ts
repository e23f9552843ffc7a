import { existsSync, readFileSync } from "node:fs";
import { btrfsDriver } from "../../src/storage/drivers/btrfs.js";
import { testDriver } from "./storage-driver.js";

const supported = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");
testDriver({ definition: btrfsDriver, poolConfig: { size: "256MiB" }, skip: supported ? undefined : "no btrfs on this host" });
