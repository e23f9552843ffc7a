// Profiles: rules, records and the ProfilesPort. The `default` profile exists in every
// project that has profiles and can be neither deleted nor renamed.
import { BadRequest, Conflict, Forbidden, InternalError, NotFound } from "../shared/errors.js";
import { validateInstanceConfig } from "../instances/config-keys.js";
import type { InstancesPort, NetworksPort, ProfileRecord, ProfilesPort, ProjectsPort } from "../ports.js";
import type { Db } from "../db/database.js";
import type { EventHub } from "../operations/events.js";
import { ProfileRepo } from "../db/profile-repo.js";
import { checkDeviceValues, deviceFactory, dropEmptyDeviceValues } from "../devices/registry.js";
import { duplicateDiskPath } from "../devices/disk.js";
import { apiUrl } from "../shared/urls.js";

export interface ProfileView extends ProfileRecord {
  used_by: string[];
}

export interface ProfileInput {
  description: string;
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
}

/**
 * Validate a profile's config and devices before anything is saved; throws LXD's messages.
 * Config keys are checked against the instance key table (messages as LXD gives them for
 * profiles, without the instance's "Invalid config: " prefix); devices by shape.
 */
export function validateProfile(profile: ProfileInput): void {
  for (const [key, value] of Object.entries(profile.config)) {
    if (key === "" || typeof value !== "string") throw new BadRequest(`Invalid config key "${key}"`);
    if (key.startsWith("volatile.")) throw new BadRequest("Volatile keys can only be set on instances");
    try {
      validateInstanceConfig({ [key]: value });
    } catch (e) {
      throw new BadRequest((e as Error).message.replace(/^Invalid config: /, ""));
    }
  }
  const dup = duplicateDiskPath(profile.devices);
  if (dup) throw new BadRequest(`Device validation failed for "${dup.name}": More than one disk device uses the same path "${dup.path}"`);
  for (const [name, device] of Object.entries(profile.devices)) {
    if (name === "") throw new BadRequest("Device validation failed: Device name cannot be empty");
    if (!device.type) throw new BadRequest(`Device validation failed for "${name}": Failed loading device "${name}": Missing device type in config`);
    try {
      checkDeviceValues(device);
      deviceFactory(device);
    } catch (e) {
      throw new BadRequest(`Device validation failed for "${name}": Failed loading device "${name}": ${(e as Error).message}`);
    }
  }
}

export function validateProfileName(name: string): void {
  if (name === "") throw new BadRequest("No name provided");
  if (name.includes("/")) throw new BadRequest("Profile names may not contain slashes");
  if (name === "." || name === ".." || name.includes("\0")) throw new BadRequest(`Invalid profile name "${name}"`);
}

const profileUrl = (project: string, name: string) => apiUrl(project, "profiles", name);

/** What the profile service uses: its database, lifecycle events, and (built after it, so late-bound by the daemon) instances, projects and networks. */
export interface ProfileServiceDeps {
  db: Db;
  events: Pick<EventHub, "lifecycle">;
  instances: Pick<InstancesPort, "usedBy" | "checkProfileChange" | "applyProfileChange">;
  projects: Pick<ProjectsPort, "allowProfileUpdate">;
  /** NICs naming a managed network must name one of the profile project's network project. */
  networks: Pick<NetworksPort, "get" | "projectOf">;
}

export class ProfileService implements ProfilesPort {
  readonly repo: ProfileRepo;

  constructor(private readonly deps: ProfileServiceDeps) {
    this.repo = new ProfileRepo(deps.db);
  }

  /** The `default` profile of a project, created empty as upstream does. */
  ensureDefaultProfile(project: string): void {
    const description = project === "default" ? "Default LXD profile" : `Default LXD profile for project ${project}`;
    if (!this.repo.get(project, "default")) this.repo.insert(project, { name: "default", description, config: {}, devices: {} });
  }

  deleteProjectProfiles(project: string): void {
    if (project !== "default") this.repo.deleteProject(project);
  }

  /**
   * The project whose profiles `project` uses. A project with features.profiles=true always
   * has its own `default` profile (ensureDefaultProfile); one without profiles of its own
   * uses the default project's, as upstream does for features.profiles=false.
   */
  profileProject(project: string): string {
    return project === "default" || this.repo.hasProject(project) ? project : "default";
  }

  get(project: string, name: string): ProfileRecord {
    const p = this.repo.get(this.profileProject(project), name);
    if (!p) throw new NotFound("Profile not found");
    return p;
  }

  list(project: string): ProfileRecord[] {
    return this.repo.list(this.profileProject(project));
  }

  referencing(ref: { network?: string; pool?: string }, project = "default"): string[] {
    const matches = (d: Record<string, string>) =>
      (ref.network !== undefined && d.type === "nic" && d.network === ref.network) || (ref.pool !== undefined && d.type === "disk" && d.pool === ref.pool);
    return this.repo
      .list(project)
      .filter((p) => Object.values(p.devices).some(matches))
      .map((p) => profileUrl(project, p.name));
  }

