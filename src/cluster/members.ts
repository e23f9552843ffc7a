// The cluster's members (/1.0/cluster/members): the list with each member's status from its
// heartbeats, where a member is, placement of new instances, edits, renames, removal, and
// marking a member evacuated.
import type { Db } from "../db/database.js";
import { BadRequest, Conflict, Forbidden, InternalError, NotFound } from "../shared/errors.js";
import type { MemberTls } from "./forward.js";
import type { ClusterStore, MemberRecord } from "./store.js";

/** A project's placement rules for a client (LXD's CheckClusterTargetRestriction and restricted.cluster.groups). */
export interface PlacementRules {
  /** The project is restricted. */
  restricted: boolean;
  /** A restricted client may not name a target (restricted.cluster.target=block). */
  targetBlocked: boolean;
  /** restricted.cluster.groups, as a list. */
  groupsAllowed: string[];
}

export interface MemberView {
  server_name: string;
  url: string;
  database: boolean;
  status: string;
  message: string;
  architecture: string;
  failure_domain: string;
  description: string;
  config: Record<string, string>;
  groups: string[];
  roles: string[];
}

/** What the member list needs of the cluster service. */
export interface MembersHost {
  /** This member's name. */
  name(): string;
  requireStore(): ClusterStore;
  tls(): MemberTls;
  /** The member holding the etcd election, if known. */
  leader(): string | undefined;
  offlineThreshold(): number;
  /** This member was renamed: it goes by `to` from now on. */
  renamedSelf(to: string): Promise<void>;
}

export interface MembersDeps {
  db: Db;
  architecture: string;
  /** The members of a cluster group (placement with `--target @group`). */
  groupMembers(group: string): Promise<string[]>;
}

export const MEMBER_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}$/;

export class ClusterMembers {
  constructor(
    private readonly cluster: MembersHost,
    private readonly d: MembersDeps,
  ) {}

  async list(): Promise<MemberView[]> {
    const store = this.cluster.requireStore();
    const [records, beats] = await Promise.all([store.members(), store.heartbeats()]);
    return records.map((m) => this.view(m, beats.get(m.name)));
  }

  async get(name: string): Promise<MemberView> {
    const store = this.cluster.requireStore();
    const m = await store.member(name);
    if (!m) throw new NotFound("Member not found");
    return this.view(m, (await store.heartbeats()).get(name));
  }

  private view(m: MemberRecord, beat: number | undefined): MemberView {
    const threshold = this.cluster.offlineThreshold();
    const age = beat === undefined ? Infinity : (Date.now() - beat) / 1000;
    let status = "Online";
    let message = "Fully operational";
    if (m.state === "evacuated") {
      status = "Evacuated";
      message = "Unavailable due to maintenance";
    } else if (age > threshold) {
      status = "Offline";
      message = beat === undefined ? "No heartbeat" : `No heartbeat for ${Math.round(age)}s (${new Date(beat).toISOString()})`;
    }
    return {
      server_name: m.name,
      url: m.url,
      database: m.roles.includes("database"),
      status,
      message,
      architecture: this.d.architecture,
      failure_domain: m.failure_domain,
      description: m.description,
      config: m.config,
      groups: m.groups,
      roles: this.cluster.leader() === m.name && status === "Online" ? [...m.roles, "database-leader"] : m.roles,
    };
  }

  /** Every member's name, sorted. */
  async names(): Promise<string[]> {
    return (await this.cluster.requireStore().members()).map((m) => m.name).sort();
  }

  /** The other members that are reachable (online, or evacuated: still up). */
  async othersOnline(): Promise<MemberView[]> {
    return (await this.list()).filter((m) => m.status !== "Offline" && m.server_name !== this.cluster.name());
  }

  /** The url member `name` is reached at. */
  async url(name: string): Promise<string> {
    const m = await this.cluster.requireStore().member(name);
    if (!m) throw new NotFound("Member not found");
    return m.url;
  }

  /**
   * Where a new instance goes (LXD 5.0.2's instancesPost): `target` as asked (a member, `@group`
   * or none) within the project's rules. A restricted client of a project whose
   * `restricted.cluster.target` blocks targeting cannot name one; a restricted project's
   * `restricted.cluster.groups` bounds the members and groups it may name; an untargeted create
   * goes to the best member of the allowed groups (of any member when there is no list).
   */
  async place(target: string | null, rules: PlacementRules): Promise<string> {
    if (target && rules.targetBlocked) throw new InternalError("This project doesn't allow cluster member targeting");
    const bounded = rules.restricted && rules.groupsAllowed.length > 0;
    if (target?.startsWith("@")) {
      const group = target.slice(1);
      if (bounded && !rules.groupsAllowed.includes(group)) throw new Forbidden("Project isn't allowed to use this cluster group");
      return this.schedule(group);
    }
    if (target) {
      const member = (await this.list()).find((m) => m.server_name === target);
      if (!member) throw new NotFound("Cluster member not found");
      if (bounded && !member.groups.some((g) => rules.groupsAllowed.includes(g))) throw new Forbidden("Project isn't allowed to use this cluster member");
      return target;
    }
    return this.schedule(undefined, rules.groupsAllowed);
  }

