// Devices: PCI, network cards, disks, GPUs and USB, from /sys.
import { parseDev, parseHexId, parseVpd, type IdDatabase } from "./parse.js";
import { pciAddressOf, pciDevicePath, type SysFs } from "./sysfs.js";
import { parseNvidiaProcInformation, type NvidiaCardInfo } from "../../devices/sysfs.js";

export interface PciDevice {
  driver: string;
  driver_version: string;
  numa_node: number;
  pci_address: string;
  vendor: string;
  vendor_id: string;
  product: string;
  product_id: string;
  iommu_group: number;
  vpd: ReturnType<typeof parseVpd>;
}

/**
 * A driver's version: its loadable module's own version, else the kernel's (built-in drivers
 * have no `module` link even when /sys/module lists a version for them).
 */
export function driverVersion(fs: SysFs, driverDir: string, kernelRelease: string): string {
  if (!fs.linkName(`${driverDir}`)) return "";
  return fs.trim(`${driverDir}/module/version`) ?? kernelRelease;
}

const NO_IDS: IdDatabase = { vendors: new Map(), products: new Map() };

/** Vendor and product names from an id database ("" when unknown, as upstream without one). */
export function names(ids: IdDatabase, vendorId: string, productId: string): { vendor: string; product: string } {
  return { vendor: ids.vendors.get(vendorId) ?? "", product: ids.products.get(`${vendorId}:${productId}`) ?? "" };
}

function numaNode(fs: SysFs, dir: string): number {
  const n = fs.int(`${dir}/numa_node`);
  return n === undefined || n < 0 ? 0 : n;
}

export function readPci(fs: SysFs, kernelRelease: string, ids: IdDatabase = NO_IDS): { devices: PciDevice[]; total: number } {
  const devices: PciDevice[] = [];
  for (const addr of fs.list("/sys/bus/pci/devices")) {
    const dir = `/sys/bus/pci/devices/${addr}`;
    const driver = fs.linkName(`${dir}/driver`);
    const vpd = fs.readBuffer(`${dir}/vpd`);
    const vendorId = parseHexId(fs.read(`${dir}/vendor`));
    const productId = parseHexId(fs.read(`${dir}/device`));
    const n = names(ids, vendorId, productId);
    devices.push({
      driver,
      driver_version: driverVersion(fs, `${dir}/driver`, kernelRelease),
      numa_node: numaNode(fs, dir),
      pci_address: addr,
      vendor: n.vendor,
      vendor_id: vendorId,
      product: n.product,
      product_id: productId,
      iommu_group: Number(fs.linkName(`${dir}/iommu_group`)) || 0,
      vpd: vpd && vpd.length ? parseVpd(vpd) : {},
    });
  }
  return { devices, total: devices.length };
}

export interface NetworkPort {
  id: string;
  address: string;
  port: number;
  protocol: string;
  supported_modes?: string[];
  supported_ports?: string[];
  port_type?: string;
  transceiver_type?: string;
  auto_negotiation: boolean;
  link_detected: boolean;
  link_speed?: number;
  link_duplex?: string;
  infiniband?: InfinibandPort;
}
/** An InfiniBand port's character devices (LXD's ResourcesNetworkCardPortInfiniband; all omitempty). */
export interface InfinibandPort {
  issm_name?: string;
  issm_device?: string;
  mad_name?: string;
  mad_device?: string;
  verb_name?: string;
  verb_device?: string;
}
export interface NetworkCard {
  driver: string;
  driver_version: string;
  ports: NetworkPort[];
  numa_node: number;
  pci_address?: string;
  vendor?: string;
  vendor_id?: string;
  product?: string;
  product_id?: string;
  /** SR-IOV capable cards: VF counts and the VFs' own cards (`vfs` null when none, as Go's nil slice). */
  sriov?: { current_vfs: number; maximum_vfs: number; vfs: NetworkCard[] | null };
}

/** What the ETHTOOL_GLINKSETTINGS ioctl answers for an interface (native/ethtool.c). */
export interface LinkSettings {
  autoneg: number;
  duplex: number;
  speed: number;
  port: number;
  transceiver: number;
  /** The supported link mode mask, 32-bit words. */
  supported: number[];
}

