// Cluster groups (/1.0/cluster/groups, `lxc cluster group ...`), as LXD 5.0.2: named sets of
// members used for placement (`--target @group`). A group's name and description are kept in
// etcd (groups/<name>); membership is each member record's `groups` list, so a member's groups
// and a group's members can never disagree. The "default" group always exists (every member
// starts in it) and cannot be deleted; a member always belongs to at least one group. Writes run
// under the cluster write lock (router.ts), as every mutating request.
import { BadRequest, Conflict, Forbidden, InternalError, NotFound } from "../shared/errors.js";
import type { EventHub } from "../operations/events.js";
import type { ClusterStore, GroupRecord, MemberRecord } from "./store.js";

/** What groups need of the cluster service. */
export interface GroupsHost {
  clustered(): boolean;
  requireStore(): ClusterStore;
}

export interface GroupView {
  name: string;
  description: string;
  members: string[];
}

export const DEFAULT_GROUP = "default";

/** LXD's clusterGroupValidateName. */
export function validateGroupName(name: string): void {
  if (name === "") throw new BadRequest("No name provided");
  if (name.includes("/")) throw new BadRequest("Cluster group names may not contain slashes");
  if (name.includes(" ")) throw new BadRequest("Cluster group names may not contain spaces");
  if (name.includes("_")) throw new BadRequest("Cluster group names may not contain underscores");
  if (name.includes("'") || name.includes('"')) throw new BadRequest("Cluster group names may not contain quotes");
  if (name === "*") throw new BadRequest("Reserved cluster group name");
  if (name === "." || name === "..") throw new BadRequest(`Invalid cluster group name "${name}"`);
  // Beyond upstream's checks: a name becomes an etcd key and a URL path segment.
  if (!/^[\p{L}\p{N}.@:+=-]{1,63}$/u.test(name)) throw new BadRequest(`Invalid cluster group name "${name}"`);
}

export class ClusterGroups {
  constructor(
    private readonly cluster: GroupsHost,
    private readonly events: EventHub,
  ) {}

  private store() {
    if (!this.cluster.clustered()) throw new BadRequest("This server is not clustered");
    return this.cluster.requireStore();
  }

  private async records(): Promise<{ groups: GroupRecord[]; members: MemberRecord[] }> {
    const store = this.store();
    const [groups, members] = await Promise.all([store.groups(), store.members()]);
    if (!groups.some((g) => g.name === DEFAULT_GROUP)) groups.push({ name: DEFAULT_GROUP, description: "Default cluster group" });
    return { groups: groups.sort((a, b) => a.name.localeCompare(b.name)), members };
  }

  private view(g: GroupRecord, members: MemberRecord[]): GroupView {
    return { name: g.name, description: g.description, members: members.filter((m) => (m.groups ?? []).includes(g.name)).map((m) => m.name) };
  }

  async list(): Promise<GroupView[]> {
    const { groups, members } = await this.records();
    return groups.map((g) => this.view(g, members));
  }

  async get(name: string): Promise<GroupView> {
    const { groups, members } = await this.records();
    const g = groups.find((x) => x.name === name);
    if (!g) throw new NotFound("Cluster group not found");
    return this.view(g, members);
  }

  /** Members of a group, for `--target @group` (NotFound when there is no such group). */
  async membersOf(name: string): Promise<string[]> {
    return (await this.get(name)).members;
  }

  async create(name: string, description: string, members: string[]): Promise<void> {
    validateGroupName(name);
    const store = this.store();
    const all = await store.members();
    for (const m of members) if (!all.some((r) => r.name === m)) throw new NotFound("Cluster member not found");
    if (name === DEFAULT_GROUP || !(await store.addGroup({ name, description }))) throw new Conflict(`This "cluster_groups" entry already exists`);
    for (const m of all.filter((r) => members.includes(r.name))) await store.putMember({ ...m, groups: [...new Set([...(m.groups ?? []), name])] });
    this.events.lifecycle("cluster-group-created", `/1.0/cluster/groups/${name}`);
  }

  /**
   * PUT (strict = false: a member that would be left in no group silently stays) or PATCH
   * (strict: that is an error), as upstream's two handlers.
   */
  async update(name: string, patch: { description?: string; members?: string[] }, strict: boolean): Promise<void> {
    const store = this.store();
    const current = await this.get(name);
    if (patch.description !== undefined) await store.putGroup({ name, description: patch.description });
    if (patch.members !== undefined) {
      const wanted = new Set(patch.members);
      const all = await store.members();
      for (const m of wanted) if (!all.some((r) => r.name === m)) throw new NotFound("Cluster member not found");
      for (const m of all) {
        const groups = m.groups ?? [];
        const inGroup = groups.includes(name);
        if (inGroup && !wanted.has(m.name)) {
          if (groups.length <= 1) {
            if (strict) throw new BadRequest(`Cannot remove ${m.name} from group as member needs to belong to at least one group`);
            continue;
          }
          await store.putMember({ ...m, groups: groups.filter((g) => g !== name) });
        } else if (!inGroup && wanted.has(m.name)) {
          await store.putMember({ ...m, groups: [...groups, name] });
        }
      }
    }
    this.events.lifecycle("cluster-group-updated", `/1.0/cluster/groups/${name}`, {
      context: { description: patch.description ?? current.description, members: patch.members ?? current.members },
    });
  }

  async rename(name: string, to: string): Promise<void> {
    validateGroupName(to);
    const store = this.store();
    const g = await this.get(name);
    if (name === DEFAULT_GROUP) throw new Forbidden("The 'default' cluster group cannot be renamed");
    const { groups } = await this.records();
    if (groups.some((x) => x.name === to)) throw new InternalError(`Name "${to}" already in use`);
    if (!(await store.addGroup({ name: to, description: g.description }))) throw new InternalError(`Name "${to}" already in use`);
    for (const m of await store.members()) {
      if ((m.groups ?? []).includes(name)) await store.putMember({ ...m, groups: m.groups.map((x) => (x === name ? to : x)) });
    }
    await store.deleteGroup(name);
    this.events.lifecycle("cluster-group-renamed", `/1.0/cluster/groups/${to}`, { context: { old_name: name } });
  }

  async delete(name: string): Promise<void> {
    if (name === DEFAULT_GROUP) throw new Forbidden("The 'default' cluster group cannot be deleted");
    const g = await this.get(name);
    if (g.members.length > 0) throw new InternalError("Only empty cluster groups can be removed");
    await this.store().deleteGroup(name);
    this.events.lifecycle("cluster-group-deleted", `/1.0/cluster/groups/${name}`);
  }

  /** PUT/PATCH of a member's `groups`: every group must exist, and a member keeps at least one. */
  async checkMemberGroups(groups: string[]): Promise<void> {
    if (groups.length === 0) throw new BadRequest("Cluster member has to belong to at least one group");
    const known = new Set((await this.records()).groups.map((g) => g.name));
    for (const g of groups) if (!known.has(g)) throw new NotFound("Cluster group not found");
  }
}
