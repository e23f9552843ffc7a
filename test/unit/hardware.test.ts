// gpu/usb/unix-hotplug/tpm/pci/infiniband: LXD's validation, and hardware lookup in a sysfs tree
// the test builds (this host has no GPU and no USB).
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findGpus, findUsb, HardwareDevice } from "../../src/devices/hardware.js";
import { InfinibandDevice } from "../../src/devices/infiniband.js";
import { TpmDevice } from "../../src/devices/tpm.js";
import type { DeviceContext } from "../../src/devices/types.js";
import { UnixHotplugDevice } from "../../src/devices/unix-hotplug.js";
import { UsbDevice } from "../../src/devices/usb.js";

const root = mkdtempSync("/tmp/nodelxd-sysfs-");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const put = (p: string, v: string) => {
  mkdirSync(join(root, p, ".."), { recursive: true });
  writeFileSync(join(root, p), v + "\n");
};
put("bus/pci/devices/0000:00:02.0/class", "0x030000");
put("bus/pci/devices/0000:00:02.0/vendor", "0x8086");
put("bus/pci/devices/0000:00:02.0/device", "0x5916");
put("bus/pci/devices/0000:00:02.0/drm/card0/dev", "226:0");
put("bus/pci/devices/0000:00:02.0/drm/renderD128/dev", "226:128");
put("bus/pci/devices/0000:00:02.0/drm/controlD64/dev", "226:64");
put("bus/pci/devices/0000:00:02.0/drm/version", "1.1.0 20060810");
put("bus/pci/devices/0000:00:03.0/class", "0x020000");
put("bus/usb/devices/1-1/idVendor", "046d");
put("bus/usb/devices/1-1/idProduct", "c52b");
put("bus/usb/devices/1-1/busnum", "1");
put("bus/usb/devices/1-1/devnum", "3");
put("bus/usb/devices/1-1/dev", "189:2");

// /dev/dri of the tree: card0 and renderD128 exist there, controlD64 does not (LXD skips it).
const devRoot = mkdtempSync("/tmp/nodelxd-devfs-");
mkdirSync(join(devRoot, "dri"));
writeFileSync(join(devRoot, "dri/card0"), "");
writeFileSync(join(devRoot, "dri/renderD128"), "");
const devicesDir = mkdtempSync("/tmp/nodelxd-devices-");
afterAll(() => {
  rmSync(devRoot, { recursive: true, force: true });
  rmSync(devicesDir, { recursive: true, force: true });
});
const ctx = { project: "default", instance: "c", devicesDir, idmap: [], hostRootId: { uid: 0, gid: 0 } } as unknown as DeviceContext;
const roots = { sys: root, dev: devRoot, proc: join(root, "proc") };
const dev = (config: Record<string, string>) => {
  if (config.type === "usb") return new UsbDevice(ctx, "d", config, roots);
  if (config.type === "unix-hotplug") return new UnixHotplugDevice(ctx, "d", config, roots);
  if (config.type === "tpm") return new TpmDevice(ctx, "d", config);
  if (config.type === "infiniband") return new InfinibandDevice(ctx, "d", config, roots);
  return new HardwareDevice(ctx, "d", config, roots);
};

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
    expect(findGpus(root)).toEqual([
      {
        pci: "0000:00:02.0",
        vendorid: "8086",
        productid: "5916",
        driver: "",
        ids: ["0"],
        drm: [
          { name: "card0", dev: "226:0" },
          { name: "controlD64", dev: "226:64" },
          { name: "renderD128", dev: "226:128" },
        ],
      },
    ]);
    expect(findUsb(root)).toEqual([{ vendorid: "046d", productid: "c52b", busnum: 1, devnum: 3, dev: "189:2" }]);
    await expect(dev({ type: "gpu", vendorid: "10de" }).start()).rejects.toThrow("Failed to detect requested GPU device");
    await expect(dev({ type: "gpu", pci: "00:03.0" }).start()).rejects.toThrow("Failed to detect requested GPU device");
    await expect(dev({ type: "usb", vendorid: "1234", required: "true" }).start()).rejects.toThrow('Failed to start device "d": Required USB device not found');
    expect((await dev({ type: "usb", vendorid: "1234" }).start()).lxc).toEqual([]);
    await expect(dev({ type: "unix-hotplug", vendorid: "1234", required: "true" }).start()).rejects.toThrow('Failed to start device "d": Required Unix Hotplug device not found');
    expect((await dev({ type: "unix-hotplug", vendorid: "1234" }).start()).lxc).toEqual([]);
    await expect(dev({ type: "infiniband", nictype: "physical", parent: "ib0", name: "ib0" }).start()).rejects.toThrow(`Failed to start device "d": Parent device 'ib0' doesn't exist`);
  });
});

describe("gpu physical passthrough", () => {
  it("passes a matching card's DRM nodes through as unix-char devices, as LXD's startContainer", async () => {
    const gpu = dev({ type: "gpu", vendorid: "8086", uid: "1000", gid: "44", mode: "0666" });
    const rc = await gpu.start();
    expect(rc.lxc).toEqual([
      ["lxc.mount.entry", `${devicesDir}/unix.d.dev-dri-card0 dev/dri/card0 none bind,create=file 0 0`],
      ["lxc.cgroup.devices.allow", "c 226:0 rwm"],
      ["lxc.mount.entry", `${devicesDir}/unix.d.dev-dri-renderD128 dev/dri/renderD128 none bind,create=file 0 0`],
      ["lxc.cgroup.devices.allow", "c 226:128 rwm"],
    ]);
    const card = statSync(join(devicesDir, "unix.d.dev-dri-card0"));
    expect(card.isCharacterDevice()).toBe(true);
    expect([card.rdev >> 8, card.rdev & 0xff, card.uid, card.gid, card.mode & 0o777]).toEqual([226, 0, 1000, 44, 0o666]);
    await gpu.stop();
    expect(readdirSync(devicesDir)).toEqual([]);
  });

  it("selects by DRM card id and PCI address, and an id no card has passes nothing", async () => {
    expect((await dev({ type: "gpu", id: "0" }).start()).lxc).toHaveLength(4);
    await dev({ type: "gpu" }).stop();
    expect((await dev({ type: "gpu", pci: "00:02.0" }).start()).lxc).toHaveLength(4);
    await dev({ type: "gpu" }).stop();
    expect(await dev({ type: "gpu", id: "7" }).start()).toEqual({ lxc: [] });
    expect(readdirSync(devicesDir)).toEqual([]);
  });
});
