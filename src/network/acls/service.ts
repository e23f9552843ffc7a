// Network ACLs: the rows, LXD's rules for them, and their use by networks' firewalls.
import { BadRequest, InternalError, NotFound } from "../../shared/errors.js";
import type { NetworkAclRepo, NetworkAclRow } from "../../db/network-acl-repo.js";
import type { EventHub } from "../../operations/events.js";
import { existsSync } from "node:fs";
import { readKernelLog } from "../../os/kmsg.js";
import { bridgeAclLog, loggedRules } from "./bridge-log.js";
import { OVN_CONTROLLER_LOG, ovnAclLog } from "./ovn-log.js";
import { aclNameError, networkAclRules, normaliseRule, validateAcl, type AclRule, type FirewallAclRule } from "./rules.js";
import { apiUrl } from "../../shared/urls.js";

export interface NetworkAclView {
  name: string;
  description: string;
  egress: AclRule[];
  ingress: AclRule[];
  config: Record<string, string>;
  used_by: string[];
}

export interface NetworkAclPut {
  description?: string;
  ingress?: AclRule[] | null;
  egress?: AclRule[] | null;
  config?: Record<string, string> | null;
}

/** What the ACL service needs of networks: who names an ACL, and re-applying their firewall. */
export interface AclNetworks {
  /** Managed networks of `project` with their config. */
  list(project: string): { name: string; type: string; config: Record<string, string> }[];
  /** Re-apply the firewall of a network whose ACLs changed. */
  refreshAcls(name: string): Promise<void>;
}

export interface NetworkAclServiceDeps {
  repo: NetworkAclRepo;
  events: EventHub;
  /** The project whose networks (and so ACLs) a request in `project` uses (features.networks). */
  networkProject(project: string): string;
  networks(): AclNetworks | undefined;
}

export const aclNames = (value: string | undefined): string[] =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

export class NetworkAclService {
  constructor(private readonly deps: NetworkAclServiceDeps) {}

  private project(project: string): string {
    return this.deps.networkProject(project);
  }

  private require(project: string, name: string): NetworkAclRow {
    const row = this.deps.repo.get(project, name);
    if (!row) throw new NotFound("Network ACL not found");
    return row;
  }

  /**
   * GET .../log: with an OVN controller log on the host, LXD 5.0.2's answer (ovn-log.ts); without
   * one, the kernel-log entries of the ACL's logged rules on the bridges that use it
   * (bridge-log.ts), and 5.0.2's error when no bridge uses it.
   */
  log(project: string, name: string): string {
    const p = this.project(project);
    const row = this.require(p, name);
    try {
      const bridges = this.networksUsing(p, name, "bridge");
      if (!existsSync(OVN_CONTROLLER_LOG) && bridges.length > 0) {
        const rules = loggedRules(bridges, row);
        return bridgeAclLog(rules, readKernelLog(rules.map((r) => r.prefix)));
      }
      return ovnAclLog(this.deps.repo.idOf(p, name) ?? 0);
    } catch (e) {
      throw new InternalError((e as Error).message);
    }
  }

  private networksUsing(project: string, name: string, type?: string): string[] {
    return (this.deps.networks()?.list(project) ?? [])
      .filter((n) => (type === undefined || n.type === type) && aclNames(n.config["security.acls"]).includes(name))
      .map((n) => n.name);
  }

  usedBy(project: string, name: string): string[] {
    return this.networksUsing(project, name).map((n) => apiUrl(project, "networks", n));
  }

  private view(row: NetworkAclRow): NetworkAclView {
    return { name: row.name, description: row.description, egress: row.egress, ingress: row.ingress, config: row.config, used_by: this.usedBy(row.project, row.name) };
  }

  /** LXD's ETag fields: name, description, ingress, egress, config. */
  etagOf(project: string, name: string): unknown {
    const row = this.require(this.project(project), name);
    return [row.name, row.description, row.ingress, row.egress, row.config];
  }

  list(project: string): NetworkAclView[] {
    return this.deps.repo.list(this.project(project)).map((r) => this.view(r));
  }

  names(project: string): string[] {
    return this.deps.repo.list(this.project(project)).map((r) => r.name);
  }

