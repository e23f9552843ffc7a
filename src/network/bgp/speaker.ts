// The daemon's BGP speaker, as LXD 5.0.2's lxd/bgp.Server: the prefixes and peers the
// networks and NICs declare are kept here (also while no BGP listener runs), and pushed to the
// routing daemon (a BgpBackend: gobgpd.ts) while core.bgp_address/asn/routerid are all set.
// Debug() is what GET /internal/testing/bgp answers.
import type { Logger } from "pino";
import { formatIp, parseIp } from "../ipnet.js";

export interface BgpGlobal {
  /** core.bgp_address as configured ("[::]:179", "10.0.0.1", ...). */
  address: string;
  asn: number;
  routerId: string;
}

export interface BgpPeer {
  address: string;
  asn: number;
  password: string;
}

export interface BgpPath {
  prefix: string;
  nexthop: string;
}

/** The host side: a routing daemon that holds the session listener, the peers and the paths. */
export interface BgpBackend {
  /** Start (or restart) with this listener, these peers and these paths; throws when it can't listen. */
  start(global: BgpGlobal, peers: BgpPeer[], paths: BgpPath[]): Promise<void>;
  stop(): Promise<void>;
  setPeers(peers: BgpPeer[]): Promise<void>;
  setPaths(paths: BgpPath[]): Promise<void>;
}

/** LXD's bgp.DebugInfo. */
export interface BgpDebugInfo {
  server: { address: string; asn: number; router_id: string; running: boolean };
  prefixes: { owner: string; prefix: string; nexthop: string }[];
  peers: { address: string; asn: number; password: string; count: number }[];
}

interface Peer extends BgpPeer {
  count: number;
}

/** Go's net.IP.String() for a parsed address ("<nil>" for none). */
const ipText = (v: string) => {
  const a = parseIp(v);
  return a ? formatIp(a.family, a.ip) : "<nil>";
};

export class BgpSpeaker {
  private readonly paths = new Map<number, BgpPath & { owner: string }>();
  private nextPath = 1;
  private readonly peers = new Map<string, Peer>();
  private global?: BgpGlobal;
  /** LXD's `s.bgp != nil`: true once a listener was set up in this daemon's life. */
  private setUp = false;
  /** Backend calls, one at a time and in order. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly backend: BgpBackend,
    private readonly log: Logger,
  ) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => {});
    return next;
  }

  private peerList(): BgpPeer[] {
    return [...this.peers.values()].map(({ address, asn, password }) => ({ address, asn, password }));
  }

  private pathList(): BgpPath[] {
    return [...this.paths.values()].map(({ prefix, nexthop }) => ({ prefix, nexthop }));
  }

  /** Push the current paths to a running listener (logged, not thrown: the supervisor re-syncs). */
  private syncPaths(): Promise<void> {
    if (!this.global) return Promise.resolve();
    return this.serial(() => this.backend.setPaths(this.pathList())).catch((err) => this.log.warn({ err }, "BGP: failed updating advertised prefixes"));
  }

  private syncPeers(): Promise<void> {
    if (!this.global) return Promise.resolve();
    return this.serial(() => this.backend.setPeers(this.peerList())).catch((err) => this.log.warn({ err }, "BGP: failed updating peers"));
  }

  /**
   * Reconfigure: stop the listener, then start it again when address, ASN and router ID are
   * all set. Unchanged settings leave a running listener alone (each of the three keys calls this).
   */
  async reconfigure(address: string, asn: number, routerId: string): Promise<void> {
    const want = address !== "" && asn > 0 && routerId !== "" ? { address, asn, routerId } : undefined;
    const cur = this.global;
    if (want && cur && want.address === cur.address && want.asn === cur.asn && want.routerId === cur.routerId) return;
    if (!want && !cur) return;
    if (want && parseIp(want.routerId)?.family !== 4) throw new Error("Invalid router-id (must be IPv4 address");
    await this.serial(async () => {
      if (cur) await this.backend.stop();
      this.global = undefined;
      if (!want) return;
      try {
        await this.backend.start(want, this.peerList(), this.pathList());
        this.setUp = true;
        this.global = want;
      } catch (e) {
        if (cur) {
          await this.backend
            .start(cur, this.peerList(), this.pathList())
            .then(() => (this.global = cur))
            .catch((err) => this.log.error({ err }, "BGP: failed restoring the previous listener"));
        }
        throw e;
      }
    });
  }

  async stop(): Promise<void> {
    await this.serial(async () => {
      if (this.global) await this.backend.stop();
      this.global = undefined;
    });
  }

  async addPrefix(prefix: string, nexthop: string, owner: string): Promise<void> {
    this.paths.set(this.nextPath++, { prefix, nexthop, owner });
    await this.syncPaths();
  }

  async addPrefixes(list: BgpPath[], owner: string): Promise<void> {
    for (const p of list) this.paths.set(this.nextPath++, { ...p, owner });
    if (list.length > 0) await this.syncPaths();
  }

  async removePrefixByOwner(owner: string): Promise<void> {
    let changed = false;
    for (const [id, p] of this.paths) {
      if (p.owner !== owner) continue;
      this.paths.delete(id);
      changed = true;
    }
    if (changed) await this.syncPaths();
  }

  /** Replace an owner's prefixes in one backend update. */
  async replacePrefixes(owner: string, list: BgpPath[]): Promise<void> {
    const before = [...this.paths.values()].filter((p) => p.owner === owner);
    const same = before.length === list.length && before.every((p, i) => p.prefix === list[i].prefix && p.nexthop === list[i].nexthop);
    if (same) return;
    for (const [id, p] of this.paths) if (p.owner === owner) this.paths.delete(id);
    for (const p of list) this.paths.set(this.nextPath++, { ...p, owner });
    if (before.length > 0 || list.length > 0) await this.syncPaths();
  }

  /** AddPeer: a peer already used by another network must agree on ASN and password. */
  async addPeer(address: string, asn: number, password: string): Promise<void> {
    const key = ipText(address);
    const existing = this.peers.get(key);
    if (existing) {
      if (existing.asn !== asn) throw new Error(`Peer "${key}" already used but with differing ASN (${asn} vs ${existing.asn})`);
      if (existing.password !== password) throw new Error(`Peer "${key}" already used but with a different password`);
      existing.count++;
      return;
    }
    this.peers.set(key, { address: key, asn, password, count: 1 });
    await this.syncPeers();
  }

  async removePeer(address: string): Promise<void> {
    const key = ipText(address);
    const existing = this.peers.get(key);
    if (!existing) throw new Error("Peer not found");
    if (existing.count > 1) {
      existing.count--;
      return;
    }
    this.peers.delete(key);
    await this.syncPeers();
  }

  /** LXD's Debug(). */
  debug(): BgpDebugInfo {
    const g = this.global;
    return {
      server: { address: g?.address ?? "", asn: g?.asn ?? 0, router_id: g ? ipText(g.routerId) : "<nil>", running: this.setUp },
      prefixes: [...this.paths.values()].map((p) => ({ owner: p.owner, prefix: p.prefix, nexthop: p.nexthop })),
      peers: [...this.peers.values()].map((p) => ({ address: p.address, asn: p.asn, password: p.password, count: p.count })),
    };
  }
}
