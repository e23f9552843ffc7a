// Resource parsers with fixture text, and the readers over a small fixture sysfs tree.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCpu } from "../../src/daemon/resources/cpu.js";
import { applyLinkSettings, readNetwork, readPci, readStorage } from "../../src/daemon/resources/devices.js";
import { readMemory } from "../../src/daemon/resources/memory.js";
import { ResourcesService } from "../../src/daemon/resources/index.js";
import { applyOmitEmpty, isEmpty } from "../../src/daemon/resources/omitempty.js";
import { parseCacheSize, parseCpuList, parseCpuinfo, parseHexId, parseIdDatabase, parseMeminfo, parseVpd } from "../../src/daemon/resources/parse.js";
import { SysFs } from "../../src/daemon/resources/sysfs.js";
import { readSystem, systemType } from "../../src/daemon/resources/system.js";

const MEMINFO = `MemTotal:       24684092 kB
MemFree:        21715832 kB
MemAvailable:   24025944 kB
Buffers:           81248 kB
Cached:          2342836 kB
HugePages_Total:       4
HugePages_Free:        1
Hugepagesize:       2048 kB
`;
const NODE_MEMINFO = `Node 0 MemTotal:        6252756 kB
Node 0 MemFree:         3284548 kB
Node 0 MemUsed:         2968208 kB
Node 0 HugePages_Total:     4
Node 0 HugePages_Free:      1
`;
const CPUINFO = `processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme hypervisor

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
`;

describe("parsers", () => {
  it("meminfo: kB to bytes, counts stay counts, node prefixes dropped", () => {
    const m = parseMeminfo(MEMINFO);
    expect(m.get("MemTotal")).toBe(24684092 * 1024);
    expect(m.get("HugePages_Total")).toBe(4);
    expect(m.get("Hugepagesize")).toBe(2 * 1024 * 1024);
    expect(parseMeminfo(NODE_MEMINFO).get("MemUsed")).toBe(2968208 * 1024);
  });
  it("cpuinfo blocks", () => {
    const c = parseCpuinfo(CPUINFO);
    expect(c).toHaveLength(2);
    expect(c[1]["model name"]).toBe("Intel(R) Xeon(R) Processor");
    expect(c[0].vendor_id).toBe("GenuineIntel");
  });
  it("cpu lists, cache sizes, hex ids", () => {
    expect(parseCpuList("0-3,8,10-11\n")).toEqual([0, 1, 2, 3, 8, 10, 11]);
    expect(parseCpuList("\n")).toEqual([]);
    expect(parseCacheSize("48K")).toBe(49152);
    expect(parseCacheSize("307200K\n")).toBe(314572800);
    expect(parseCacheSize("8M")).toBe(8 * 1024 * 1024);
    expect(parseHexId("0x1af4\n")).toBe("1af4");
    expect(parseHexId("0x1")).toBe("0001");
  });
  it("pci.ids / usb.ids: vendors and their devices, classes ignored", () => {
    const db = parseIdDatabase("# comment\n1af4  Red Hat, Inc.\n\t1000  Virtio network device\n\t\t1af4 0001  subsystem\n8086  Intel Corporation\n\t0d57  Something\nC 02  Network controller\n\t00  Ethernet controller\n");
    expect(db.vendors.get("1af4")).toBe("Red Hat, Inc.");
    expect(db.products.get("1af4:1000")).toBe("Virtio network device");
    expect(db.products.get("8086:0d57")).toBe("Something");
    expect(db.vendors.has("C 02")).toBe(false);
    expect(db.products.size).toBe(2);
  });

  it("PCI VPD: identifier string and VPD-R keywords", () => {
    const id = Buffer.from("Example NIC");
    const kw = Buffer.concat([Buffer.from("PN"), Buffer.from([4]), Buffer.from("X123"), Buffer.from("RV"), Buffer.from([1, 0])]);
    const hdr = (tag: number, len: number) => Buffer.from([tag, len & 0xff, len >> 8]);
    const vpd = Buffer.concat([hdr(0x82, id.length), id, hdr(0x90, kw.length), kw, Buffer.from([0x78])]);
    expect(parseVpd(vpd)).toEqual({ product_name: "Example NIC", entries: { PN: "X123" } });
  });
});

