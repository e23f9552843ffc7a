// Network zones and their records: the rows, LXD's rules, and zone content for the DNS server.
import { BadRequest, NotFound } from "../../shared/errors.js";
import type { NetworkZoneRecordRow, NetworkZoneRepo, NetworkZoneRow } from "../../db/network-zone-repo.js";
import type { EventHub } from "../../operations/events.js";
import { leaseRecords, validateEntries, validateZoneConfig, zoneNameError, zoneRecords, type ZoneRecordEntry, type ZoneRR, type ZoneSource } from "./rules.js";
import { apiUrl } from "../../shared/urls.js";

export const ZONE_KEYS = ["dns.zone.forward", "dns.zone.reverse.ipv4", "dns.zone.reverse.ipv6"] as const;

export interface NetworkZoneView {
  name: string;
  description: string;
  config: Record<string, string>;
  used_by: string[];
}

export interface NetworkZoneRecordView {
  name: string;
  description: string;
  entries: ZoneRecordEntry[];
  config: Record<string, string>;
}

/** What zones need of networks: their config and leases. */
export interface ZoneNetworks {
  list(): { name: string; config: Record<string, string> }[];
  leases(name: string): Promise<{ hostname: string; address: string }[]>;
}

export interface NetworkZoneServiceDeps {
  repo: NetworkZoneRepo;
  events: EventHub;
  networkProject(project: string): string;
  networks(): ZoneNetworks;
}

const names = (v: string | undefined) =>
  (v ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
const isTrue = (v: string | undefined) => ["true", "yes", "on", "1"].includes((v ?? "").toLowerCase());
const isTrueOrEmpty = (v: string | undefined) => v === undefined || v === "" || isTrue(v);
/** Empty values are unset keys (`lxc network zone unset` sends ""), as the database stores them. */
const dropEmpty = (c: Record<string, string>) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== ""));
const zoneUrl = (zone: string, project: string) => apiUrl(project, "network-zones", zone);
const recordUrl = (zone: string, record: string, project: string) => apiUrl(project, "network-zones", zone, "records", record);

export interface ZoneRequest {
  description?: string;
  config?: Record<string, string> | null;
}

export interface RecordRequest extends ZoneRequest {
  entries?: ZoneRecordEntry[] | null;
}

export class NetworkZoneService {
  constructor(private readonly deps: NetworkZoneServiceDeps) {}

  /** A zone of the request's (network) project, or LXD's 404. */
  private require(requestProject: string, name: string): NetworkZoneRow {
    const row = this.deps.repo.find(name);
    if (!row || row.project !== this.deps.networkProject(requestProject)) throw new NotFound("Network zone not found");
    return row;
  }

  private networksUsing(zone: string): string[] {
    return this.deps
      .networks()
      .list()
      .filter((n) => ZONE_KEYS.some((k) => names(n.config[k]).includes(zone)))
      .map((n) => n.name);
  }

  private view(row: NetworkZoneRow): NetworkZoneView {
    return { name: row.name, description: row.description, config: row.config, used_by: this.networksUsing(row.name).map((n) => `/1.0/networks/${n}`) };
  }

  list(project: string): NetworkZoneView[] {
    return this.deps.repo.list(this.deps.networkProject(project)).map((r) => this.view(r));
  }

  get(project: string, name: string): NetworkZoneView {
    return this.view(this.require(project, name));
  }

  etagOf(project: string, name: string): unknown {
    const r = this.require(project, name);
    return [r.name, r.description, r.config];
  }

