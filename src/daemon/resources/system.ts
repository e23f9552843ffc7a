// The machine itself: DMI identity (/sys/class/dmi/id) and what kind of system this is.
import type { SysFs } from "./sysfs.js";

const DMI = "/sys/class/dmi/id";

export interface SystemInfo {
  uuid: string;
  vendor: string;
  product: string;
  family: string;
  version: string;
  sku: string;
  serial: string;
  type: string;
  firmware: { vendor: string; date: string; version: string } | null;
  chassis: { vendor: string; type: string; serial: string; version: string } | null;
  motherboard: { vendor: string; product: string; serial: string; version: string } | null;
}

const CHASSIS_TYPES: Record<number, string> = {
  1: "Other", 2: "Unknown", 3: "Desktop", 4: "Low Profile Desktop", 5: "Pizza Box", 6: "Mini Tower", 7: "Tower", 8: "Portable",
  9: "Laptop", 10: "Notebook", 11: "Hand Held", 12: "Docking Station", 13: "All in One", 14: "Sub Notebook", 15: "Space-saving",
  16: "Lunch Box", 17: "Main Server Chassis", 18: "Expansion Chassis", 19: "Sub Chassis", 20: "Bus Expansion Chassis",
  21: "Peripheral Chassis", 22: "RAID Chassis", 23: "Rack Mount Chassis", 24: "Sealed-case PC", 25: "Multi-system chassis",
  26: "Compact PCI", 27: "Advanced TCA", 28: "Blade", 29: "Blade Enclosure", 30: "Tablet", 31: "Convertible", 32: "Detachable",
  33: "IoT Gateway", 34: "Embedded PC", 35: "Mini PC", 36: "Stick PC",
};

/** container / virtual-machine / physical, from marker files and the CPU's hypervisor flag. */
export function systemType(fs: SysFs): string {
  if (["/run/systemd/container", "/.dockerenv", "/run/.containerenv", "/dev/lxd/sock"].some((p) => fs.exists(p))) return "container";
  const uidMap = (fs.read("/proc/self/uid_map") ?? "").trim().split(/\s+/);
  if (uidMap.length >= 3 && !(uidMap[0] === "0" && uidMap[1] === "0" && uidMap[2] === "4294967295")) return "container";
  if (/^flags\s*:.*\bhypervisor\b/m.test(fs.read("/proc/cpuinfo") ?? "")) return "virtual-machine";
  return "physical";
}

export function readSystem(fs: SysFs): SystemInfo {
  const get = (f: string) => {
    const v = fs.trim(`${DMI}/${f}`) ?? "";
    return /^(Default string|To be filled by O\.E\.M\.|Not Specified|System Product Name)$/i.test(v) ? "" : v;
  };
  const dmi = fs.exists(DMI);
  return {
    uuid: get("product_uuid"),
    vendor: get("sys_vendor"),
    product: get("product_name"),
    family: get("product_family"),
    version: get("product_version"),
    sku: get("product_sku"),
    serial: get("product_serial"),
    type: systemType(fs),
    firmware: dmi ? { vendor: get("bios_vendor"), date: get("bios_date"), version: get("bios_version") } : null,
    chassis: dmi ? { vendor: get("chassis_vendor"), type: CHASSIS_TYPES[Number(get("chassis_type"))] ?? "", serial: get("chassis_serial"), version: get("chassis_version") } : null,
    motherboard: dmi ? { vendor: get("board_vendor"), product: get("board_name"), serial: get("board_serial"), version: get("board_version") } : null,
  };
}
