// Bridge tunnels (tunnel.NAME.*): a VXLAN or GRE link named BRIDGE-NAME, enslaved to the bridge.
import { ip, linkExists, deleteLink, setMtu, setUp } from "../host/ip.js";
import { tunnelsOf } from "../keys.js";
import type { BridgeBackend } from "./bridge-backends.js";

export const tunnelLinkName = (bridge: string, tunnel: string) => `${bridge}-${tunnel}`;

/** The `ip link add` arguments for one tunnel, as LXD builds them; undefined for partial configs. */
export function tunnelLinkArgs(bridge: string, tunnel: string, t: Record<string, string>, defaultDev?: string): string[] | undefined {
  const name = tunnelLinkName(bridge, tunnel);
  const args = ["link", "add", "dev", name];
  if (t.protocol === "gre") {
    if (!t.local || !t.remote) return undefined;
    return [...args, "type", "gretap", "local", t.local, "remote", t.remote];
  }
  if (t.protocol !== "vxlan") return undefined;
  args.push("type", "vxlan");
  if (t.local && t.remote) args.push("local", t.local, "remote", t.remote);
  else {
    const dev = t.interface || defaultDev;
    if (!dev) throw new Error(`Tunnel "${tunnel}" needs tunnel.${tunnel}.interface (no default gateway interface found)`);
    args.push("group", t.group || "239.0.0.1", "dev", dev);
  }
  args.push("dstport", t.port || "0", "id", t.id || "1", "ttl", t.ttl || "1");
  return args;
}

export function tunnelNames(config: Record<string, string>): string[] {
  return Object.keys(tunnelsOf(config));
}

/** Remove the tunnel links of `config` (old or current). */
export async function removeTunnels(bridge: string, config: Record<string, string>): Promise<void> {
  for (const t of tunnelNames(config)) await deleteLink(tunnelLinkName(bridge, t));
}

/** Create every tunnel of the config and bridge it; returns the links created. */
export async function createTunnels(bridge: string, config: Record<string, string>, backend: BridgeBackend, mtu: string, defaultDev?: string): Promise<string[]> {
  const created: string[] = [];
  for (const [tunnel, t] of Object.entries(tunnelsOf(config))) {
    const args = tunnelLinkArgs(bridge, tunnel, t, defaultDev);
    if (!args) continue;
    const link = tunnelLinkName(bridge, tunnel);
    if (linkExists(link)) await deleteLink(link);
    try {
      await ip(...args);
    } catch (e) {
      throw new Error(`Failed to create tunnel "${tunnel}" (${t.protocol}): ${(e as Error).message}`);
    }
    created.push(link);
    await backend.addPort(bridge, link);
    await setMtu(link, mtu);
    await setUp(link);
  }
  return created;
}