const PORT_TYPES: Record<number, string> = { 0x00: "twisted pair", 0x01: "AUI", 0x02: "media-independent", 0x03: "fibre", 0x04: "BNC", 0x05: "direct attach", 0xef: "none", 0xff: "other" };
const TRANSCEIVERS: Record<number, string> = { 0x00: "internal", 0x01: "external" };
/** Link mode bits LXD names (ethtool's ETHTOOL_LINK_MODE_*_BIT). */
const LINK_MODES: [number, string][] = [
  [0, "10baseT/Half"], [1, "10baseT/Full"], [2, "100baseT/Half"], [3, "100baseT/Full"], [4, "1000baseT/Half"], [5, "1000baseT/Full"],
  [12, "10000baseT/Full"], [15, "2500baseX/Full"], [17, "1000baseKX/Full"], [18, "10000baseKX4/Full"], [19, "10000baseKR/Full"],
  [21, "20000baseMLD2/Full"], [22, "20000baseKR2/Full"], [23, "40000baseKR4/Full"], [24, "40000baseCR4/Full"], [25, "40000baseSR4/Full"],
  [26, "40000baseLR4/Full"], [27, "56000baseKR4/Full"], [28, "56000baseCR4/Full"], [29, "56000baseSR4/Full"], [30, "56000baseLR4/Full"],
  [31, "25000baseCR/Full"], [32, "25000baseKR/Full"], [33, "25000baseSR/Full"], [34, "50000baseCR2/Full"], [35, "50000baseKR2/Full"],
  [36, "100000baseKR4/Full"], [37, "100000baseSR4/Full"], [38, "100000baseCR4/Full"], [39, "100000baseLR4_ER4/Full"], [40, "50000baseSR2/Full"],
  [41, "1000baseX/Full"], [42, "10000baseCR/Full"], [43, "10000baseSR/Full"], [44, "10000baseLR/Full"], [45, "10000baseLRM/Full"],
  [46, "10000baseER/Full"], [47, "2500baseT/Full"], [48, "5000baseT/Full"],
];
const LINK_PORTS: [number, string][] = [[7, "twisted pair"], [8, "AUI"], [9, "media-independent"], [10, "fibre"], [11, "BNC"], [16, "backplane"]];
const hasBit = (words: number[], bit: number) => (((words[Math.floor(bit / 32)] ?? 0) >>> bit % 32) & 1) === 1;

/** A port's fields from the link settings, as LXD fills them (ethtoolLink in network_ethtool.go). */
export function applyLinkSettings(port: NetworkPort, ls: LinkSettings): void {
  port.auto_negotiation = ls.autoneg === 1;
  if (port.link_detected) {
    if (ls.duplex === 0) port.link_duplex = "half";
    else if (ls.duplex === 1) port.link_duplex = "full";
    if (ls.speed < 0xffffffff && ls.speed > 0) port.link_speed = ls.speed;
  }
  const transceiver = TRANSCEIVERS[ls.transceiver];
  if (transceiver) port.transceiver_type = transceiver;
  const portType = PORT_TYPES[ls.port];
  if (portType) port.port_type = portType;
  port.supported_modes = LINK_MODES.filter(([bit]) => hasBit(ls.supported, bit)).map(([, n]) => n);
  port.supported_ports = LINK_PORTS.filter(([bit]) => hasBit(ls.supported, bit)).map(([, n]) => n);
}

/**
 * Cards with a backing device (physical, or virtio/PCI in a VM), their interfaces as ports;
 * `ethtool` (the link settings ioctl) adds what sysfs does not say (port and transceiver types).
 */
