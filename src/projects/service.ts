// Projects: the rules and the database, and the ProjectsPort (which project's images,
// profiles, volumes and networks a project uses, from its features.* keys).
import { BadRequest, Conflict, Forbidden, InternalError, NotFound } from "../api/errors.js";
import type { Core } from "../daemon/daemon.js";
import type { ProjectsPort } from "../daemon/ports.js";
import { ProjectRepo, type ProjectRow } from "../db/project-repo.js";

export interface ProjectView {
  config: Record<string, string>;
  description: string;
  name: string;
  used_by: string[];
}

const FEATURES = ["features.images", "features.profiles", "features.storage.volumes", "features.networks"];
/** Features a new project gets unless its config says otherwise (upstream's ProjectFeaturesDefaults). */
const DEFAULT_FEATURES = ["features.images", "features.profiles", "features.storage.volumes"];
const BOOLS = ["true", "false", "yes", "no", "on", "off", "1", "0"];

export function validateProjectName(name: string): void {
  if (name === "") throw new BadRequest("No name provided");
  if (name.includes("/")) throw new BadRequest("Project names may not contain slashes");
  if (name.includes(" ")) throw new BadRequest("Project names may not contain spaces");
  if (name.includes("_")) throw new BadRequest("Project names may not contain underscores");
  if (name.includes("'") || name.includes('"')) throw new BadRequest("Project names may not contain quotes");
  if (name === "*") throw new BadRequest("Reserved project name");
  if (name === "." || name === ".." || /[\0\n]/.test(name)) throw new BadRequest(`Invalid project name "${name}"`);
}

/** features.* are booleans, user.* free; limits and restrictions are not enforced here, so they are refused. */
export function validateProjectConfig(config: Record<string, string>): void {
  for (const [key, value] of Object.entries(config)) {
    if (key.startsWith("user.")) continue;
    if (!FEATURES.includes(key)) throw new BadRequest(`Invalid project configuration key "${key}"`);
    if (value !== "" && !BOOLS.includes(value.toLowerCase())) throw new BadRequest(`Invalid project configuration key "${key}" value: Invalid value for a boolean "${value}"`);
  }
}

const isTrue = (v: string | undefined) => ["true", "yes", "on", "1"].includes((v ?? "").toLowerCase());
const suffix = (project: string) => (project === "default" ? "" : `?project=${encodeURIComponent(project)}`);

export class ProjectService implements ProjectsPort {
  readonly repo: ProjectRepo;

  constructor(private readonly core: Core) {
    this.repo = new ProjectRepo(core.db);
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

  usedBy(name: string): string[] {
    const c = this.repo.contents(name);
    return [
      ...c.instances.map((n) => `/1.0/instances/${n}${suffix(name)}`),
      ...c.profiles.map((n) => `/1.0/profiles/${n}${suffix(name)}`),
      ...c.images.map((n) => `/1.0/images/${n}${suffix(name)}`),
      ...c.volumes.map((n) => `/1.0/storage-pools/volumes/custom/${n}${suffix(name)}`),
      ...c.networks.map((n) => `/1.0/networks/${n}${suffix(name)}`),
      ...c.acls.map((n) => `/1.0/network-acls/${n}${suffix(name)}`),
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

  create(req: { name: string; description: string; config: Record<string, string> }): void {
    validateProjectName(req.name);
    const config = { ...req.config };
    validateProjectConfig(config);
    for (const f of DEFAULT_FEATURES) if (!(f in config)) config[f] = "true";
    if (this.repo.get(req.name)) throw new Conflict(`Failed creating project "${req.name}": Failed adding database record: This "projects" entry already exists`);
    this.core.db.transaction(() => {
      this.repo.insert({ name: req.name, description: req.description, config });
      if (isTrue(config["features.profiles"])) this.profiles().ensureDefaultProfile(req.name);
    })();
    this.core.events.lifecycle("project-created", `/1.0/projects/${req.name}`);
  }

  update(name: string, req: { description?: string; config?: Record<string, string> }, mode: "put" | "patch"): void {
    const cur = this.require(name);
    const config = mode === "put" ? { ...(req.config ?? {}) } : { ...cur.config, ...(req.config ?? {}) };
    for (const k of Object.keys(config)) if (config[k] === "" && mode === "patch") delete config[k];
    validateProjectConfig(config);
    const changed = FEATURES.filter((f) => isTrue(cur.config[f]) !== isTrue(config[f]));
    if (changed.length > 0) {
      if (name === "default") throw new BadRequest("You can't change the features of the default project");
      if (!this.isEmpty(name)) throw new BadRequest("Features can only be changed on empty projects");
    }
    const description = req.description ?? (mode === "patch" ? cur.description : "");
    this.core.db.transaction(() => {
      this.repo.update({ name, description, config });
      if (changed.includes("features.profiles")) {
        if (isTrue(config["features.profiles"])) this.profiles().ensureDefaultProfile(name);
        else this.profiles().deleteProjectProfiles(name);
      }
    })();
    this.core.events.lifecycle("project-updated", `/1.0/projects/${name}`);
  }

  delete(name: string): void {
    if (name === "default") throw new Forbidden("The 'default' project cannot be deleted");
    this.require(name);
    if (!this.isEmpty(name)) throw new InternalError("Only empty projects can be removed");
    this.core.db.transaction(() => {
      this.profiles().deleteProjectProfiles(name);
      this.repo.delete(name);
    })();
    this.core.events.lifecycle("project-deleted", `/1.0/projects/${name}`);
  }

  private profiles() {
    const p = this.core.ports.profiles;
    if (!p?.ensureDefaultProfile || !p.deleteProjectProfiles) throw new Error("Profiles are not available (no profiles feature with project support loaded)");
    return p as Required<typeof p>;
  }
}
