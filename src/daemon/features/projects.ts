// The projects feature: /1.0/projects and the ProjectsPort.
import { projectRoutes } from "../../api/routes/projects.js";
import type { Core, Feature } from "../feature.js";
import { ProjectService } from "../../projects/service.js";

export class ProjectsFeature implements Feature {
  readonly name = "projects";
  readonly service: ProjectService;

  constructor(private readonly core: Core) {
    this.service = new ProjectService(core);
    core.ports.projects = this.service;
  }

  routes() {
    return projectRoutes(this.service, this.core.operations);
  }
}