export function readNetwork(fs: SysFs, kernelRelease: string, ids: IdDatabase = NO_IDS, ethtool?: (ifname: string) => LinkSettings | null): { cards: NetworkCard[]; total: number } {
  const cards = new Map<string, NetworkCard>();
  /** Virtual functions' cards by their physical function's PCI address (they are listed under it). */
  const vfs = new Map<string, NetworkCard[]>();
  const isVf = new Set<NetworkCard>();
  for (const name of fs.list("/sys/class/net")) {
    const dir = `/sys/class/net/${name}`;
    if (!fs.exists(`${dir}/device`)) continue;
    const devicePath = fs.resolve(`${dir}/device`);
    let card = cards.get(devicePath);
    if (!card) {
      const driver = fs.linkName(`${dir}/device/driver`);
      const pciPath = pciDevicePath(devicePath);
      card = { driver, driver_version: driverVersion(fs, `${dir}/device/driver`, kernelRelease), ports: [], numa_node: pciPath ? numaNode(fs, pciPath) : 0 };
      const pci = pciAddressOf(devicePath);
      if (pci) card.pci_address = pci;
      const vendor = fs.read(`${dir}/device/vendor`);
      const product = fs.read(`${dir}/device/device`);
      if (vendor) card.vendor_id = parseHexId(vendor);
      if (product) card.product_id = parseHexId(product);
      if (card.vendor_id) {
        const n = names(ids, card.vendor_id, card.product_id ?? "");
        if (n.vendor) card.vendor = n.vendor;
        if (n.product) card.product = n.product;
      }
      if (fs.exists(`${dir}/device/sriov_numvfs`)) card.sriov = { current_vfs: fs.int(`${dir}/device/sriov_numvfs`) ?? 0, maximum_vfs: fs.int(`${dir}/device/sriov_totalvfs`) ?? 0, vfs: null };
      const pf = fs.exists(`${dir}/device/physfn`) ? pciAddressOf(fs.resolve(`${dir}/device/physfn`)) : undefined;
      if (pf) {
        vfs.set(pf, [...(vfs.get(pf) ?? []), card]);
        isVf.add(card);
      }
      cards.set(devicePath, card);
    }
    const type = fs.int(`${dir}/type`);
    const speed = fs.int(`${dir}/speed`);
    const duplex = fs.trim(`${dir}/duplex`);
    const port: NetworkPort = {
      id: name,
      address: fs.trim(`${dir}/address`) ?? "",
      port: fs.int(`${dir}/dev_port`) ?? card.ports.length,
      protocol: type === 32 ? "infiniband" : "ethernet",
      auto_negotiation: false,
      link_detected: fs.trim(`${dir}/carrier`) === "1",
    };
    if (speed && speed > 0) port.link_speed = speed;
    if (duplex && duplex !== "unknown") port.link_duplex = duplex;
    if (port.protocol === "infiniband" && fs.exists(`${dir}/device/infiniband`)) port.infiniband = infinibandPort(fs, `${dir}/device`, port.port);
    // LXD asks ethtool about physical functions only.
    const ls = isVf.has(card) ? null : ethtool?.(name);
    if (ls) applyLinkSettings(port, ls);
    card.ports.push(port);
  }
  const list = [...cards.values()].filter((c) => !isVf.has(c));
  let total = 0;
  for (const card of list) {
    if (card.sriov && card.pci_address) card.sriov.vfs = vfs.get(card.pci_address) ?? null;
    total += 1 + (card.sriov?.vfs?.length ?? 0);
  }
  return { cards: list, total };
}

/**
 * LXD's infiniband port info: the issm/umad nodes of infiniband_mad whose `port` is this port's
 * number + 1, and the one infiniband_verbs node (only when there is exactly one), each with the
 * "major:minor" of its `dev` file (the node is left out when it has none).
 */
export function infinibandPort(fs: SysFs, devicePath: string, port: number): InfinibandPort {
  const ib: InfinibandPort = {};
  for (const entry of fs.list(`${devicePath}/infiniband_mad`)) {
    const d = `${devicePath}/infiniband_mad/${entry}`;
    if (fs.int(`${d}/port`) !== port + 1 || !fs.exists(`${d}/dev`)) continue;
    const dev = fs.trim(`${d}/dev`) ?? "";
    if (entry.startsWith("issm")) Object.assign(ib, { issm_name: entry, issm_device: dev });
    if (entry.startsWith("umad")) Object.assign(ib, { mad_name: entry, mad_device: dev });
  }
  const verbs = fs.list(`${devicePath}/infiniband_verbs`);
  if (verbs.length === 1) {
    ib.verb_name = verbs[0];
    if (fs.exists(`${devicePath}/infiniband_verbs/${verbs[0]}/dev`)) ib.verb_device = fs.trim(`${devicePath}/infiniband_verbs/${verbs[0]}/dev`) ?? "";
  }
  return ib;
}

export interface DiskPartition {
  id: string;
  device: string;
  read_only: boolean;
  size: number;
  partition: number;
}
export interface Disk {
  id: string;
  device: string;
  model?: string;
  type: string;
  read_only: boolean;
  size: number;
  removable: boolean;
  wwn?: string;
  numa_node: number;
  device_path?: string;
  block_size: number;
  firmware_version?: string;
  rpm: number;
  serial?: string;
  device_id: string;
  partitions: DiskPartition[];
  pci_address?: string;
}

/** /dev/disk/by-* link names pointing at each block device name. */
function diskLinks(fs: SysFs, kind: "by-id" | "by-path"): Map<string, string> {
  const out = new Map<string, string>();
  for (const link of fs.list(`/dev/disk/${kind}`)) {
    const target = fs.linkName(`/dev/disk/${kind}/${link}`);
    if (target && !out.has(target)) out.set(target, link);
  }
  return out;
}