  create(requestProject: string, req: ZoneRequest & { name: string }): string {
    const project = this.deps.networkProject(requestProject);
    if (this.deps.repo.find(req.name)) throw new BadRequest("The network zone already exists");
    const err = zoneNameError(req.name);
    if (err) throw new BadRequest(err);
    const config = dropEmpty({ ...(req.config ?? {}) });
    try {
      validateZoneConfig(config);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    this.deps.repo.create({ project, name: req.name, description: req.description ?? "", config });
    const url = zoneUrl(req.name, project);
    this.deps.events.lifecycle("network-zone-created", url, { project });
    return url;
  }

  update(requestProject: string, name: string, req: ZoneRequest, mode: "put" | "patch"): void {
    const cur = this.require(requestProject, name);
    const config = dropEmpty(mode === "patch" ? { ...cur.config, ...(req.config ?? {}) } : { ...(req.config ?? {}) });
    try {
      validateZoneConfig(config);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    this.deps.repo.update({ ...cur, description: req.description ?? "", config });
    this.deps.events.lifecycle("network-zone-updated", zoneUrl(name, cur.project), { project: cur.project });
  }

  delete(requestProject: string, name: string): void {
    const cur = this.require(requestProject, name);
    if (this.networksUsing(name).length > 0) throw new BadRequest("Cannot delete a zone that is in use");
    this.deps.repo.delete(name);
    this.deps.events.lifecycle("network-zone-deleted", zoneUrl(name, cur.project), { project: cur.project });
  }

  /** validateZoneName for network config: the zone must exist. */
  assertZonesExist(config: Record<string, string>): void {
    for (const k of ZONE_KEYS) for (const z of names(config[k])) if (!this.deps.repo.find(z)) throw new Error(`Network zone "${z}" doesn't exist`);
  }

  // Records

  records(project: string, zone: string): NetworkZoneRecordView[] {
    this.require(project, zone);
    return this.deps.repo.records(zone);
  }

  record(project: string, zone: string, name: string): NetworkZoneRecordRow {
    this.require(project, zone);
    const r = this.deps.repo.record(zone, name);
    if (!r) throw new NotFound("Network zone record not found");
    return r;
  }

  /** The record's ETag is its writable part. */
  recordEtag(project: string, zone: string, name: string): unknown {
    const r = this.record(project, zone, name);
    return { description: r.description, entries: r.entries, config: r.config };
  }

  private checkedRecord(req: RecordRequest): Pick<NetworkZoneRecordRow, "entries" | "config"> {
    const config = { ...(req.config ?? {}) };
    const entries = (req.entries ?? []).map((e) => ({ type: e.type, ...(e.ttl ? { ttl: e.ttl } : {}), value: e.value }));
    try {
      for (const k of Object.keys(config)) if (!k.startsWith("user.")) throw new Error(`Invalid config option "${k}"`);
      validateEntries(entries);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    return { entries, config };
  }

  createRecord(project: string, zone: string, req: RecordRequest & { name: string }): string {
    const z = this.require(project, zone);
    if (!req.name) throw new BadRequest("Name is required");
    if (this.deps.repo.record(zone, req.name)) throw new BadRequest("The record already exists");
    const checked = this.checkedRecord(req);
    this.deps.repo.createRecord(zone, { name: req.name, description: req.description ?? "", ...checked });
    const url = recordUrl(zone, req.name, z.project);
    this.deps.events.lifecycle("network-zone-record-created", url, { project: z.project });
    return url;
  }

  updateRecord(project: string, zone: string, name: string, req: RecordRequest, mode: "put" | "patch"): void {
    const cur = this.record(project, zone, name);
    const merged: RecordRequest = mode === "patch" ? { ...req, config: { ...cur.config, ...(req.config ?? {}) }, entries: req.entries ?? cur.entries } : req;
    const checked = this.checkedRecord(merged);
    this.deps.repo.updateRecord(zone, { name, description: req.description ?? "", ...checked });
    const z = this.require(project, zone);
    this.deps.events.lifecycle("network-zone-record-updated", recordUrl(zone, name, z.project), { project: z.project });
  }

  deleteRecord(project: string, zone: string, name: string): void {
    this.record(project, zone, name);
    this.deps.repo.deleteRecord(zone, name);
    const z = this.require(project, zone);
    this.deps.events.lifecycle("network-zone-record-deleted", recordUrl(zone, name, z.project), { project: z.project });
  }

  // DNS

  /** The zone's config (for peer checks) and, when `full`, every record (AXFR); else only its SOA. */
  async content(zone: string, full: boolean): Promise<{ config: Record<string, string>; records: ZoneRR[] } | undefined> {
    const row = this.deps.repo.find(zone);
    if (!row) return undefined;
    const src: ZoneSource = {
      records: [],
      extra: [],
      nameservers: names(row.config["dns.nameservers"]),
      serial: Math.floor(Date.now() / 1000),
    };
    if (!full) return { config: row.config, records: zoneRecords(zone, src).slice(0, 1) };
    const includeNAT = isTrueOrEmpty(row.config["network.nat"]);
    for (const net of this.deps.networks().list()) {
      if (!ZONE_KEYS.some((k) => names(net.config[k]).includes(zone))) continue;
      const includeV4 = includeNAT || !isTrue(net.config["ipv4.nat"]);
      const includeV6 = includeNAT || !isTrue(net.config["ipv6.nat"]);
      const leases = await this.deps.networks().leases(net.name);
      const forwards = zone.endsWith(".arpa") ? names(net.config["dns.zone.forward"]) : [undefined];
      for (const forwardZone of forwards) src.records.push(...leaseRecords(zone, leases, { includeV4, includeV6, forwardZone }));
    }
    src.extra = this.deps.repo.records(zone).map((r) => ({ name: r.name, entries: r.entries }));
    return { config: row.config, records: zoneRecords(zone, src) };
  }
}
