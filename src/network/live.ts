// The networks running on this host: one live driver per managed network (built with the
// network's config on this member), its state directory, and one lock per network that
// serialises changes to it.
import { join } from "node:path";
import type { Logger } from "pino";
import type { NetworkRow } from "../db/network-repo.js";
import { InternalError } from "../shared/errors.js";
import { isNetworkType, networkDrivers, type NetworkType } from "./registry.js";
import type { FirewallAclRule } from "./acls/rules.js";
import type { NetworkConfig, NetworkDriver } from "./types.js";

export interface LiveNetworksDeps {
  /** $LXD_DIR/networks */
  dir: string;
  log: Logger;
  aclRules(project: string, network: string, config: NetworkConfig): FirewallAclRule[];
  forwardRules(network: string, config: NetworkConfig): { dnat: string[]; snat: string[] };
  /** A network's config on this member (cluster members have their own keys). */
  memberConfig(name: string, config: NetworkConfig): NetworkConfig;
}

export class LiveNetworks {
  private readonly running = new Map<string, NetworkDriver>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: LiveNetworksDeps) {}

  /** $LXD_DIR/networks/<name>: the network's state (dnsmasq files, leases). */
  dir(name: string): string {
    return join(this.deps.dir, name);
  }

  /** A driver for network `name` of `type` with exactly `config`, and its firewall rules. */
  build(project: string, name: string, type: NetworkType, config: NetworkConfig): NetworkDriver {
    return networkDrivers[type]({
      name,
      config,
      dir: this.dir(name),
      log: this.deps.log,
      aclRules: (c) => this.deps.aclRules(project, name, c),
      forwardRules: (c) => this.deps.forwardRules(name, c),
    });
  }

  /** A driver for a managed network, with this member's keys over `config`. */
  driverFor(row: NetworkRow, config = row.config): NetworkDriver {
    if (!isNetworkType(row.type)) throw new InternalError(`Unknown network type "${row.type}"`);
    return this.build(row.project, row.name, row.type, this.deps.memberConfig(row.name, config));
  }

  /** The running driver of a managed network (built on first use). */
  driver(row: NetworkRow): NetworkDriver {
    let d = this.running.get(row.name);
    if (!d) {
      d = this.driverFor(row);
      this.running.set(row.name, d);
    }
    return d;
  }

  get(name: string): NetworkDriver | undefined {
    return this.running.get(name);
  }

  set(name: string, driver: NetworkDriver): void {
    this.running.set(name, driver);
  }

  delete(name: string): void {
    this.running.delete(name);
  }

  entries(): IterableIterator<[string, NetworkDriver]> {
    return this.running.entries();
  }

  clear(): void {
    this.running.clear();
  }

  /** Run `fn` after every earlier change to network `name`. */
  async locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.locks.set(name, next.catch(() => {}));
    return next;
  }
}