  get(project: string, name: string): NetworkAclView {
    return this.view(this.require(this.project(project), name));
  }

  private checked(project: string, put: Required<NetworkAclPut>): Pick<NetworkAclRow, "ingress" | "egress" | "config"> {
    const acl = { ingress: (put.ingress ?? []).map(normaliseRule), egress: (put.egress ?? []).map(normaliseRule), config: put.config ?? {} };
    try {
      validateAcl(acl, this.names(project));
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    return acl;
  }

  create(requestProject: string, req: NetworkAclPut & { name: string }): string {
    const project = this.project(requestProject);
    if (this.deps.repo.get(project, req.name)) throw new BadRequest("The network ACL already exists");
    const nameErr = aclNameError(req.name);
    if (nameErr) throw new BadRequest(nameErr);
    const acl = this.checked(project, { description: "", ingress: [], egress: [], config: {}, ...req });
    this.deps.repo.create({ project, name: req.name, description: req.description ?? "", ...acl });
    const url = apiUrl(project, "network-acls", req.name);
    this.deps.events.lifecycle("network-acl-created", url, { project });
    return url;
  }

  async update(requestProject: string, name: string, req: NetworkAclPut, mode: "put" | "patch"): Promise<void> {
    const project = this.project(requestProject);
    const cur = this.require(project, name);
    // LXD's PATCH merges only config; description and rules are replaced as sent.
    const config = mode === "patch" ? { ...cur.config, ...(req.config ?? {}) } : { ...(req.config ?? {}) };
    const acl = this.checked(project, { description: req.description ?? "", ingress: req.ingress ?? [], egress: req.egress ?? [], config });
    const next: NetworkAclRow = { project, name, description: req.description ?? "", ...acl };
    this.deps.repo.update(next);
    try {
      for (const net of this.networksUsing(project, name)) await this.deps.networks()?.refreshAcls(net);
    } catch (e) {
      this.deps.repo.update(cur);
      for (const net of this.networksUsing(project, name)) await this.deps.networks()?.refreshAcls(net).catch(() => {});
      throw new InternalError((e as Error).message);
    }
    this.deps.events.lifecycle("network-acl-updated", apiUrl(project, "network-acls", name), { project });
  }

  rename(requestProject: string, name: string, to: string): string {
    const project = this.project(requestProject);
    this.require(project, name);
    if (this.deps.repo.get(project, to)) throw new BadRequest("An ACL by that name exists already");
    if (this.networksUsing(project, name).length > 0) throw new BadRequest("Cannot rename an ACL that is in use");
    const nameErr = aclNameError(to);
    if (nameErr) throw new BadRequest(nameErr);
    this.deps.repo.rename(project, name, to);
    const url = apiUrl(project, "network-acls", to);
    this.deps.events.lifecycle("network-acl-renamed", url, { project, context: { old_name: name } });
    return url;
  }

  delete(requestProject: string, name: string): void {
    const project = this.project(requestProject);
    this.require(project, name);
    if (this.networksUsing(project, name).length > 0) throw new BadRequest("Cannot delete an ACL that is in use");
    this.deps.repo.delete(project, name);
    this.deps.events.lifecycle("network-acl-deleted", apiUrl(project, "network-acls", name), { project });
  }

  /** acl.Exists: every named ACL exists in the project, none named twice (network config checks). */
  assertExist(requestProject: string, names: string[]): void {
    const existing = this.names(requestProject);
    const seen = new Set<string>();
    for (const n of names) {
      if (!existing.includes(n)) throw new Error(`Network ACL "${n}" does not exist`);
      if (seen.has(n)) throw new Error(`Network ACL "${n}" specified multiple times`);
      seen.add(n);
    }
  }

  /** The firewall rules of a network with these config keys (security.acls and defaults). */
  firewallRules(requestProject: string, network: string, config: Record<string, string>): FirewallAclRule[] {
    const project = this.project(requestProject);
    const acls = aclNames(config["security.acls"]).map((n) => {
      const row = this.deps.repo.get(project, n);
      if (!row) throw new Error(`Failed loading ACL "${n}" for network "${network}": Network ACL not found`);
      return row;
    });
    return networkAclRules(network, acls, config);
  }
}
