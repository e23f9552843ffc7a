// A sysfs tree with one InfiniBand card (a ConnectX PCI function with one SR-IOV virtual function
// enabled), as the kernel lays it out: /sys/class/net/<port> → the PCI device's net/<port>, its
// `device` link, type 32 (ARPHRD_INFINIBAND), the infiniband_mad (umad/issm, with `port`) and
// infiniband_verbs (uverbs) class devices under the PCI device, sriov_* counts, physfn/virtfn
// links. `nodes` also makes the /dev/infiniband character nodes (mknod, so root only).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { treeWriter } from "./hw-tree.js";

export const IB_PF_PCI = "0000:00:08.0";
export const IB_VF_PCI = "0000:00:08.1";
export const IB_PF_ADDRESS = "a0:00:02:20:fe:80:00:00:00:00:00:00:ec:0d:9a:03:00:1c:2d:ee";
export const IB_VF_ADDRESS = "a0:00:03:e8:fe:80:00:00:00:00:00:00:ec:0d:9a:03:00:1c:2d:ef";
/** A second VF (names.vf2). */
export const IB_VF2_PCI = "0000:00:08.2";
export const IB_VF2_ADDRESS = "a0:00:03:e9:fe:80:00:00:00:00:00:00:ec:0d:9a:03:00:1c:2d:f0";

/** The nodes each function has: name, major:minor, mode. */
export const IB_NODES: Record<"pf" | "vf" | "vf2", [string, string, string][]> = {
  pf: [
    ["issm0", "231:64", "0600"],
    ["umad0", "231:0", "0600"],
    ["uverbs0", "231:192", "0666"],
  ],
  vf: [
    ["issm1", "231:65", "0600"],
    ["umad1", "231:1", "0600"],
    ["uverbs1", "231:193", "0666"],
  ],
  vf2: [
    ["issm2", "231:66", "0600"],
    ["umad2", "231:2", "0600"],
    ["uverbs2", "231:194", "0666"],
  ],
};

export function buildIbTree(top: string, names: { pf: string; vf: string; vf2?: string }, opts: { nodes?: boolean } = {}): void {
  const { put, link, mknod } = treeWriter(top);
  mkdirSync(join(top, "sys/bus/pci/drivers/mlx5_core"), { recursive: true });
  const fn = (pci: string, kind: "pf" | "vf" | "vf2", netdev: string, address: string) => {
    const dir = `sys/devices/pci0000:00/${pci}`;
    put(`${dir}/vendor`, "0x15b3");
    put(`${dir}/device`, kind === "pf" ? "0x1017" : "0x1018");
    put(`${dir}/class`, "0x020700");
    put(`${dir}/numa_node`, "-1");
    link("../../../bus/pci/drivers/mlx5_core", `${dir}/driver`);
    mkdirSync(join(top, `${dir}/infiniband/mlx5_${{ pf: 0, vf: 1, vf2: 2 }[kind]}`), { recursive: true });
    for (const [node, dev] of IB_NODES[kind]) {
      const cls = node.startsWith("uverbs") ? "infiniband_verbs" : "infiniband_mad";
      put(`${dir}/${cls}/${node}/dev`, dev);
      if (cls === "infiniband_mad") put(`${dir}/${cls}/${node}/port`, "1");
    }
    for (const [k, v] of Object.entries({ type: "32", address, dev_port: "0", carrier: "1", mtu: "2044" })) put(`${dir}/net/${netdev}/${k}`, v);
    link(`../../../${pci}`, `${dir}/net/${netdev}/device`);
    link(`../../devices/pci0000:00/${pci}/net/${netdev}`, `sys/class/net/${netdev}`);
    link(`../../../devices/pci0000:00/${pci}`, `sys/bus/pci/devices/${pci}`);
  };
  fn(IB_PF_PCI, "pf", names.pf, IB_PF_ADDRESS);
  put(`sys/devices/pci0000:00/${IB_PF_PCI}/sriov_numvfs`, names.vf2 ? "2" : "1");
  put(`sys/devices/pci0000:00/${IB_PF_PCI}/sriov_totalvfs`, "8");
  fn(IB_VF_PCI, "vf", names.vf, IB_VF_ADDRESS);
  link(`../${IB_PF_PCI}`, `sys/devices/pci0000:00/${IB_VF_PCI}/physfn`);
  link(`../${IB_VF_PCI}`, `sys/devices/pci0000:00/${IB_PF_PCI}/virtfn0`);
  if (names.vf2) {
    fn(IB_VF2_PCI, "vf2", names.vf2, IB_VF2_ADDRESS);
    link(`../${IB_PF_PCI}`, `sys/devices/pci0000:00/${IB_VF2_PCI}/physfn`);
    link(`../${IB_VF2_PCI}`, `sys/devices/pci0000:00/${IB_PF_PCI}/virtfn1`);
  }
  if (!opts.nodes) return;
  for (const [node, dev, mode] of [...IB_NODES.pf, ...IB_NODES.vf, ...(names.vf2 ? IB_NODES.vf2 : [])]) {
    const [major, minor] = dev.split(":").map(Number);
    mknod(`dev/infiniband/${node}`, major, minor, mode);
  }
}
