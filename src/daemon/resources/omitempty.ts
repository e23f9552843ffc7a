// LXD's resources types (shared/api/resource.go) mark some fields `omitempty`: Go's encoder leaves
// them out when they hold their zero value ("", 0, false, an empty list or map, nil). Which fields
// those are is declared here once per type, and applied to the assembled answer in one pass, so a
// host without (say) CPU cache information in sysfs gets LXD's answer: no `cache` key at all.

/** Field names tagged `omitempty` in LXD 5.0.2's resource.go, per type. */
export const OMIT_EMPTY = {
  cpuSocket: ["name", "vendor", "cache", "frequency", "frequency_minimum", "frequency_turbo"],
  cpuCore: ["frequency"],
  memory: ["nodes"],
  gpuCard: ["driver", "driver_version", "drm", "sriov", "nvidia", "mdev", "pci_address", "vendor", "vendor_id", "product", "product_id", "usb_address"],
  gpuDrm: ["control_name", "control_device", "render_name", "render_device"],
  networkCard: ["driver", "driver_version", "ports", "sriov", "pci_address", "vendor", "vendor_id", "product", "product_id", "firmware_version", "usb_address"],
  networkPort: ["address", "supported_modes", "supported_ports", "port_type", "transceiver_type", "link_speed", "link_duplex", "infiniband"],
  networkPortInfiniband: ["issm_name", "issm_device", "mad_name", "mad_device", "verb_name", "verb_device"],
  storageDisk: ["model", "type", "wwn", "device_path", "firmware_version", "serial", "pci_address", "usb_address"],
  pciVpd: ["product_name", "entries"],
} as const satisfies Record<string, readonly string[]>;

/** Go's zero value test for what JSON can hold. */
export function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === "" || v === 0 || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === "object") return Object.keys(v as object).length === 0;
  return false;
}

/** Deletes the listed keys of `obj` that hold an empty value; returns `obj`. */
export function omitEmpty<T extends object>(obj: T, keys: readonly string[]): T {
  const rec = obj as Record<string, unknown>;
  for (const k of keys) if (k in rec && isEmpty(rec[k])) delete rec[k];
  return obj;
}

type Obj = Record<string, unknown>;
const list = (v: unknown): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);

/** Applies LXD's omitempty fields to a whole `/1.0/resources` answer (in place). */
export function applyOmitEmpty<T extends { cpu?: unknown; memory?: unknown; gpu?: unknown; network?: unknown; storage?: unknown; pci?: unknown }>(res: T): T {
  const cpu = res.cpu as Obj | undefined;
  for (const socket of list(cpu?.sockets)) {
    for (const core of list(socket.cores)) omitEmpty(core, OMIT_EMPTY.cpuCore);
    omitEmpty(socket, OMIT_EMPTY.cpuSocket);
  }
  if (res.memory) omitEmpty(res.memory as Obj, OMIT_EMPTY.memory);
  for (const card of list((res.gpu as Obj | undefined)?.cards)) {
    if (card.drm && typeof card.drm === "object") omitEmpty(card.drm as Obj, OMIT_EMPTY.gpuDrm);
    omitEmpty(card, OMIT_EMPTY.gpuCard);
  }
  const networkCard = (card: Obj): void => {
    for (const port of list(card.ports)) {
      if (port.infiniband && typeof port.infiniband === "object") omitEmpty(port.infiniband as Obj, OMIT_EMPTY.networkPortInfiniband);
      omitEmpty(port, OMIT_EMPTY.networkPort);
    }
    for (const vf of list((card.sriov as Obj | undefined)?.vfs)) networkCard(vf);
    omitEmpty(card, OMIT_EMPTY.networkCard);
  };
  for (const card of list((res.network as Obj | undefined)?.cards)) networkCard(card);
  for (const disk of list((res.storage as Obj | undefined)?.disks)) omitEmpty(disk, OMIT_EMPTY.storageDisk);
  for (const dev of list((res.pci as Obj | undefined)?.devices)) if (dev.vpd && typeof dev.vpd === "object") omitEmpty(dev.vpd as Obj, OMIT_EMPTY.pciVpd);
  return res;
}
