// LXD 5.0.2's canMigrate: the `cluster.evacuate` policy first, else every device must be able to
// follow its instance to another member (device CanMigrate).
import { describe, expect, it } from "vitest";
import { canMigrate, deviceCanMigrate } from "../../src/migration/evacuation.js";

const look = {
  poolDriver: (p: string) => ({ local: "dir", shared: "ceph", fs: "cephfs" })[p],
  networkType: (n: string) => ({ br: "bridge", phys: "physical", ovn0: "ovn" })[n],
};
const root = { root: { type: "disk", path: "/", pool: "local" } };

describe("deviceCanMigrate", () => {
  it("lets the root disk and disks on remote pools follow, not host paths or local pools", () => {
    expect(deviceCanMigrate({ type: "disk", path: "/", pool: "local" }, look)).toBe(true);
    expect(deviceCanMigrate({ type: "disk", path: "/mnt", pool: "shared", source: "vol" }, look)).toBe(true);
    expect(deviceCanMigrate({ type: "disk", path: "/mnt", pool: "fs", source: "vol" }, look)).toBe(true);
    expect(deviceCanMigrate({ type: "disk", path: "/mnt", pool: "local", source: "vol" }, look)).toBe(false);
    expect(deviceCanMigrate({ type: "disk", path: "/mnt", source: "/srv" }, look)).toBe(false);
  });

  it("lets NICs on managed networks follow (not physical ones or unmanaged parents)", () => {
    expect(deviceCanMigrate({ type: "nic", network: "br" }, look)).toBe(true);
    expect(deviceCanMigrate({ type: "nic", network: "ovn0" }, look)).toBe(true);
    expect(deviceCanMigrate({ type: "nic", network: "phys" }, look)).toBe(false);
    expect(deviceCanMigrate({ type: "nic", nictype: "bridged", parent: "br0" }, look)).toBe(false);
    expect(deviceCanMigrate({ type: "nic", nictype: "macvlan", parent: "eth0" }, look)).toBe(false);
  });

  it("lets none and tpm follow, and no host device", () => {
    expect(deviceCanMigrate({ type: "none" }, look)).toBe(true);
    expect(deviceCanMigrate({ type: "tpm", path: "/dev/tpm0" }, look)).toBe(true);
    for (const type of ["unix-char", "unix-block", "usb", "gpu", "proxy", "infiniband", "unix-hotplug"]) expect(deviceCanMigrate({ type }, look)).toBe(false);
  });
});

describe("canMigrate", () => {
  it("follows the policy before the devices", () => {
    const hostPath = { ...root, hd: { type: "disk", path: "/mnt", source: "/srv" } };
    expect(canMigrate({}, root, look)).toEqual({ migrate: true, live: false });
    expect(canMigrate({ "cluster.evacuate": "auto" }, hostPath, look)).toEqual({ migrate: false, live: false });
    expect(canMigrate({ "cluster.evacuate": "migrate" }, hostPath, look)).toEqual({ migrate: true, live: false });
    expect(canMigrate({ "cluster.evacuate": "live-migrate" }, root, look)).toEqual({ migrate: true, live: true });
    expect(canMigrate({ "cluster.evacuate": "stop" }, root, look)).toEqual({ migrate: false, live: false });
  });
});
