// InfiniBand: what /1.0/resources reports for an IB card with an SR-IOV VF (LXD 5.0.2's
// infiniband and sriov fields, from a sysfs tree laid out as the kernel does), how the device
// picks its port from that (LXD's infinibandDevices), and its config validation messages.
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readNetwork } from "../../src/daemon/resources/devices.js";
import { applyOmitEmpty } from "../../src/daemon/resources/omitempty.js";
import { SysFs } from "../../src/daemon/resources/sysfs.js";
import { infinibandDevices } from "../../src/devices/infiniband.js";
import { deviceFactory } from "../../src/devices/registry.js";
import type { DeviceContext } from "../../src/devices/types.js";
import { buildIbTree, IB_PF_ADDRESS, IB_PF_PCI, IB_VF_PCI } from "../helpers/ib-tree.js";

let root = "";
beforeAll(() => {
  root = mkdtempSync("/tmp/nodelxd-test-ib-");
  buildIbTree(root, { pf: "ibp8s0", vf: "ibp8s0v0" });
});
afterAll(() => root && rmSync(root, { recursive: true, force: true }));

describe("resources: infiniband ports and SR-IOV", () => {
  it("lists the VF under its PF's sriov, with each port's issm/umad/uverbs nodes", () => {
    const n = readNetwork(new SysFs(root), "6.1.0");
    expect(n.total).toBe(2);
    expect(n.cards).toHaveLength(1);
    const [pf] = n.cards;
    expect(pf).toMatchObject({ pci_address: IB_PF_PCI, driver: "mlx5_core", vendor_id: "15b3", product_id: "1017" });
    expect(pf.ports).toEqual([
      {
        id: "ibp8s0",
        address: IB_PF_ADDRESS,
        port: 0,
        protocol: "infiniband",
        auto_negotiation: false,
        link_detected: true,
        infiniband: { issm_name: "issm0", issm_device: "231:64", mad_name: "umad0", mad_device: "231:0", verb_name: "uverbs0", verb_device: "231:192" },
      },
    ]);
    expect(pf.sriov).toMatchObject({ current_vfs: 1, maximum_vfs: 8 });
    expect(pf.sriov!.vfs).toHaveLength(1);
    expect(pf.sriov!.vfs![0]).toMatchObject({ pci_address: IB_VF_PCI, product_id: "1018" });
    expect(pf.sriov!.vfs![0].ports[0]).toMatchObject({ id: "ibp8s0v0", protocol: "infiniband", infiniband: { verb_name: "uverbs1", verb_device: "231:193" } });
  });

  it("omitempty applies inside VFs; a card with no VFs enabled has vfs null (Go's nil slice)", () => {
    const res = applyOmitEmpty({ network: JSON.parse(JSON.stringify(readNetwork(new SysFs(root), "6.1.0"))) });
    const vf = res.network.cards[0].sriov.vfs[0];
    expect(vf.sriov).toBeUndefined();
    expect(vf.ports[0].infiniband).toEqual({ issm_name: "issm1", issm_device: "231:65", mad_name: "umad1", mad_device: "231:1", verb_name: "uverbs1", verb_device: "231:193" });
    rmSync(`${root}/sys/class/net/ibp8s0v0`);
    try {
      const again = readNetwork(new SysFs(root), "6.1.0");
      expect(again.cards[0].sriov).toEqual({ current_vfs: 1, maximum_vfs: 8, vfs: null });
      expect(again.total).toBe(1);
    } finally {
      symlinkSync(`../../devices/pci0000:00/${IB_VF_PCI}/net/ibp8s0v0`, `${root}/sys/class/net/ibp8s0v0`);
    }
  });

  it("infinibandDevices: the parent port and its VFs on the same port; a VF named directly", () => {
    const cards = readNetwork(new SysFs(root), "6.1.0").cards;
    expect([...infinibandDevices(cards, "ibp8s0").keys()]).toEqual(["ibp8s0", "ibp8s0v0"]);
    expect([...infinibandDevices(cards, "ibp8s0v0").keys()]).toEqual(["ibp8s0v0"]);
    expect([...infinibandDevices(cards, "eth0").keys()]).toEqual([]);
  });
});

describe("infiniband device validation (LXD 5.0.2's messages)", () => {
  const ctx = {} as DeviceContext;
  const check = (config: Record<string, string>) => {
    try {
      deviceFactory(config)(ctx, "ib", config).validate();
      return "";
    } catch (e) {
      return (e as Error).message;
    }
  };
  it("nictype physical or sriov, else no implementation", () => {
    expect(check({ type: "infiniband", nictype: "bridged", parent: "ib0" })).toBe("Unsupported device type");
    expect(check({ type: "infiniband", parent: "ib0" })).toBe("Unsupported device type");
    expect(check({ type: "infiniband", nictype: "physical", parent: "ib0" })).toBe("");
    expect(check({ type: "infiniband", nictype: "sriov", parent: "ib0", name: "ib0", mtu: "2044" })).toBe("");
  });
  it("parent required; name, mtu and the IB hwaddr forms", () => {
    expect(check({ type: "infiniband", nictype: "physical" })).toBe('Invalid value for device option "parent": Required value');
    expect(check({ type: "infiniband", nictype: "physical", parent: "ib0", name: "x" })).toBe('Invalid value for device option "name": Network interface is too short (minimum 2 characters)');
    expect(check({ type: "infiniband", nictype: "physical", parent: "ib0", mtu: "1000" })).toBe('Invalid value for device option "mtu": Out of MTU range (1280-16384) "1000"');
    const bad = 'Invalid value for device option "hwaddr": Invalid value, must be either 8 or 20 bytes of hex separated by colons';
    expect(check({ type: "infiniband", nictype: "physical", parent: "ib0", hwaddr: "00:16:3e:00:00:01" })).toBe(bad);
    expect(check({ type: "infiniband", nictype: "physical", parent: "ib0", hwaddr: "4a-c8-f9-1b-aa-57-ef-19" })).toBe(bad);
    expect(check({ type: "infiniband", nictype: "physical", parent: "ib0", hwaddr: "4a:c8:f9:1b:aa:57:ef:19" })).toBe("");
    expect(check({ type: "infiniband", nictype: "physical", parent: "ib0", hwaddr: IB_PF_ADDRESS })).toBe("");
    expect(check({ type: "infiniband", nictype: "physical", parent: "ib0", vlan: "2" })).toBe('Invalid device option "vlan"');
  });
});
