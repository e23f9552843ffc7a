// Fan mode (bridge.mode=fan): the bridge gets an overlay address computed from this host's
// underlay address, and a VXLAN (or IPIP) tunnel with a fan-map carries the overlay.
// Needs kernel and iproute2 fan support (Ubuntu's patches); elsewhere `ip` refuses and we
// report that refusal as is.
import { addresses, ip, routeDestinations, setMtu, setUp } from "../host/ip.js";
import { readFileSync } from "node:fs";
import { CommandError } from "../../os/exec.js";
import { defaultUnderlay, fanAddress, fanHostRange, fanVxlanId } from "../subnets.js";
import { contains, parseCidr } from "../ipnet.js";
import type { BridgeBackend } from "./bridge-backends.js";

export const FAN_DEFAULT_OVERLAY = "240.0.0.0/8";
export const fanLinkName = (bridge: string) => `${bridge}-fan`;

export interface FanPlan {
  /** Address put on the bridge (CIDR). */
  bridgeCidr: string;
  bridgeAddress: string;
  range: { first: string; last: string };
  underlayDev: string;
  underlayAddress: string;
  /** The commands that create the tunnel, as `ip` argument lists. */
  commands: string[][];
  mtu: number;
}

/** Everything fan mode will do, computed from config and local addresses (pure). */
export function planFan(
  bridge: string,
  config: Record<string, string>,
  hostAddrs: { dev: string; cidr: string }[],
  devMtu: (dev: string) => number,
): FanPlan {
  const underlay = config["fan.underlay_subnet"];
  const overlay = config["fan.overlay_subnet"] || FAN_DEFAULT_OVERLAY;
  const u = parseCidr(underlay ?? "");
  if (!u) throw new Error(`Invalid fan.underlay_subnet "${underlay}"`);
  const mine = hostAddrs.find((a) => {
    const c = parseCidr(a.cidr);
    return c && c.family === 4 && contains(u, 4, c.ip);
  });
  if (!mine) throw new Error(`Couldn't find an address on the underlay subnet "${underlay}"`);
  const underlayAddress = mine.cidr.split("/")[0];
  const addr = fanAddress(underlay!, overlay, underlayAddress);
  const ipip = config["fan.type"] === "ipip";
  const bridgeCidr = ipip ? `${addr.address}/24` : addr.cidr;
  const mtu = config["bridge.mtu"] ? Number(config["bridge.mtu"]) : devMtu(mine.dev) - 50;
  const link = fanLinkName(bridge);
  const commands = ipip
    ? [
        ["-4", "route", "flush", "dev", "tunl0"],
        ["link", "set", "dev", "tunl0", "up"],
        ["link", "change", "dev", "tunl0", "type", "ipip", "fan-map", `${overlay}:${underlay}`],
        ["route", "add", overlay, "dev", "tunl0", "src", addr.address],
      ]
    : [["link", "add", link, "type", "vxlan", "id", String(fanVxlanId(overlay)), "dev", mine.dev, "dstport", "0", "local", underlayAddress, "fan-map", `${overlay}:${underlay}`]];
  return { bridgeCidr, bridgeAddress: addr.address, range: fanHostRange(addr.address), underlayDev: mine.dev, underlayAddress, commands, mtu };
}

/** fan.underlay_subnet=auto: the subnet of the default gateway's interface. */
export async function autoUnderlay(): Promise<string> {
  const { defaultDev } = await routeDestinations();
  const addrs = (await addresses()).flatMap((l) => l.addr_info.filter((a) => a.family === "inet").map((a) => ({ dev: l.ifname, cidr: `${a.local}/${a.prefixlen}` })));
  return defaultUnderlay(defaultDev, addrs);
}

export async function hostV4Addresses(): Promise<{ dev: string; cidr: string }[]> {
  return (await addresses()).flatMap((l) => l.addr_info.filter((a) => a.family === "inet").map((a) => ({ dev: l.ifname, cidr: `${a.local}/${a.prefixlen}` })));
}

export function devMtu(dev: string): number {
  try {
    return Number(readFileSync(`/sys/class/net/${dev}/mtu`, "utf8").trim());
  } catch {
    return 1500;
  }
}

/** Run the plan's tunnel commands; a kernel or iproute2 without fan support fails here. */
export async function setupFanTunnel(bridge: string, plan: FanPlan, backend: BridgeBackend, isIpip: boolean): Promise<void> {
  for (const cmd of plan.commands) {
    try {
      await ip(...cmd);
    } catch (e) {
      // iproute2 without fan support prints its whole usage; the first line says why.
      const why = e instanceof CommandError ? e.stderr.trim().split("\n")[0] : (e as Error).message;
      throw new Error(`Fan mode is not supported by this host (ip ${cmd.join(" ")}): ${why}`);
    }
  }
  if (isIpip) return;
  const link = fanLinkName(bridge);
  await setMtu(link, plan.mtu);
  await setUp(link);
  await backend.addPort(bridge, link);
}