  /**
   * The online, not evacuated member with the fewest instances (LXD 5.0.2's default placement),
   * among the members of cluster group `group` when given (`--target @group`), and of the
   * groups `allowedGroups` when that is not empty.
   */
  async schedule(group?: string, allowedGroups: string[] = []): Promise<string> {
    const among = group === undefined ? undefined : new Set(await this.d.groupMembers(group));
    const allowed = (m: MemberView) => allowedGroups.length === 0 || m.groups.some((g) => allowedGroups.includes(g));
    const candidates = (await this.list()).filter((m) => m.status === "Online" && (!among || among.has(m.server_name)) && allowed(m)).map((m) => m.server_name);
    if (candidates.length === 0) throw new BadRequest("No suitable cluster member could be found");
    const counts = new Map((this.d.db.prepare("SELECT node, COUNT(*) AS n FROM instances GROUP BY node").all() as { node: string; n: number }[]).map((r) => [r.node, r.n]));
    return candidates.sort((a, b) => (counts.get(a) ?? 0) - (counts.get(b) ?? 0) || a.localeCompare(b))[0];
  }

  async update(name: string, patch: { description?: string; failure_domain?: string; roles?: string[]; config?: Record<string, string>; groups?: string[] }): Promise<void> {
    const store = this.cluster.requireStore();
    const m = await store.member(name);
    if (!m) throw new NotFound("Member not found");
    if (patch.roles !== undefined) patch = { ...patch, roles: editedRoles(m.roles, patch.roles) };
    await store.putMember({ ...m, ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) });
  }

  async rename(from: string, to: string): Promise<void> {
    const store = this.cluster.requireStore();
    if (!MEMBER_NAME_RE.test(to)) throw new BadRequest("Invalid server name");
    const m = await store.member(from);
    if (!m) throw new NotFound("Member not found");
    if (!(await store.renameMember(from, { ...m, name: to }))) throw new Conflict(`The cluster already has a member with name: ${to}`);
    const db = this.d.db;
    db.prepare("UPDATE instances SET node = ? WHERE node = ?").run(to, from);
    // Its pools' and networks' member rows and its custom volumes follow (LXD keys them by member id).
    for (const t of ["storage_pools_members", "networks_members"]) db.prepare(`UPDATE ${t} SET member = ? WHERE member = ?`).run(to, from);
    db.prepare("UPDATE storage_volumes SET node = ? WHERE node = ?").run(to, from);
    if (from === this.cluster.name()) await this.cluster.renamedSelf(to);
  }

  async remove(name: string, force: boolean): Promise<void> {
    const store = this.cluster.requireStore();
    if (!(await store.member(name))) throw new NotFound("Member not found");
    if (name === this.cluster.name() && !force) throw new BadRequest("A member cannot remove itself without --force (use another member)");
    const db = this.d.db;
    const count = (db.prepare("SELECT COUNT(*) AS n FROM instances WHERE node = ?").get(name) as { n: number }).n;
    if (count > 0 && !force) throw new BadRequest(`Node still has the following instances: ${count}`);
    if (!force) {
      const custom = db.prepare("SELECT name FROM storage_volumes WHERE node = ? AND type = 'custom' AND instr(name, '/') = 0 ORDER BY name").all(name) as { name: string }[];
      if (custom.length > 0) throw new BadRequest(`Node still has the following custom volumes: ${custom.map((v) => v.name).join(", ")}`);
    }
    if (force) db.prepare("DELETE FROM instances WHERE node = ?").run(name);
    // Its volumes on pools that are not shared go with it (LXD's rows are keyed by its node id).
    db.prepare("DELETE FROM storage_volumes WHERE node = ?").run(name);
    // The member's own rows of pools and networks go with it (pools and networks stay for the others).
    for (const t of ["storage_pools_members", "networks_members"]) db.prepare(`DELETE FROM ${t} WHERE member = ?`).run(name);
    await store.removeMember(name);
    await store.client.delete().key(`/nodelxd/status/${name}`);
  }

  /** Mark a member evacuated (Evacuated status, left out by the scheduler) or not; the instances are evacuation's (migration/evacuation.ts). */
  async markEvacuated(name: string, evacuated: boolean): Promise<void> {
    const store = this.cluster.requireStore();
    const m = await store.member(name);
    if (!m) throw new NotFound("Member not found");
    await store.putMember({ ...m, state: evacuated ? "evacuated" : "" });
  }
}

/** Roles a client may add or drop (clustering_edit_roles); the database roles follow the member's place in etcd. */
const EDITABLE_ROLES = new Set(["event-hub", "ovn-chassis"]);
const AUTOMATIC_ROLES = new Set(["database-leader", "database-standby"]);

/** A member's roles after a PUT of `wanted` (LXD's checks on the "database" role). */
export function editedRoles(current: string[], wanted: string[]): string[] {
  const has = current.includes("database");
  if (has && !wanted.includes("database")) throw new BadRequest(`The "database" role cannot be dropped at this time`);
  if (!has && wanted.includes("database")) throw new BadRequest(`The "database" role cannot be added at this time`);
  const out = has ? ["database"] : [];
  for (const r of wanted) {
    if (r === "database" || AUTOMATIC_ROLES.has(r)) continue;
    if (!EDITABLE_ROLES.has(r)) throw new BadRequest(`Invalid cluster role "${r}"`);
    if (!out.includes(r)) out.push(r);
  }
  return out;
}
