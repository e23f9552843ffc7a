// gpu/usb/unix-hotplug/tpm/pci/infiniband: LXD's validation, and hardware lookup in a sysfs tree
// the test builds (this host has no GPU and no USB).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findGpus, findUsb, HardwareDevice } from "../../src/devices/hardware.js";
import type { DeviceContext } from "../../src/devices/types.js";

const root = mkdtempSync("/tmp/nodelxd-sysfs-");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const put = (p: string, v: string) => {
  mkdirSync(join(root, p, ".."), { recursive: true });
  writeFileSync(join(root, p), v + "\n");
};
put("bus/pci/devices/0000:00:02.0/class", "0x030000");
put("bus/pci/devices/0000:00:02.0/vendor", "0x8086");
put("bus/pci/devices/0000:00:02.0/device", "0x5916");
mkdirSync(join(root, "bus/pci/devices/0000:00:02.0/drm/card0"), { recursive: true });
put("bus/pci/devices/0000:00:03.0/class", "0x020000");
put("bus/usb/devices/1-1/idVendor", "046d");
put("bus/usb/devices/1-1/idProduct", "c52b");
put("bus/usb/devices/1-1/busnum", "1");
put("bus/usb/devices/1-1/devnum", "3");
put("bus/usb/devices/1-1/dev", "189:2");

const dev = (config: Record<string, string>, sysfs = root) => new HardwareDevice({} as DeviceContext, "d", config, sysfs);

describe("hardware devices", () => {
  it("validates with LXD's messages", () => {
    expect(() => dev({ type: "gpu", vendorid: "XYZ" }).validate()).toThrow('Invalid value for device option "vendorid": Invalid value, must be four lower case hex characters');
    expect(() => dev({ type: "gpu", pci: "zz" }).validate()).toThrow('Invalid value for device option "pci": Invalid PCI address');
    expect(() => dev({ type: "gpu", pci: "00:02.0", vendorid: "8086" }).validate()).toThrow('Cannot use "vendorid" when when "pci" is set');
    expect(() => dev({ type: "gpu", id: "0", productid: "5916" }).validate()).toThrow('Cannot use "productid" when when "id" is set');
    expect(() => dev({ type: "gpu", gputype: "mdev", mdev: "x" }).validate()).toThrow("Unsupported device type");
    expect(() => dev({ type: "gpu", foo: "1" }).validate()).toThrow('Invalid device option "foo"');
    expect(() => dev({ type: "usb", productid: "C52B" }).validate()).toThrow("must be four lower case hex characters");
    expect(() => dev({ type: "unix-hotplug" }).validate()).toThrow("Unix hotplug devices require a vendorid or a productid");
    expect(() => dev({ type: "tpm" }).validate()).toThrow('Failed to validate config: Invalid value for device option "path": Required value');
    expect(() => dev({ type: "pci", address: "00:03.0" }).validate()).toThrow("Unsupported device type");
    expect(() => dev({ type: "infiniband", nictype: "physical" }).validate()).toThrow('Invalid value for device option "parent": Required value');
    expect(() => dev({ type: "gpu", vendorid: "8086", mode: "0660", uid: "1", gid: "2" }).validate()).not.toThrow();
    expect(() => dev({ type: "usb", vendorid: "046d", required: "true" }).validate()).not.toThrow();
  });

  it("finds hardware in sysfs and gives LXD's errors when it is absent", async () => {
    expect(findGpus(root)).toEqual([{ pci: "0000:00:02.0", vendorid: "8086", productid: "5916", ids: ["0"] }]);
    expect(findUsb(root)).toEqual([{ vendorid: "046d", productid: "c52b", busnum: 1, devnum: 3, dev: "189:2" }]);
    await expect(dev({ type: "gpu", vendorid: "10de" }).start()).rejects.toThrow("Failed to detect requested GPU device");
    await expect(dev({ type: "gpu", pci: "00:03.0" }).start()).rejects.toThrow("Failed to detect requested GPU device");
    // a match needs what is not implemented: refused, not half done
    await expect(dev({ type: "gpu", pci: "00:02.0" }).start()).rejects.toThrow("not implemented");
    await expect(dev({ type: "usb", vendorid: "1234", required: "true" }).start()).rejects.toThrow("Required USB device not found");
    expect(await dev({ type: "usb", vendorid: "1234" }).start()).toEqual({});
    await expect(dev({ type: "unix-hotplug", vendorid: "1234", required: "true" }).start()).rejects.toThrow('Failed to start device "d": Required Unix Hotplug device not found');
    expect(await dev({ type: "unix-hotplug", vendorid: "1234" }).start()).toEqual({});
    await expect(dev({ type: "infiniband", nictype: "physical", parent: "ib0" }).start()).rejects.toThrow("Parent device 'ib0' doesn't exist");
  });
});
