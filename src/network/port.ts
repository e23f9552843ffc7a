// NetworksPort, what instances ask of networks: a network's host interface, static DHCP
// leases and IP-filter addresses for their NICs, and BGP routes of NICs.
import type { NetworksPort } from "../ports.js";
import type { NetworkRepo, NetworkRow } from "../db/network-repo.js";
import { BadRequest, NotFound } from "../shared/errors.js";
import type { NetworkBgp } from "./bgp/network-bgp.js";
import type { LiveNetworks } from "./live.js";

/** The project holding the host's networks. */
const PROJECT = "default";

export interface NetworkPortDeps {
  repo: NetworkRepo;
  live: Pick<LiveNetworks, "driver">;
  /** The project holding the networks a request in `project` uses (features.networks). */
  projectOf(project: string): string;
  /** The managed network, or LXD's 404. */
  row(project: string, name: string): NetworkRow;
  bgp?: NetworkBgp;
}

export class NetworkPort implements NetworksPort {
  constructor(private readonly d: NetworkPortDeps) {}

  projectOf(project: string): string {
    return this.d.projectOf(project);
  }

  get(project: string, name: string): { name: string; type: string; config: Record<string, string> } {
    const row = this.d.repo.get(this.d.projectOf(project), name);
    if (!row) throw new NotFound("Network not found");
    return { name: this.d.live.driver(row).hostInterface(), type: row.type, config: { ...row.config } };
  }

  parentsInUse(): string[] {
    return [...new Set(this.d.repo.all().map((r) => r.config.parent ?? "").filter((p) => p !== ""))];
  }

  isOvs(project: string, name: string): boolean {
    const row = this.d.repo.get(this.d.projectOf(project), name);
    return row?.type === "bridge" && row.config["bridge.driver"] === "openvswitch";
  }

  async setStaticLease(network: string, instance: string, hwaddr: string, ipv4?: string, ipv6?: string, device?: string): Promise<void> {
    const driver = this.d.live.driver(this.d.row(PROJECT, network));
    if (!driver.setStaticHost) throw new BadRequest(`Network "${network}" does not support static DHCP leases`);
    await driver.setStaticHost(device ? `${instance}.${device}` : instance, { hwaddr, ipv4, ipv6, hostname: dnsName(instance) });
  }

  async allocateFilterAddresses(
    network: string,
    instance: string,
    device: string,
    host: { hwaddr: string; ipv4?: string; ipv6?: string },
    want: { ipv4: boolean; ipv6: boolean },
  ): Promise<{ ipv4?: string; ipv6?: string }> {
    const driver = this.d.live.driver(this.d.row(PROJECT, network));
    if (!driver.allocateStaticHost) return { ipv4: want.ipv4 ? "none" : undefined, ipv6: want.ipv6 ? "none" : undefined };
    return driver.allocateStaticHost(`${instance}.${device}`, { ...host, hostname: dnsName(instance) }, want);
  }

  async removeStaticLease(network: string, instance: string, device?: string): Promise<void> {
    const row = this.d.repo.get(PROJECT, network);
    if (!row) return;
    await this.d.live.driver(row).removeStaticHost?.(device ? `${instance}.${device}` : instance);
  }

  /** bgpAddPrefix: a NIC's external routes on a managed network (owner: instance_ID_DEVICE). */
  async advertiseNicRoutes(network: string, owner: string, nic: Record<string, string>): Promise<void> {
    const row = this.d.repo.get(PROJECT, network);
    if (row && this.d.bgp) await this.d.bgp.advertiseNic(row.config, owner, nic);
  }

  async withdrawNicRoutes(owner: string): Promise<void> {
    await this.d.bgp?.withdrawNic(owner);
  }
}

/** LXD's project.DNS for a project.Instance name ("proj_inst" -> "inst.proj"; instance names have no "_"). */
function dnsName(projectInstance: string): string {
  const i = projectInstance.lastIndexOf("_");
  return i < 0 ? projectInstance : `${projectInstance.slice(i + 1)}.${projectInstance.slice(0, i)}`;
}
