// A running container's network state, read from inside its network namespace with two rtnetlink
// dumps (links with their counters, addresses) by the native addon, off the event loop and for
// many containers in one job: no spawned `ip`, no per-interface sysfs reads.
import { native, type NetnsLinks } from "../os/native.js";

export interface NetAddress {
  family: "inet" | "inet6";
  address: string;
  netmask: string;
  scope: string;
}

export interface NetInterfaceState {
  addresses: NetAddress[];
  counters: Record<string, number>;
  hwaddr: string;
  host_name: string;
  mtu: number;
  state: string;
  type: string;
}

const ARPHRD: Record<number, string> = { 1: "broadcast", 772: "loopback", 65534: "point-to-point", 776: "point-to-point" };
const IFF_UP = 1;
const RT_SCOPE_LINK = 253;
const RT_SCOPE_HOST = 254;

/** LXD's scope words: loopback addresses are "local", IPv6 link-local "link", the rest "global". */
function scopeOf(family: 4 | 6, address: string, scope: number): string {
  if (family === 4) return address.startsWith("127.") ? "local" : "global";
  return scope === RT_SCOPE_HOST ? "local" : scope === RT_SCOPE_LINK ? "link" : "global";
}

/** The API's `network` object from one namespace's links and addresses. */
export function networkStateOf(ns: NetnsLinks, hostNames: Record<string, string>): Record<string, NetInterfaceState> {
  const out: Record<string, NetInterfaceState> = {};
  for (const link of ns.links) {
    const [rxBytes, rxPackets, rxErrors, rxDropped, txBytes, txPackets, txErrors, txDropped] = link.stats;
    out[link.name] = {
      addresses: ns.addrs
        .filter((a) => a.index === link.index)
        .map((a) => ({ family: a.family === 4 ? "inet" : "inet6", address: a.address, netmask: String(a.prefix), scope: scopeOf(a.family, a.address, a.scope) })),
      counters: {
        bytes_received: rxBytes, packets_received: rxPackets, errors_received: rxErrors, packets_dropped_inbound: rxDropped,
        bytes_sent: txBytes, packets_sent: txPackets, errors_sent: txErrors, packets_dropped_outbound: txDropped,
      },
      hwaddr: link.type === 772 ? "" : link.address,
      host_name: hostNames[link.name] ?? "",
      mtu: link.mtu,
      state: link.flags & IFF_UP ? "up" : "down",
      type: ARPHRD[link.type] ?? "broadcast",
    };
  }
  return out;
}

/** The network state of each process's namespace, `{}` for one that is gone. */
export async function readNetworkStates(pids: number[], hostNames: Record<string, string>[]): Promise<Record<string, NetInterfaceState>[]> {
  if (pids.length === 0) return [];
  const all = await native.netnsLinks(pids);
  return all.map((ns, i) => (ns ? networkStateOf(ns, hostNames[i] ?? {}) : {}));
}