describe("readers over a fixture tree", () => {
  // Built when the tests run, not when the file is collected (`vitest list` runs no afterAll).
  let root = "";
  let fs: SysFs;
  afterAll(() => root && rmSync(root, { recursive: true, force: true }));
  const file = (p: string, text: string) => {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  };
  const link = (p: string, target: string) => {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    symlinkSync(target, join(root, p));
  };
  beforeAll(() => {
    root = mkdtempSync("/tmp/nodelxd-test-sysfs-");
    file("/proc/meminfo", MEMINFO);
    file("/proc/cpuinfo", CPUINFO);
    file("/sys/devices/system/memory/block_size_bytes", "8000000\n");
    for (let i = 0; i < 4; i++) {
      file(`/sys/devices/system/memory/memory${i}/online`, i === 3 ? "0\n" : "1\n");
      link(`/sys/devices/system/node/node0/memory${i}`, `../../memory/memory${i}`);
    }
    file("/sys/devices/system/node/node0/meminfo", NODE_MEMINFO);
    for (const cpu of [0, 1, 2]) {
      const d = `/sys/devices/system/cpu/cpu${cpu}`;
      file(`${d}/topology/physical_package_id`, "0\n");
      file(`${d}/topology/core_id`, cpu === 2 ? "0\n" : `${cpu}\n`);
      file(`${d}/topology/die_id`, "0\n");
      mkdirSync(join(root, `${d}/node0`), { recursive: true });
      file(`${d}/cache/index0/level`, "1\n");
      file(`${d}/cache/index0/type`, "Data\n");
      file(`${d}/cache/index0/size`, "48K\n");
    }
    file("/sys/devices/system/cpu/cpu1/online", "1\n");
    file("/sys/devices/system/cpu/cpu2/online", "1\n");
    file("/sys/devices/system/cpu/isolated", "2\n");
    // A virtio disk with one partition, and a loop device that is no disk.
    const vda = "/sys/devices/pci0000:00/0000:00:02.0/virtio1";
    file("/sys/devices/pci0000:00/0000:00:02.0/numa_node", "-1\n");
    link(`${vda}/subsystem`, "../../../bus/virtio");
    mkdirSync(join(root, "/sys/bus/virtio"), { recursive: true });
    const blk = "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda";
    file(`${blk}/dev`, "254:0\n");
    file(`${blk}/ro`, "0\n");
    file(`${blk}/size`, "2048\n");
    file(`${blk}/removable`, "0\n");
    file(`${blk}/queue/rotational`, "1\n");
    link(`${blk}/device`, "../../../virtio1");
    file(`${blk}/vda1/partition`, "1\n");
    file(`${blk}/vda1/dev`, "254:1\n");
    file(`${blk}/vda1/size`, "1024\n");
    file(`${blk}/vda1/ro`, "0\n");
    link("/sys/class/block/vda", `../../devices/pci0000:00/0000:00:02.0/virtio1/block/vda`);
    link("/sys/class/block/vda1", `../../devices/pci0000:00/0000:00:02.0/virtio1/block/vda/vda1`);
    file("/sys/devices/virtual/block/loop0/size", "0\n");
    link("/sys/class/block/loop0", "../../devices/virtual/block/loop0");
    // A virtio NIC and a bridge (virtual: not a card).
    const nic = "/sys/devices/pci0000:00/0000:00:03.0/virtio2";
    file("/sys/devices/pci0000:00/0000:00:03.0/vendor", "0x1af4\n");
    file("/sys/devices/pci0000:00/0000:00:03.0/device", "0x1041\n");
    file(`${nic}/vendor`, "0x1af4\n");
    file(`${nic}/device`, "0x0001\n");
    mkdirSync(join(root, "/sys/bus/virtio/drivers/virtio_net"), { recursive: true });
    link(`${nic}/driver`, "../../../../sys/bus/virtio/drivers/virtio_net");
    for (const [k, v] of Object.entries({ address: "02:fc:00:00:00:01", carrier: "1", type: "1", dev_port: "0", speed: "-1", duplex: "unknown" })) file(`${nic}/net/eth0/${k}`, `${v}\n`);
    link(`${nic}/net/eth0/device`, "../../../virtio2");
    link("/sys/class/net/eth0", `../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0`);
    mkdirSync(join(root, "/sys/devices/virtual/net/br0"), { recursive: true });
    link("/sys/class/net/br0", "../../devices/virtual/net/br0");
    link("/sys/bus/pci/devices/0000:00:03.0", "../../../devices/pci0000:00/0000:00:03.0");
    fs = new SysFs(root);
  });

  it("memory: totals from online memory blocks, used = total - free - cached - buffers", () => {
    const m = readMemory(fs);
    const total = 3 * 0x8000000;
    expect(m.total).toBe(total);
    expect(m.used).toBe(total - (21715832 + 2342836 + 81248) * 1024);
    expect(m.hugepages_size).toBe(2097152);
    expect(m.hugepages_total).toBe(4 * 2097152);
    expect(m.hugepages_used).toBe(3 * 2097152);
    expect(m.nodes).toEqual([{ numa_node: 0, hugepages_used: 3 * 2097152, hugepages_total: 4 * 2097152, used: 2968208 * 1024, total }]);
  });

  it("cpu: sockets, cores, threads, isolation", () => {
    const c = readCpu(fs, "x86_64");
    expect(c.total).toBe(3);
    expect(c.sockets).toHaveLength(1);
    expect(c.sockets[0].name).toBe("Intel(R) Xeon(R) Processor");
    expect(c.sockets[0].cache).toEqual([{ level: 1, type: "Data", size: 49152 }]);
    expect(c.sockets[0].cores.map((x) => [x.core, x.threads.map((t) => [t.id, t.thread, t.isolated])])).toEqual([
      [0, [[0, 0, false], [2, 1, true]]],
      [1, [[1, 0, false]]],
    ]);
  });

  it("storage: disks with partitions, loop devices skipped", () => {
    const s = readStorage(fs);
    expect(s.total).toBe(1);
    expect(s.disks[0]).toMatchObject({ id: "vda", device: "254:0", type: "virtio", size: 2048 * 512, rpm: 1, block_size: 0, pci_address: "0000:00:02.0", numa_node: 0 });
    expect(s.disks[0].partitions).toEqual([{ id: "vda1", device: "254:1", read_only: false, size: 1024 * 512, partition: 1 }]);
  });

  it("network: cards from interfaces with a device, ports", () => {
    const n = readNetwork(fs, "6.1.0");
    expect(n.total).toBe(1);
    expect(n.cards[0]).toMatchObject({ driver: "virtio_net", driver_version: "6.1.0", pci_address: "0000:00:03.0", vendor_id: "1af4", product_id: "0001" });
    expect(n.cards[0].ports).toEqual([{ id: "eth0", address: "02:fc:00:00:00:01", port: 0, protocol: "ethernet", auto_negotiation: false, link_detected: true }]);
  });

  it("pci: ids and no driver", () => {
    expect(readPci(fs, "6.1.0").devices).toEqual([
      { driver: "", driver_version: "", numa_node: 0, pci_address: "0000:00:03.0", vendor: "", vendor_id: "1af4", product: "", product_id: "1041", iommu_group: 0, vpd: {} },
    ]);
  });

  it("pci and network cards take names from an id database when there is one", () => {
    const ids = parseIdDatabase("1af4  Red Hat, Inc.\n\t1041  Virtio 1.0 network device\n");
    expect(readPci(fs, "6.1.0", ids).devices[0]).toMatchObject({ vendor: "Red Hat, Inc.", product: "Virtio 1.0 network device" });
    expect(readNetwork(fs, "6.1.0", ids).cards[0]).toMatchObject({ vendor: "Red Hat, Inc.", vendor_id: "1af4", product_id: "0001" });
    expect(readNetwork(fs, "6.1.0", ids).cards[0].product).toBeUndefined();
  });

  it("system: no DMI, type from markers", () => {
    expect(systemType(fs)).toBe("virtual-machine");
    file("/.dockerenv", "");
    const s = readSystem(fs);
    expect(s.type).toBe("container");
    expect(s.firmware).toBeNull();
  });
});

