// What a network (bridge, physical) and its forwards and NICs tell the BGP speaker, as LXD's
// bgpSetup / bgpClear / forwardBGPSetupPrefixes / bgpAddPrefix: peers by reference count,
// prefixes under LXD's owner names ("network_ID", "network_ID_forward", "instance_ID_DEVICE").
import type { Logger } from "pino";
import { bgpPeersOf, forwardPrefixes, networkPrefixes, nicPrefixes } from "./rules.js";
import type { BgpSpeaker } from "./speaker.js";

export interface BgpNetwork {
  id: number;
  name: string;
  type: string;
  config: Record<string, string>;
}

/** Network types that take part in BGP in 5.0.2 (their keys accept bgp.*). */
export const BGP_NETWORK_TYPES = new Set(["bridge", "physical"]);

export class NetworkBgp {
  constructor(
    readonly speaker: BgpSpeaker,
    /** A network's forward listen addresses. */
    private readonly forwardAddresses: (network: string) => string[],
    private readonly log: Logger,
  ) {}

  /** bgpSetup: peers (diffed against `old`), the network's prefixes, its forwards' prefixes. */
  async setup(n: BgpNetwork, old?: Record<string, string>): Promise<void> {
    if (!BGP_NETWORK_TYPES.has(n.type)) return;
    const next = bgpPeersOf(n.config);
    const prev = old ? bgpPeersOf(old) : [];
    const added: string[] = [];
    try {
      for (const p of prev) if (!next.includes(p)) await this.speaker.removePeer(p.split(",")[0]);
      for (const p of next) {
        if (prev.includes(p)) continue;
        const [address, asn, ...password] = p.split(",");
        await this.speaker.addPeer(address, Number(asn), password.join(","));
        added.push(address);
      }
    } catch (e) {
      // Only what this call added is taken back (a refused peer leaves the others' counts alone).
      for (const address of added) await this.speaker.removePeer(address).catch(() => {});
      throw new Error(`Failed setting up BGP peers: ${(e as Error).message}`);
    }
    if (n.type === "bridge") {
      try {
        await this.speaker.replacePrefixes(`network_${n.id}`, networkPrefixes(n.config));
      } catch (e) {
        throw new Error(`Failed setting up BGP prefixes: ${(e as Error).message}`);
      }
      await this.refreshForwards(n);
    }
  }

  /** bgpClear: the network's peers and all its prefixes. */
  async clear(n: BgpNetwork): Promise<void> {
    if (!BGP_NETWORK_TYPES.has(n.type)) return;
    for (const p of bgpPeersOf(n.config)) {
      await this.speaker.removePeer(p.split(",")[0]).catch((err) => this.log.warn({ err, network: n.name }, "BGP: removing peer"));
    }
    await this.speaker.removePrefixByOwner(`network_${n.id}`);
    await this.speaker.removePrefixByOwner(`network_${n.id}_forward`);
  }

  /** forwardBGPSetupPrefixes. */
  async refreshForwards(n: BgpNetwork): Promise<void> {
    if (n.type !== "bridge") return;
    try {
      await this.speaker.replacePrefixes(`network_${n.id}_forward`, forwardPrefixes(n.config, this.forwardAddresses(n.name)));
    } catch (e) {
      throw new Error(`Failed applying BGP prefixes for address forwards: ${(e as Error).message}`);
    }
  }

  /** bgpAddPrefix for a NIC on a managed network (replacing what the owner had). */
  async advertiseNic(networkConfig: Record<string, string>, owner: string, nic: Record<string, string>): Promise<void> {
    await this.speaker.replacePrefixes(owner, nicPrefixes(networkConfig, nic));
  }

  async withdrawNic(owner: string): Promise<void> {
    await this.speaker.removePrefixByOwner(owner);
  }
}
