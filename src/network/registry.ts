// Network types by the name clients see. One line each. Open vSwitch, tunnels and fan are
// options of the bridge type (bridge.driver, tunnel.*, bridge.mode), as in LXD.
import { bridgeNetwork } from "./drivers/bridge.js";
import { macvlanNetwork, physicalNetwork, sriovNetwork } from "./drivers/uplink.js";
import type { NetworkDriverFactory } from "./types.js";

export const networkDrivers = {
  bridge: bridgeNetwork,
  macvlan: macvlanNetwork,
  sriov: sriovNetwork,
  physical: physicalNetwork,
} satisfies Record<string, NetworkDriverFactory>;

export type NetworkType = keyof typeof networkDrivers;

export const isNetworkType = (t: string): t is NetworkType => Object.hasOwn(networkDrivers, t);