describe("omitempty fields, as LXD's encoder leaves them out", () => {
  it("Go zero values", () => {
    for (const v of ["", 0, false, [], {}, null, undefined]) expect(isEmpty(v)).toBe(true);
    for (const v of ["x", 1, -1, true, [0], { a: 1 }]) expect(isEmpty(v)).toBe(false);
  });

  it("a CPU socket without cache information has no `cache` key; non-omitempty fields stay", () => {
    const res = applyOmitEmpty({
      cpu: { architecture: "x86_64", total: 1, sockets: [{ name: "", vendor: "V", socket: 0, cache: [], cores: [{ core: 0, die: 0, frequency: 0, threads: [{ id: 0, numa_node: 0, thread: 0, online: false, isolated: false }] }] }] },
      memory: { nodes: [], hugepages_total: 0, used: 0, total: 1 },
      network: { cards: [{ driver: "", driver_version: "", ports: [{ id: "eth0", address: "", port: 0, protocol: "ethernet", auto_negotiation: false, link_detected: false, link_speed: 0 }], numa_node: 0 }], total: 1 },
      storage: { disks: [{ id: "vda", model: "", type: "", read_only: false, size: 0, rpm: 0, partitions: [] }], total: 1 },
      gpu: { cards: [{ driver: "", numa_node: 0, drm: { id: 0, card_name: "card0", card_device: "226:0", render_name: "" } }], total: 1 },
      pci: { devices: [{ vendor: "", vpd: {} }], total: 1 },
    });
    expect(res.cpu.sockets[0]).toEqual({ vendor: "V", socket: 0, cores: [{ core: 0, die: 0, threads: [{ id: 0, numa_node: 0, thread: 0, online: false, isolated: false }] }] });
    expect(res.memory).toEqual({ hugepages_total: 0, used: 0, total: 1 });
    expect(res.network.cards[0]).toEqual({ ports: [{ id: "eth0", port: 0, protocol: "ethernet", auto_negotiation: false, link_detected: false }], numa_node: 0 });
    expect(res.storage.disks[0]).toEqual({ id: "vda", read_only: false, size: 0, rpm: 0, partitions: [] });
    expect(res.gpu.cards[0]).toEqual({ numa_node: 0, drm: { id: 0, card_name: "card0", card_device: "226:0" } });
    // pci devices' own vendor is not omitempty in LXD, and vpd is a struct (kept, even empty).
    expect(res.pci.devices[0]).toEqual({ vendor: "", vpd: {} });
  });

  it("the service's answer over a tree without cache dirs, NUMA nodes or cpufreq", () => {
    const root = mkdtempSync("/tmp/nodelxd-test-sysfs-bare-");
    try {
      const file = (p: string, text: string) => {
        mkdirSync(dirname(join(root, p)), { recursive: true });
        writeFileSync(join(root, p), text);
      };
      file("/proc/meminfo", MEMINFO);
      file("/proc/cpuinfo", CPUINFO);
      file("/sys/devices/system/cpu/cpu0/topology/physical_package_id", "0\n");
      file("/sys/devices/system/cpu/cpu0/topology/core_id", "0\n");
      const res = new ResourcesService("x86_64", new SysFs(root)).read();
      expect(res.cpu.sockets).toHaveLength(1);
      expect(res.cpu.sockets[0]).not.toHaveProperty("cache");
      expect(res.cpu.sockets[0]).not.toHaveProperty("frequency");
      expect(res.cpu.sockets[0].cores[0]).not.toHaveProperty("frequency");
      expect(res.cpu.sockets[0].name).toBe("Intel(R) Xeon(R) Processor");
      expect(res.memory).not.toHaveProperty("nodes");
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("ethtool link settings, mapped as LXD maps them", () => {
  const port = (linked: boolean) => ({ id: "eth0", address: "", port: 0, protocol: "ethernet", auto_negotiation: false, link_detected: linked });
  it("a virtio NIC: port other, transceiver internal, no modes, unknown speed/duplex left out", () => {
    const p = port(true);
    applyLinkSettings(p, { autoneg: 0, duplex: 255, speed: 0xffffffff, port: 255, transceiver: 0, supported: [0, 0, 0, 0] });
    expect(p).toEqual({ ...port(true), port_type: "other", transceiver_type: "internal", supported_modes: [], supported_ports: [] });
  });
  it("a copper NIC with link: modes and ports from the mask bits, speed and duplex", () => {
    const p = port(true);
    // bits 5 (1000baseT/Full), 7 (TP port), 47 (2500baseT/Full: word 1, bit 15)
    applyLinkSettings(p, { autoneg: 1, duplex: 1, speed: 1000, port: 0, transceiver: 1, supported: [(1 << 5) | (1 << 7), 1 << 15] });
    expect(p).toMatchObject({ auto_negotiation: true, link_duplex: "full", link_speed: 1000, port_type: "twisted pair", transceiver_type: "external", supported_modes: ["1000baseT/Full", "2500baseT/Full"], supported_ports: ["twisted pair"] });
  });
  it("without link, speed and duplex are not reported", () => {
    const p = port(false);
    applyLinkSettings(p, { autoneg: 1, duplex: 0, speed: 100, port: 3, transceiver: 7, supported: [] });
    expect(p).toEqual({ ...port(false), auto_negotiation: true, port_type: "fibre", supported_modes: [], supported_ports: [] });
  });
  it("readNetwork asks the ioctl per interface", () => {
    const root = mkdtempSync("/tmp/nodelxd-test-sysfs-eth-");
    try {
      const nic = "/sys/devices/pci0000:00/0000:00:03.0/virtio2";
      mkdirSync(join(root, `${nic}/net/eth0`), { recursive: true });
      writeFileSync(join(root, `${nic}/net/eth0/carrier`), "1\n");
      symlinkSync(`../../../virtio2`, join(root, `${nic}/net/eth0/device`));
      mkdirSync(join(root, "/sys/class/net"), { recursive: true });
      symlinkSync(`../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0`, join(root, "/sys/class/net/eth0"));
      const asked: string[] = [];
      const n = readNetwork(new SysFs(root), "6.1.0", undefined, (i) => (asked.push(i), { autoneg: 0, duplex: 255, speed: 0xffffffff, port: 255, transceiver: 0, supported: [0] }));
      expect(asked).toEqual(["eth0"]);
      expect(n.cards[0].ports[0]).toMatchObject({ port_type: "other", transceiver_type: "internal" });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
