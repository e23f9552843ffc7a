// The network driver contract. A driver converges the host to a network's config and
// reports its state; the service (service.ts) owns the database and the rules.
import type { Logger } from "pino";
import type { LocalFacts } from "./subnets.js";
import type { StaticHost } from "./host/dnsmasq.js";
import type { FirewallAclRule } from "./acls/rules.js";

export type NetworkConfig = Record<string, string>;

export interface NetworkContext {
  /** The network name, which is also its host interface name. */
  name: string;
  config: NetworkConfig;
  /** $LXD_DIR/networks/NAME: dnsmasq files and other host state. */
  dir: string;
  log: Logger;
  /** The firewall rules of the ACLs a config names (security.acls), resolved by the service. */
  aclRules?(config: NetworkConfig): FirewallAclRule[];
  /** The DNAT and hairpin rules of the network's address forwards, resolved by the service. */
  forwardRules?(config: NetworkConfig): { dnat: string[]; snat: string[] };
}

export interface NetworkStateView {
  addresses: { family: string; address: string; netmask: string; scope: string }[];
  counters: { bytes_received: number; bytes_sent: number; packets_received: number; packets_sent: number };
  hwaddr: string;
  mtu: number;
  state: string;
  type: string;
  bond: null;
  bridge: unknown;
  vlan: null;
  ovn: null;
}

export interface LeaseView {
  hostname: string;
  hwaddr: string;
  address: string;
  type: "static" | "dynamic" | "gateway";
  location: string;
}

export interface NetworkDriver {
  /** The type clients see: bridge, macvlan, sriov, physical. */
  readonly type: string;
  /** Validate a full proposed config (LXD's messages). */
  validate(config: NetworkConfig): void;
  /** Defaults and "auto" values for a new network, decided from local facts only. */
  fillConfig?(config: NetworkConfig, facts: () => Promise<LocalFacts>): Promise<NetworkConfig>;
  /** Bring the network up, adopting what already exists on the host; idempotent. */
  start(): Promise<void>;
  /** Tear down everything this network put on the host; idempotent. */
  stop(): Promise<void>;
  /** Apply a new config to a started network. */
  update(next: NetworkConfig): Promise<void>;
  state(): Promise<NetworkStateView>;
  /** The host interface NICs of this network attach to (bridge) or use as parent. */
  hostInterface(): string;
  /** `nics`: the instances' NICs on the network (their SLAAC addresses are leases too). */
  leases?(nics?: { instance: string; hwaddr: string }[]): Promise<LeaseView[]>;
  setStaticHost?(entry: string, host: StaticHost): Promise<void>;
  removeStaticHost?(entry: string): Promise<void>;
  /** A static allocation for an IP-filtered NIC without a fixed address ("none": the family has no DHCP). */
  allocateStaticHost?(entry: string, host: StaticHost, want: { ipv4: boolean; ipv6: boolean }): Promise<{ ipv4?: string; ipv6?: string }>;
  /** Whether the bridge is an Open vSwitch bridge (NICs attach through ovs-vsctl). */
  isOvs?(): boolean;
  /** Re-apply the firewall after the network's ACLs or forwards changed (bridges). */
  refreshFirewall?(): Promise<void>;
}

export type NetworkDriverFactory = (ctx: NetworkContext) => NetworkDriver;
