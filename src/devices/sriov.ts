// Choosing a free SR-IOV virtual function (infiniband nictype=sriov): what counts as taken is
// LXD 5.0.2's SRIOVGetHostDevicesInUse — every instance device's `parent` and volatile
// `host_name` on this member, and the `parent` of every created managed network — and the
// choice is serialised per parent (in-process), from reading what is taken until the chosen VF
// is recorded in the instance's volatile host_name, so two instances starting at once cannot
// take the same VF.
import { KeyedLock } from "../storage/keyed-lock.js";
import type { DeviceContext } from "./types.js";

const vfLock = new KeyedLock();

/** Run `body` (pick a VF and record it) alone among the picks on `parent`. */
export function withVfLock<T>(parent: string, body: () => Promise<T>): Promise<T> {
  return vfLock.run(parent, body);
}

/** Host interfaces already spoken for: instances' parents and host_names, managed networks' parents. */
export function hostDevicesInUse(ports: DeviceContext["ports"]): Set<string> {
  return new Set([...ports.instances.hostInterfacesInUse(), ...ports.networks.parentsInUse()]);
}