export function readStorage(fs: SysFs): { disks: Disk[]; total: number } {
  const disks: Disk[] = [];
  const byId = diskLinks(fs, "by-id");
  const byPath = diskLinks(fs, "by-path");
  for (const name of fs.list("/sys/class/block")) {
    const dir = `/sys/class/block/${name}`;
    // Partitions are listed under their disk; loop, ram and zram devices have no backing device.
    if (fs.exists(`${dir}/partition`) || !fs.exists(`${dir}/device`)) continue;
    const devicePath = fs.resolve(`${dir}/device`);
    const pciPath = pciDevicePath(devicePath);
    const sub = fs.linkName(`${dir}/device/subsystem`);
    const disk: Disk = {
      id: name,
      device: parseDev(fs.read(`${dir}/dev`)),
      type: name.startsWith("nvme") ? "nvme" : sub === "scsi" ? "scsi" : sub || "unknown",
      read_only: fs.trim(`${dir}/ro`) === "1",
      size: (fs.int(`${dir}/size`) ?? 0) * 512,
      removable: fs.trim(`${dir}/removable`) === "1",
      numa_node: pciPath ? numaNode(fs, pciPath) : 0,
      block_size: fs.int(`${dir}/device/queue/physical_block_size`) ?? 0,
      rpm: fs.int(`${dir}/queue/rotational`) ?? 0,
      device_id: byId.get(name) ?? "",
      partitions: [],
    };
    const model = fs.trim(`${dir}/device/model`);
    if (model) disk.model = model;
    const wwn = fs.trim(`${dir}/wwid`) ?? fs.trim(`${dir}/device/wwid`);
    if (wwn) disk.wwn = wwn;
    const firmware = fs.trim(`${dir}/device/firmware_rev`) ?? fs.trim(`${dir}/device/rev`);
    if (firmware) disk.firmware_version = firmware;
    const serial = fs.trim(`${dir}/device/serial`);
    if (serial) disk.serial = serial;
    const path = byPath.get(name);
    if (path) disk.device_path = path;
    const pci = pciAddressOf(devicePath);
    if (pci) disk.pci_address = pci;
    for (const part of fs.list(dir).filter((e) => e.startsWith(name) && fs.exists(`${dir}/${e}/partition`))) {
      disk.partitions.push({
        id: part,
        device: parseDev(fs.read(`${dir}/${part}/dev`)),
        read_only: fs.trim(`${dir}/${part}/ro`) === "1",
        size: (fs.int(`${dir}/${part}/size`) ?? 0) * 512,
        partition: fs.int(`${dir}/${part}/partition`) ?? 0,
      });
    }
    disks.push(disk);
  }
  return { disks, total: disks.length };
}

export interface GpuCard {
  driver: string;
  driver_version: string;
  drm?: { id: number; card_name: string; card_device: string; render_name?: string; render_device?: string; control_name?: string; control_device?: string };
  /** LXD's ResourcesGPUCardNvidia, for cards the nvidia driver drives (cuda/nvrm versions, uuid, architecture: omitempty). */
  nvidia?: { cuda_version?: string; nvrm_version?: string; brand: string; model: string; uuid?: string; architecture?: string; card_name: string; card_device: string };
  numa_node: number;
  pci_address: string;
  vendor: string;
  vendor_id: string;
  product: string;
  product_id: string;
}

/** LXD's loadNvidiaProc over `fs`: /proc/driver/nvidia/gpus/<pci>/information per card. */
export function readNvidiaProc(fs: SysFs): Map<string, NvidiaCardInfo> {
  const out = new Map<string, NvidiaCardInfo>();
  for (const entry of fs.list("/proc/driver/nvidia/gpus")) {
    const text = fs.read(`/proc/driver/nvidia/gpus/${entry}/information`);
    if (text !== undefined) out.set(entry, parseNvidiaProcInformation(text));
  }
  return out;
}

/**
 * PCI display controllers (class 0x03xxxx), with their DRM nodes and, for cards the nvidia
 * driver drives, what `nvidia` (nvidia-container-cli's answer) or else /proc says of them.
 */
