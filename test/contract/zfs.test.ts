import { zfsDriver } from "../../src/storage/drivers/zfs.js";
import { testDriver } from "./storage-driver.js";

// Runs only where the zfs kernel module and tools exist (not on the project's test hosts).
const version = await zfsDriver.probe();
testDriver({ definition: zfsDriver, poolConfig: { size: "256MiB" }, skip: version ? undefined : "no zfs kernel module or tools on this host" });
