import { profileRoutes } from "../../api/routes/profiles.js";
import type { Core, Feature } from "../feature.js";
import { ProfileService } from "../../profiles/profile-service.js";

export class ProfilesFeature implements Feature {
  readonly name = "profiles";
  readonly service: ProfileService;

  constructor(core: Core) {
    this.service = new ProfileService(core);
    core.ports.profiles = this.service;
  }

  routes() {
    return profileRoutes(this.service);
  }

  async start(): Promise<void> {
    this.service.ensureDefaultProfile("default");
  }
}
