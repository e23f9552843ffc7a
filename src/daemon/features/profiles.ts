import { profileRoutes } from "../../api/routes/profiles.js";
import type { Core, Feature } from "../feature.js";
import type { Ports } from "../../ports.js";
import { ProfileService } from "../../profiles/profile-service.js";

export class ProfilesFeature implements Feature {
  readonly name = "profiles";
  readonly service: ProfileService;

  constructor(core: Core, ports: Pick<Ports, "instances" | "projects" | "networks">) {
    this.service = new ProfileService({ db: core.db, events: core.events, instances: ports.instances, projects: ports.projects, networks: ports.networks });
  }

  routes() {
    return profileRoutes(this.service);
  }

  async start(): Promise<void> {
    this.service.ensureDefaultProfile("default");
  }
}
