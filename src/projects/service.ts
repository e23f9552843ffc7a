// Projects: the rules and the database, and the ProjectsPort (which project's images,
// profiles, volumes and networks a project uses, from its features.* keys).
import { BadRequest, Conflict, Forbidden, InternalError, NotFound } from "../shared/errors.js";
import type { InstanceDraft, NetworksPort, ProfilesPort, ProjectsPort } from "../ports.js";
import type { Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import { ProjectRepo, type ProjectRow } from "../db/project-repo.js";
import { InstanceRepo } from "../db/instance-repo.js";
import { ProfileRepo } from "../db/profile-repo.js";
import { expand } from "../instances/names.js";
import { parseByteSize } from "../shared/units.js";
import { contains, parseCidr, formatCidr, networkOf, type IpNet } from "../network/ipnet.js";
import { checkRestrictedDiskPath, checkVolatileConfig, networkAllowed, projectHasRestriction, validateProjectConfig, type CheckedInstance, type ProjectInfo } from "./restrictions.js";
import { checkInstanceCounts, checkProjectUpdate, checkRestrictionsAndLimits, currentAllocations, hasLimitsOrRestrictions, totals } from "./limits.js";
import { apiUrl } from "../shared/urls.js";


export interface ProjectView {
  config: Record<string, string>;
  description: string;
  name: string;
  used_by: string[];
}

const FEATURES = ["features.images", "features.profiles", "features.storage.volumes", "features.networks"];
/** Features a new project gets unless its config says otherwise (upstream's ProjectFeaturesDefaults). */
const DEFAULT_FEATURES = ["features.images", "features.profiles", "features.storage.volumes"];

export function validateProjectName(name: string): void {
  if (name === "") throw new BadRequest("No name provided");
  if (name.includes("/")) throw new BadRequest("Project names may not contain slashes");
  if (name.includes(" ")) throw new BadRequest("Project names may not contain spaces");
  if (name.includes("_")) throw new BadRequest("Project names may not contain underscores");
  if (name.includes("'") || name.includes('"')) throw new BadRequest("Project names may not contain quotes");
  if (name === "*") throw new BadRequest("Reserved project name");
  if (name === "." || name === ".." || /[\0\n]/.test(name)) throw new BadRequest(`Invalid project name "${name}"`);
}

const isTrue = (v: string | undefined) => ["true", "yes", "on", "1"].includes((v ?? "").toLowerCase());

/** What the project service uses: its database, lifecycle events, the trust store, the profiles of a project, and (built after it, so late-bound by the daemon) networks. */
export interface ProjectServiceDeps {
  db: Db;
  events: Pick<EventHub, "lifecycle">;
  /** Restricted certificates name projects: a rename reloads them. */
  trust: { reload(): void };
  profiles: Required<Pick<ProfilesPort, "ensureDefaultProfile" | "deleteProjectProfiles">>;
  networks: Pick<NetworksPort, "get">;
}

export class ProjectService implements ProjectsPort {
  readonly repo: ProjectRepo;

  private readonly instances: InstanceRepo;
  private readonly profileRows: ProfileRepo;

  constructor(private readonly deps: ProjectServiceDeps) {
    this.repo = new ProjectRepo(deps.db);
    this.instances = new InstanceRepo(deps.db);
    this.profileRows = new ProfileRepo(deps.db);
  }

  require(name: string): ProjectRow {
    const p = this.repo.get(name);
    if (!p) throw new NotFound("Project not found");
    return p;
  }

  effectiveProject(project: string, feature: "images" | "profiles" | "storage.volumes" | "networks"): string {
    const p = this.repo.get(project);
    if (!p || project === "default") return project;
    return isTrue(p.config[`features.${feature}`]) ? project : "default";
  }

  projectConfig(project: string): Record<string, string> | undefined {
    return this.repo.get(project)?.config;
  }

  usedBy(name: string): string[] {
    const c = this.repo.contents(name);
    return [
      ...c.instances.map((n) => apiUrl(name, "instances", n)),
      ...c.profiles.map((n) => apiUrl(name, "profiles", n)),
      ...c.images.map((n) => apiUrl(name, "images", n)),
      ...c.volumes.map((v) => apiUrl(name, "storage-pools", v.pool, "volumes", "custom", v.name)),
      ...c.networks.map((n) => apiUrl(name, "networks", n)),
      ...c.acls.map((n) => apiUrl(name, "network-acls", n)),
    ];
  }

  view(p: ProjectRow): ProjectView {
    return { config: p.config, description: p.description, name: p.name, used_by: this.usedBy(p.name) };
  }

  /** Empty as upstream counts it: nothing but the project's own `default` profile. */
  private isEmpty(name: string): boolean {
    const c = this.repo.contents(name);
    return c.instances.length === 0 && c.images.length === 0 && c.volumes.length === 0 && c.networks.length === 0 && c.acls.length === 0 && c.profiles.every((p) => p === "default");
  }

  /** projectValidateConfig, as a 400. */
  private validateConfig(config: Record<string, string>): void {
    try {
      validateProjectConfig(config, (v) => this.validateSubnets(v));
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
  }

  /** restricted.networks.subnets: "<uplink>:<subnet>" items, each within one of the uplink's routes. */
  private validateSubnets(value: string): void {
    for (const raw of value.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
      const i = raw.indexOf(":");
      if (i < 0) throw new Error(`Subnet "${raw}" invalid, must be in the format of "<uplink network>:<subnet>"`);
      const [uplink, subnet] = [raw.slice(0, i), raw.slice(i + 1)];
      const net = parseCidr(subnet);
      if (!net) throw new Error(`invalid CIDR address: ${subnet}`);
      if (formatCidr(networkOf(net)) !== formatCidr(net)) throw new Error(`Not an IP network address "${subnet}"`);
      let config: Record<string, string>;
      try {
        config = this.deps.networks.get("default", uplink).config;
      } catch (e) {
        throw new Error(`Invalid uplink network "${uplink}": ${(e as Error).message}`);
      }
      const routes: IpNet[] = [];
      for (const k of ["ipv4.routes", "ipv6.routes"]) {
        for (const r of (config[k] ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")) {
          const n = parseCidr(r);
          if (n) routes.push(networkOf(n));
        }
      }
      const inside = routes.some((r) => r.family === net.family && r.prefix <= net.prefix && contains(r, net.family, net.ip));
      if (!inside) throw new Error(`Uplink network "${uplink}" doesn't contain "${formatCidr(net)}" in its routes`);
    }
  }

  // ---- restrictions and limits (lxd/project/permissions.go) ----

  /** The project whose profiles `project` uses. */
  private profileProject(p: ProjectRow): string {
    return p.name === "default" || isTrue(p.config["features.profiles"]) ? p.name : "default";
  }

  /** The project with its profiles, instances (expanded through the profiles) and custom volumes. */
  private info(
    p: ProjectRow,
    change?: { instance?: InstanceDraft; profile?: { name: string; config: Record<string, string>; devices: Record<string, Record<string, string>> }; volume?: { name: string; config: Record<string, string> } },
  ): ProjectInfo {
    const profiles = this.profileRows.list(this.profileProject(p)).map((r) => ({ name: r.name, config: r.config, devices: r.devices }));
    if (change?.profile) {
      const i = profiles.findIndex((x) => x.name === change.profile!.name);
      if (i >= 0) profiles[i] = change.profile;
      else profiles.push(change.profile);
    }
    const byName = new Map(profiles.map((x) => [x.name, x]));
    const drafts: InstanceDraft[] = this.instances.list(p.name).map((r) => ({ name: r.name, type: r.type, config: r.config, devices: r.devices, profiles: r.profiles }));
    if (change?.instance) {
      const i = drafts.findIndex((d) => d.name === change.instance!.name);
      if (i >= 0) drafts[i] = change.instance;
      else drafts.push(change.instance);
    }
    const instances: CheckedInstance[] = drafts.map((d) => {
      const layers = d.profiles.map((n) => byName.get(n)).filter((x) => x !== undefined);
      return { name: d.name, type: d.type, config: expand([...layers.map((l) => l.config), d.config]), devices: expand([...layers.map((l) => l.devices), d.devices]) };
    });
    const volumes = (this.deps.db.prepare("SELECT name, config FROM storage_volumes WHERE project = ? AND type = 'custom' ORDER BY name").all(p.name) as { name: string; config: string }[]).map((v) => ({
      name: v.name,
      config: JSON.parse(v.config) as Record<string, string>,
    }));
    if (change?.volume) {
      const i = volumes.findIndex((v) => v.name === change.volume!.name);
      if (i >= 0) volumes[i] = change.volume;
      else volumes.push(change.volume);
    }
    return { name: p.name, config: p.config, instances, profiles, volumes };
  }

  /** AllowInstanceCreation: limits and restrictions with the new instance added. `strip` drops volatile keys (copies). */
  allowInstanceCreation(project: string, draft: InstanceDraft, strip: boolean): void {
    const p = this.require(project);
    if (!hasLimitsOrRestrictions(p.config)) return;
    const info = this.info(p);
    checkInstanceCounts(info, draft.type);
    checkVolatileConfig(p, draft.type, draft.name, draft.config, {}, strip);
    try {
      checkRestrictionsAndLimits(this.info(p, { instance: draft }));
    } catch (e) {
      throw new Error(`Failed checking if instance creation allowed: ${(e as Error).message}`);
    }
  }

  /** AllowInstanceUpdate: the instance replaced by its new config, devices and profiles. */
  allowInstanceUpdate(project: string, draft: InstanceDraft, currentConfig: Record<string, string>): void {
    const p = this.require(project);
    if (!hasLimitsOrRestrictions(p.config)) return;
    checkVolatileConfig(p, draft.type, draft.name, draft.config, currentConfig, false);
    try {
      checkRestrictionsAndLimits(this.info(p, { instance: draft }));
    } catch (e) {
      throw new Error(`Failed checking if instance update allowed: ${(e as Error).message}`);
    }
  }

  /** AllowProfileUpdate (also run on profile creation, which LXD leaves unchecked). */
  allowProfileUpdate(project: string, profile: { name: string; config: Record<string, string>; devices: Record<string, Record<string, string>> }, creating = false): void {
    const p = this.require(project);
    if (!hasLimitsOrRestrictions(p.config)) return;
    try {
      checkRestrictionsAndLimits(this.info(p, { profile }));
    } catch (e) {
      throw new Error(`Failed checking if profile ${creating ? "creation" : "update"} allowed: ${(e as Error).message}`);
    }
  }

  /** AllowVolumeCreation / AllowVolumeUpdate: only limits.disk concerns custom volumes. */
  allowVolumeCreation(project: string, volume: string, config: Record<string, string>, updating = false): void {
    const p = this.repo.get(project);
    if (!p || !hasLimitsOrRestrictions(p.config) || !p.config["limits.disk"]) return;
    try {
      checkRestrictionsAndLimits(this.info(p, { volume: { name: volume, config } }));
    } catch (e) {
      throw new Error(`Failed checking if volume ${updating ? "update" : "creation"} allowed: ${(e as Error).message}`);
    }
  }

  allowVolumeUpdate(project: string, volume: string, config: Record<string, string>): void {
    this.allowVolumeCreation(project, volume, config, true);
  }

  imageSpaceBudget(project: string): number {
    const p = this.repo.get(project);
    if (!p || !hasLimitsOrRestrictions(p.config)) return -1;
    if (["false", "no", "off", "0"].includes((p.config["features.images"] ?? "").toLowerCase())) return -1;
    const quota = p.config["limits.disk"];
    if (!quota) return -1;
    const used = totals(this.info(p), ["limits.disk"], false)["limits.disk"];
    const max = parseByteSize(quota);
    return used < max ? max - used : 0;
  }

  allowSnapshotCreation(project: string): void {
    const p = this.require(project);
    if (projectHasRestriction(p.config, "restricted.snapshots", "block")) throw new Error(`Project "${project}" doesn't allow for snapshot creation`);
  }

  allowBackupCreation(project: string): void {
    const p = this.require(project);
    if (projectHasRestriction(p.config, "restricted.backups", "block")) throw new Error(`Project "${project}" doesn't allow for backup creation`);
  }

  /** NetworkAllowed for the request project. */
  networkAllowed(project: string, network: string, managed: boolean): boolean {
    const p = this.repo.get(project);
    return p ? networkAllowed(p.config, network, managed) : true;
  }

  /**
   * A disk device's host source in a restricted project with restricted.devices.disk.paths:
   * LXD's refusal messages; undefined when no path restriction applies, else the allowed parent.
   */
  restrictedDiskParent(project: string, device: string, config: Record<string, string>): string | undefined {
    const p = this.repo.get(project);
    if (!p || project === "default" || !isTrue(p.config.restricted) || !p.config["restricted.devices.disk.paths"]) return undefined;
    const [allowed, parent] = checkRestrictedDiskPath(p.config, config.source ?? "");
    if (!allowed) throw new Error(`Disk source path "${config.source ?? ""}" not allowed by project for disk "${device}"`);
    if (isTrue(config.shift)) throw new Error(`The "shift" property cannot be used with a restricted source path`);
    return parent;
  }

  /** GET /1.0/projects/{name}/state */
  state(name: string): { resources: Record<string, { Limit: number; Usage: number }> } {
    const p = this.require(name);
    const networks = (this.deps.db.prepare("SELECT count(*) AS n FROM networks WHERE project = ?").get(name) as { n: number }).n;
    const alloc = currentAllocations(this.info(p), networks);
    const resources: Record<string, { Limit: number; Usage: number }> = {};
    for (const key of Object.keys(alloc).sort()) resources[key] = { Limit: alloc[key].limit, Usage: alloc[key].usage };
    return { resources };
  }

  /** POST /1.0/projects/{name}: rename an empty project (the body of the "Renaming project" operation). */
  rename(name: string, to: string): void {
    this.deps.db.transaction(() => {
      if (this.repo.get(to)) throw new Error(`A project named "${to}" already exists`);
      if (!this.repo.get(name)) throw new Error(`Failed loading project "${name}": Project not found`);
      if (!this.isEmpty(name)) throw new Error("Only empty projects can be renamed");
      validateProjectName(to);
      this.repo.rename(name, to);
    })();
    // Restricted certificates name their projects; the rename rewrote them in the database.
    this.deps.trust.reload();
    this.deps.events.lifecycle("project-renamed", `/1.0/projects/${to}`, { project: to, context: { old_name: name } });
  }

  create(req: { name: string; description: string; config: Record<string, string> }): void {
    validateProjectName(req.name);
    const config = Object.fromEntries(Object.entries(req.config).filter(([, v]) => v !== ""));
    this.validateConfig(config);
    for (const f of DEFAULT_FEATURES) if (!(f in config)) config[f] = "true";
    if (this.repo.get(req.name)) throw new Conflict(`Failed creating project "${req.name}": Failed adding database record: This "projects" entry already exists`);
    this.deps.db.transaction(() => {
      this.repo.insert({ name: req.name, description: req.description, config });
      if (isTrue(config["features.profiles"])) this.deps.profiles.ensureDefaultProfile(req.name);
    })();
    this.deps.events.lifecycle("project-created", `/1.0/projects/${req.name}`);
  }

  update(name: string, req: { description?: string; config?: Record<string, string> }, mode: "put" | "patch"): void {
    const cur = this.require(name);
    const config = mode === "put" ? { ...(req.config ?? {}) } : { ...cur.config, ...(req.config ?? {}) };
    // Empty values are not stored (LXD skips them), so `lxc project unset` removes the key and
    // its default applies again: the checks below see the config as it will be stored.
    for (const k of Object.keys(config)) if (config[k] === "") delete config[k];
    const changed = FEATURES.filter((f) => isTrue(cur.config[f]) !== isTrue(config[f]));
    if (changed.length > 0) {
      if (name === "default") throw new BadRequest("You can't change the features of the default project");
      if (!this.isEmpty(name)) {
        for (const f of changed) {
          if (isTrue(cur.config[f])) throw new BadRequest(`Project feature "${f}" cannot be disabled on non-empty projects`);
          if (["false", "no", "off", "0"].includes((cur.config[f] ?? "").toLowerCase())) throw new BadRequest(`Project feature "${f}" cannot be enabled on non-empty projects`);
        }
      }
    }
    this.validateConfig(config);
    // Every key whose value changes (AllowProjectUpdate re-checks restrictions and limits for them).
    const keys = new Set([...Object.keys(cur.config), ...Object.keys(config)]);
    const configChanged = [...keys].filter((k) => cur.config[k] !== config[k]).sort();
    checkProjectUpdate(this.info(cur), config, configChanged);
    const description = req.description ?? (mode === "patch" ? cur.description : "");
    this.deps.db.transaction(() => {
      this.repo.update({ name, description, config });
      if (changed.includes("features.profiles")) {
        if (isTrue(config["features.profiles"])) this.deps.profiles.ensureDefaultProfile(name);
        else this.deps.profiles.deleteProjectProfiles(name);
      }
    })();
    this.deps.events.lifecycle("project-updated", `/1.0/projects/${name}`);
  }

  delete(name: string): void {
    if (name === "default") throw new Forbidden("The 'default' project cannot be deleted");
    this.require(name);
    if (!this.isEmpty(name)) throw new InternalError("Only empty projects can be removed");
    this.deps.db.transaction(() => {
      this.deps.profiles.deleteProjectProfiles(name);
      this.repo.delete(name);
    })();
    this.deps.events.lifecycle("project-deleted", `/1.0/projects/${name}`);
  }

}
