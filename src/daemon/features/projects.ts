// The projects feature: /1.0/projects and the ProjectsPort.
import { projectRoutes } from "../../api/routes/projects.js";
import type { Core, Feature } from "../feature.js";
import type { NetworksPort } from "../../ports.js";
import { ProjectService } from "../../projects/service.js";
import type { ProfileService } from "../../profiles/profile-service.js";

export class ProjectsFeature implements Feature {
  readonly name = "projects";
  readonly service: ProjectService;

  constructor(
    private readonly core: Core,
    deps: { profiles: ProfileService; networks: NetworksPort },
  ) {
    const profiles = deps.profiles;
    this.service = new ProjectService({
      db: core.db,
      events: core.events,
      trust: core.trust,
      profiles: { ensureDefaultProfile: (project) => profiles.ensureDefaultProfile(project), deleteProjectProfiles: (project) => profiles.deleteProjectProfiles(project) },
      networks: deps.networks,
    });
  }

  routes() {
    return projectRoutes(this.service, this.core.operations);
  }
}
