// Interface facts read from /sys/class/net (no process spawns): the unmanaged network list
// and most of GET /1.0/networks/NAME/state.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const SYS = "/sys/class/net";

const IFF_UP = 0x1;
const IFF_BROADCAST = 0x2;
const IFF_LOOPBACK = 0x8;
const IFF_POINTOPOINT = 0x10;

function read(dev: string, file: string): string | undefined {
  try {
    return readFileSync(join(SYS, dev, file), "utf8").trim();
  } catch {
    return undefined;
  }
}

export function interfaceExists(name: string): boolean {
  return name !== "" && !name.includes("/") && existsSync(join(SYS, name));
}

export function listInterfaces(): string[] {
  try {
    return readdirSync(SYS).sort((a, b) => ifindex(a) - ifindex(b));
  } catch {
    return [];
  }
}

function ifindex(dev: string): number {
  return Number(read(dev, "ifindex") ?? 0);
}

function flags(dev: string): number {
  return Number.parseInt(read(dev, "flags") ?? "0", 16);
}

export function isBridge(dev: string): boolean {
  return existsSync(join(SYS, dev, "bridge"));
}

/** LXD's type for an unmanaged interface. `ovsBridges` are known OVS bridges (no spawn). */
export function unmanagedType(dev: string, ovsBridges: Set<string> = new Set()): string {
  if (flags(dev) & IFF_LOOPBACK) return "loopback";
  if (isBridge(dev) || ovsBridges.has(dev)) return "bridge";
  if (existsSync(`/proc/net/vlan/${dev}`)) return "vlan";
  if (existsSync(join(SYS, dev, "device"))) return "physical";
  if (existsSync(join(SYS, dev, "bonding"))) return "bond";
  return "unknown";
}

export interface LinkFacts {
  hwaddr: string;
  mtu: number;
  state: "up" | "down";
  type: string;
  counters: { bytes_received: number; bytes_sent: number; packets_received: number; packets_sent: number };
  bridge: null | { id: string; stp: boolean; forward_delay: number; vlan_default: number; vlan_filtering: boolean; upper_devices: string[] };
}

export function linkFacts(dev: string): LinkFacts {
  const f = flags(dev);
  const stat = (n: string) => Number(read(dev, `statistics/${n}`) ?? 0);
  const type = f & IFF_LOOPBACK ? "loopback" : f & IFF_POINTOPOINT ? "point-to-point" : f & IFF_BROADCAST ? "broadcast" : "unknown";
  let bridge: LinkFacts["bridge"] = null;
  if (isBridge(dev)) {
    const filtering = read(dev, "bridge/vlan_filtering") === "1";
    // LXD's "upper devices" of a bridge are its ports (brif), e.g. the instances' veths.
    const upper = bridgePorts(dev).sort();
    bridge = {
      id: read(dev, "bridge/bridge_id") ?? "",
      stp: read(dev, "bridge/stp_state") !== "0",
      forward_delay: Number(read(dev, "bridge/forward_delay") ?? 0),
      vlan_default: filtering ? Number(read(dev, "bridge/default_pvid") ?? 0) : 0,
      vlan_filtering: filtering,
      upper_devices: upper,
    };
  }
  return {
    hwaddr: read(dev, "address") ?? "",
    mtu: Number(read(dev, "mtu") ?? 0),
    state: f & IFF_UP ? "up" : "down",
    type,
    counters: { bytes_received: stat("rx_bytes"), bytes_sent: stat("tx_bytes"), packets_received: stat("rx_packets"), packets_sent: stat("tx_packets") },
    bridge,
  };
}

export function interfaceMtu(dev: string): number | undefined {
  const v = Number(read(dev, "mtu"));
  return v > 0 ? v : undefined;
}

/** Interfaces enslaved to a native bridge. */
export function bridgePorts(dev: string): string[] {
  try {
    return readdirSync(join(SYS, dev, "brif"));
  } catch {
    return [];
  }
}

export function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(join("/proc/sys", path), "utf8").trim();
  } catch {
    return undefined;
  }
}
