// Device drivers by type (nic drivers by nictype, or "network" for managed networks).
// One line each.
import { DiskDevice, NoneDevice } from "./disk.js";
import { HardwareDevice } from "./hardware.js";
import { infinibandDevice } from "./infiniband.js";
import { ProxyDevice } from "./proxy.js";
import { TpmDevice } from "./tpm.js";
import { UnixHotplugDevice } from "./unix-hotplug.js";
import { UsbDevice } from "./usb.js";
import { UnixDevice } from "./unix.js";
import type { DeviceConfig, DeviceFactory } from "./types.js";
import { bridgedNic } from "./nic/bridged.js";
import { macvlanNic } from "./nic/macvlan.js";
import { networkNic } from "./nic/network.js";
import { p2pNic, routedNic } from "./nic/p2p.js";

export const deviceDrivers: Record<string, DeviceFactory> = {
  disk: (ctx, name, config) => new DiskDevice(ctx, name, config),
  none: (_ctx, name, config) => new NoneDevice(name, config),
  "unix-char": (ctx, name, config) => new UnixDevice(ctx, name, config, "c"),
  "unix-block": (ctx, name, config) => new UnixDevice(ctx, name, config, "b"),
  proxy: (ctx, name, config) => new ProxyDevice(ctx, name, config),
  gpu: (ctx, name, config) => new HardwareDevice(ctx, name, config),
  usb: (ctx, name, config) => new UsbDevice(ctx, name, config),
  "unix-hotplug": (ctx, name, config) => new UnixHotplugDevice(ctx, name, config),
  tpm: (ctx, name, config) => new TpmDevice(ctx, name, config),
  pci: (ctx, name, config) => new HardwareDevice(ctx, name, config),
  infiniband: infinibandDevice,
};

export const nicDrivers: Record<string, DeviceFactory> = {
  network: networkNic,
  bridged: bridgedNic,
  macvlan: macvlanNic,
  p2p: p2pNic,
  routed: routedNic,
};

/** The factory for a device config; throws LXD's message for unknown types. */
export function deviceFactory(config: DeviceConfig): DeviceFactory {
  const type = config.type ?? "";
  if (type === "nic") {
    const kind = config.network ? "network" : (config.nictype ?? "");
    const f = nicDrivers[kind];
    if (!f) throw new Error(kind ? `Unsupported nictype "${kind}"` : `Missing nic type`);
    return f;
  }
  const f = deviceDrivers[type];
  if (!f) throw new Error(type ? "Unsupported device type" : "Missing device type");
  return f;
}

/**
 * Device values end up in liblxc config lines (mount entries, lxc.net.*) and host commands:
 * a newline or other control character is refused when the device is set, for every type.
 */
export function checkDeviceValues(config: Record<string, string>): void {
  for (const [k, v] of Object.entries(config)) {
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(k) || /[\x00-\x1f\x7f]/.test(String(v))) throw new Error(`Invalid value for "${k}": control characters (such as a newline) are not allowed`);
  }
}

/** As LXD's database writes them: an empty device value is no value (`lxc config device unset` sends ""). */
export function dropEmptyDeviceValues(devices: Record<string, Record<string, string>>): Record<string, Record<string, string>> {
  return Object.fromEntries(Object.entries(devices).map(([name, c]) => [name, Object.fromEntries(Object.entries(c).filter(([, v]) => v !== ""))]));
}
