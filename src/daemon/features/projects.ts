// The projects feature: /1.0/projects and the ProjectsPort.
import { projectRoutes } from "../../api/routes/projects.js";
import type { Core, Feature } from "../feature.js";
import { ProjectService } from "../../projects/service.js";

export class ProjectsFeature implements Feature {
  readonly name = "projects";
  readonly service: ProjectService;

  constructor(private readonly core: Core) {
    // Profiles load before projects; networks after them, so they are read when a request needs them.
    const profiles = core.ports.profiles;
    if (!profiles?.ensureDefaultProfile || !profiles.deleteProjectProfiles) throw new Error("projects needs the profiles feature loaded first");
    this.service = new ProjectService({
      db: core.db,
      events: core.events,
      trust: core.trust,
      profiles: { ensureDefaultProfile: profiles.ensureDefaultProfile.bind(profiles), deleteProjectProfiles: profiles.deleteProjectProfiles.bind(profiles) },
      networks: () => core.ports.networks,
    });
    core.ports.projects = this.service;
  }

  routes() {
    return projectRoutes(this.service, this.core.operations);
  }
}
