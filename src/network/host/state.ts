// GET /1.0/networks/{name}/state for any host interface: sysfs facts plus `ip -j addr`.
import type { NetworkStateView } from "../types.js";
import { addresses } from "./ip.js";
import { linkFacts } from "./sysfs.js";

export async function interfaceState(dev: string, vlan: NetworkStateView["vlan"] = null): Promise<NetworkStateView> {
  const f = linkFacts(dev);
  const addrs = (await addresses(dev)).flatMap((l) => l.addr_info);
  return {
    addresses: addrs.map((a) => ({ family: a.family, address: a.local, netmask: String(a.prefixlen), scope: a.scope === "host" ? "local" : a.scope })),
    counters: f.counters,
    hwaddr: f.hwaddr,
    mtu: f.mtu,
    state: f.state,
    type: f.type,
    bond: null,
    bridge: f.bridge,
    vlan,
    ovn: null,
  };
}