export function readGpu(fs: SysFs, kernelRelease: string, ids: IdDatabase = NO_IDS, nvidiaInfo?: Map<string, NvidiaCardInfo>): { cards: GpuCard[]; total: number } {
  const nvidia = nvidiaInfo ?? readNvidiaProc(fs);
  const drmByPci = new Map<string, string[]>();
  for (const node of fs.list("/sys/class/drm").filter((e) => /^(card|renderD|controlD)\d+$/.test(e))) {
    const pci = pciAddressOf(fs.resolve(`/sys/class/drm/${node}/device`));
    if (pci) drmByPci.set(pci, [...(drmByPci.get(pci) ?? []), node]);
  }
  const cards: GpuCard[] = [];
  for (const addr of fs.list("/sys/bus/pci/devices")) {
    const dir = `/sys/bus/pci/devices/${addr}`;
    if (!(fs.trim(`${dir}/class`) ?? "").startsWith("0x03")) continue;
    const driver = fs.linkName(`${dir}/driver`);
    const vendorId = parseHexId(fs.read(`${dir}/vendor`));
    const productId = parseHexId(fs.read(`${dir}/device`));
    const card: GpuCard = {
      driver,
      driver_version: driverVersion(fs, `${dir}/driver`, kernelRelease),
      numa_node: numaNode(fs, dir),
      pci_address: addr,
      ...names(ids, vendorId, productId),
      vendor_id: vendorId,
      product_id: productId,
    };
    const nodes = drmByPci.get(addr) ?? [];
    const cardNode = nodes.find((n) => n.startsWith("card"));
    if (cardNode) {
      const drm: NonNullable<GpuCard["drm"]> = { id: Number(cardNode.slice(4)), card_name: cardNode, card_device: parseDev(fs.read(`/sys/class/drm/${cardNode}/dev`)) };
      for (const n of nodes) {
        if (n.startsWith("renderD")) Object.assign(drm, { render_name: n, render_device: parseDev(fs.read(`/sys/class/drm/${n}/dev`)) });
        if (n.startsWith("controlD")) Object.assign(drm, { control_name: n, control_device: parseDev(fs.read(`/sys/class/drm/${n}/dev`)) });
      }
      card.drm = drm;
    }
    const nv = driver === "nvidia" ? (nvidia.get(addr) ?? nvidia.get(`0000${addr}`)) : undefined;
    if (nv) {
      const omitEmpty = (k: string, v: string | undefined) => (v ? { [k]: v } : {});
      card.nvidia = {
        ...omitEmpty("cuda_version", nv.cudaVersion),
        ...omitEmpty("nvrm_version", nv.nvrmVersion),
        brand: nv.brand ?? "",
        model: nv.model ?? "",
        ...omitEmpty("uuid", nv.uuid),
        ...omitEmpty("architecture", nv.architecture),
        card_name: nv.cardName,
        card_device: nv.cardDevice,
      };
    }
    cards.push(card);
  }
  return { cards, total: cards.length };
}

export interface UsbDevice {
  bus_address: number;
  device_address: number;
  interfaces: { class: string; class_id: number; driver: string; driver_version: string; number: number; subclass: string; subclass_id: number }[];
  vendor: string;
  vendor_id: string;
  product: string;
  product_id: string;
  speed: number;
}

export function readUsb(fs: SysFs, kernelRelease: string, ids: IdDatabase = NO_IDS): { devices: UsbDevice[]; total: number } {
  const devices: UsbDevice[] = [];
  for (const name of fs.list("/sys/bus/usb/devices")) {
    const dir = `/sys/bus/usb/devices/${name}`;
    if (name.includes(":") || !fs.exists(`${dir}/idVendor`)) continue;
    // Root hubs are the kernel's, not devices.
    if (name.startsWith("usb")) continue;
    const interfaces: UsbDevice["interfaces"] = [];
    for (const iface of fs.list(dir).filter((e) => e.startsWith(`${name}:`))) {
      const idir = `${dir}/${iface}`;
      const driver = fs.linkName(`${idir}/driver`);
      interfaces.push({
        class: "",
        class_id: Number.parseInt(fs.trim(`${idir}/bInterfaceClass`) ?? "0", 16) || 0,
        driver,
        driver_version: driverVersion(fs, `${idir}/driver`, kernelRelease),
        number: Number.parseInt(fs.trim(`${idir}/bInterfaceNumber`) ?? "0", 16) || 0,
        subclass: "",
        subclass_id: Number.parseInt(fs.trim(`${idir}/bInterfaceSubClass`) ?? "0", 16) || 0,
      });
    }
    const vendorId = parseHexId(fs.read(`${dir}/idVendor`));
    const productId = parseHexId(fs.read(`${dir}/idProduct`));
    const n = names(ids, vendorId, productId);
    devices.push({
      bus_address: fs.int(`${dir}/busnum`) ?? 0,
      device_address: fs.int(`${dir}/devnum`) ?? 0,
      interfaces,
      vendor: n.vendor || (fs.trim(`${dir}/manufacturer`) ?? ""),
      vendor_id: vendorId,
      product: n.product || (fs.trim(`${dir}/product`) ?? ""),
      product_id: productId,
      speed: Number(fs.trim(`${dir}/speed`) ?? 0) || 0,
    });
  }
  return { devices, total: devices.length };
}