  /** Instances of every project whose profiles are this project's (features.profiles=false ones use default's). */
  usedBy(project: string, name: string): string[] {
    const all = this.deps.instances.usedBy({ profile: name }) ?? [];
    return all.filter((url) => this.profileProject(new URL(url, "http://x").searchParams.get("project") ?? "default") === project);
  }

  view(project: string, p: ProfileRecord): ProfileView {
    return { config: p.config, description: p.description, devices: p.devices, name: p.name, used_by: this.usedBy(project, p.name) };
  }

  /** What the ETag covers, as upstream (config, description, devices). */
  etagOf(p: ProfileRecord): unknown {
    return [p.config, p.description, p.devices];
  }

  find(project: string, name: string, notFound: string): ProfileRecord {
    const p = this.repo.get(this.profileProject(project), name);
    if (!p) throw new NotFound(notFound);
    return p;
  }

  /** LXD's NICType while loading each device: `network=` must exist in the project's network project. */
  private checkNetworks(project: string, devices: Record<string, Record<string, string>>): void {
    const nets = this.deps.networks;
    for (const [name, d] of Object.entries(devices)) {
      if (d.type !== "nic" || !d.network) continue;
      try {
        nets.get(project, d.network);
      } catch (e) {
        const np = nets.projectOf(project);
        throw new BadRequest(`Device validation failed for "${name}": Failed loading device "${name}": Failed to load network "${d.network}" for project "${np}": ${(e as Error).message}`);
      }
    }
  }

  create(requestProject: string, req: ProfileInput & { name: string }): void {
    const project = this.profileProject(requestProject);
    validateProfileName(req.name);
    const profile = { name: req.name, description: req.description, config: dropEmpty(req.config), devices: dropEmptyDeviceValues(req.devices) };
    validateProfile(profile);
    this.checkNetworks(project, profile.devices);
    if (this.repo.get(project, req.name)) throw new InternalError(`Error inserting "${req.name}" into database: The profile already exists`);
    this.deps.projects.allowProfileUpdate(project, profile, true);
    this.repo.insert(project, profile);
    this.deps.events.lifecycle("profile-created", profileUrl(project, req.name), { project });
  }

  /** PUT replaces everything; PATCH merges config keys and whole devices, keeps an empty description. */
  async update(requestProject: string, current: ProfileRecord, req: Partial<ProfileInput>, mode: "replace" | "merge"): Promise<void> {
    const project = this.profileProject(requestProject);
    const next: ProfileRecord =
      mode === "replace"
        ? { name: current.name, description: req.description ?? "", config: dropEmpty(req.config ?? {}), devices: dropEmptyDeviceValues(req.devices ?? {}) }
        : {
            name: current.name,
            description: req.description || current.description,
            config: dropEmpty({ ...current.config, ...(req.config ?? {}) }),
            devices: dropEmptyDeviceValues({ ...current.devices, ...(req.devices ?? {}) }),
          };
    this.deps.projects.allowProfileUpdate(project, next);
    validateProfile(next);
    this.checkNetworks(project, next.devices);
    const instances = this.deps.instances;
    instances.checkProfileChange(project, current, next);
    this.repo.update(project, next);
    this.deps.events.lifecycle("profile-updated", profileUrl(project, current.name), { project });
    // As LXD: the instances using it take the change now; their failures are reported, the
    // profile stays saved.
    await instances.applyProfileChange(project, current);
  }

  rename(requestProject: string, name: string, to: string): void {
    const project = this.profileProject(requestProject);
    if (name === "default") throw new Forbidden(`The "default" profile cannot be renamed`);
    validateProfileName(to);
    this.find(project, name, "Profile not found");
    if (this.repo.get(project, to)) throw new InternalError(`Name "${to}" already in use`);
    // Instances refer to profiles by name; renaming one under them would orphan the reference.
    if (this.usedBy(project, name).length > 0) throw new Conflict(`Profile "${name}" is currently in use`);
    this.repo.rename(project, name, to);
    this.deps.events.lifecycle("profile-renamed", profileUrl(project, to), { project, context: { old_name: name } });
  }

  delete(requestProject: string, name: string): void {
    const project = this.profileProject(requestProject);
    if (name === "default") throw new Forbidden(`The "default" profile cannot be deleted`);
    this.find(project, name, "Profile not found");
    if (this.usedBy(project, name).length > 0) throw new BadRequest("Profile is currently in use");
    this.repo.delete(project, name);
    this.deps.events.lifecycle("profile-deleted", profileUrl(project, name), { project });
  }
}

function dropEmpty(config: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).filter(([, v]) => v !== ""));
}
