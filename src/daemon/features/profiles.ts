import { profileRoutes } from "../../api/routes/profiles.js";
import type { Core, Feature } from "../feature.js";
import { ProfileService } from "../../profiles/profile-service.js";

export class ProfilesFeature implements Feature {
  readonly name = "profiles";
  readonly service: ProfileService;

  constructor(core: Core) {
    // Instances and projects load after profiles: read their ports when a request needs them.
    this.service = new ProfileService({ db: core.db, events: core.events, instances: () => core.ports.instances, projects: () => core.ports.projects, networks: () => core.ports.networks });
    core.ports.profiles = this.service;
  }

  routes() {
    return profileRoutes(this.service);
  }

  async start(): Promise<void> {
    this.service.ensureDefaultProfile("default");
  }
}
