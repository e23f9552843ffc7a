// The two ways a bridge network's bridge can exist on the host: a Linux bridge (native)
// or an Open vSwitch bridge on the userspace datapath (openvswitch). One line each below.
import { isBridge } from "../host/sysfs.js";
import { deleteLink, ip, linkExists, setMaster } from "../host/ip.js";
import * as ovs from "../host/ovs.js";

export interface BridgeBackend {
  /** Create the bridge if missing (adopting an existing one). */
  ensure(name: string, hwaddr: string): Promise<void>;
  delete(name: string): Promise<void>;
  exists(name: string): Promise<boolean>;
  addPort(bridge: string, port: string): Promise<void>;
  deletePort(bridge: string, port: string): Promise<void>;
}

const native: BridgeBackend = {
  async ensure(name, hwaddr) {
    if (linkExists(name) && !isBridge(name)) throw new Error(`Interface "${name}" already exists and is not a bridge`);
    if (!linkExists(name)) await ip("link", "add", "dev", name, "address", hwaddr, "type", "bridge");
    else await ip("link", "set", "dev", name, "address", hwaddr);
  },
  delete: (name) => deleteLink(name),
  exists: async (name) => isBridge(name),
  addPort: (bridge, port) => setMaster(port, bridge),
  deletePort: async (_bridge, port) => {
    if (linkExists(port)) await ip("link", "set", "dev", port, "nomaster");
  },
};

const openvswitch: BridgeBackend = {
  async ensure(name, hwaddr) {
    await ovs.addBridge(name, hwaddr);
    // The userspace datapath creates the bridge's tap device asynchronously.
    for (let i = 0; i < 100 && !linkExists(name); i++) await new Promise((r) => setTimeout(r, 50));
    if (!linkExists(name)) throw new Error(`Open vSwitch bridge "${name}" did not appear (is ovs-vswitchd running?)`);
  },
  delete: (name) => ovs.deleteBridge(name),
  exists: (name) => ovs.bridgeExists(name),
  addPort: (bridge, port) => ovs.addPort(bridge, port),
  deletePort: (bridge, port) => ovs.deletePort(bridge, port),
};

export const bridgeBackends: Record<string, BridgeBackend> = {
  native,
  openvswitch,
};
