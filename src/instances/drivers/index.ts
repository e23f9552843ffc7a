// The instance drivers, one line each. A new instance type (QEMU virtual machines next) is one
// file or folder implementing InstanceDriver, one line here, and a run of
// test/contract/instance-driver.ts against it.
import { lxcDriver } from "../lxc/driver.js";
import type { InstanceDriverDefinition } from "./types.js";

export const instanceDrivers = {
  lxc: lxcDriver,
} satisfies Record<string, InstanceDriverDefinition>;

export type InstanceDriverName = keyof typeof instanceDrivers;

/** The driver serving an instance type (LXD's "container" / "virtual-machine"). */
export function driverForType(type: string): InstanceDriverDefinition | undefined {
  return Object.values(instanceDrivers).find((d) => d.info.type === type);
}
