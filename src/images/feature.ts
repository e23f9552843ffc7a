// The images feature: the image store, its REST routes, and the ImagesPort for instances.
import { NotFound } from "../api/errors.js";
import { imageRoutes } from "../api/routes/images.js";
import type { Core, Feature } from "../daemon/daemon.js";
import { ImageRepo } from "../db/image-repo.js";
import { ImagePublisher } from "./publish.js";
import { ImageService } from "./service.js";

export class ImagesFeature implements Feature {
  readonly name = "images";
  readonly service: ImageService;
  private readonly publisher: ImagePublisher;

  constructor(private readonly core: Core) {
    this.service = new ImageService({
      dir: core.paths.images,
      treesDir: core.paths.imageTrees,
      repo: new ImageRepo(core.db),
      events: core.events,
      log: core.log,
      projectFor: (project) => core.ports.projects?.effectiveProject(project, "images") ?? project,
      profileExists: (project, name) => {
        const profiles = core.ports.profiles;
        if (!profiles) return true;
        try {
          profiles.get(project, name);
          return true;
        } catch (e) {
          if (e instanceof NotFound) return false;
          throw e;
        }
      },
    });
    this.publisher = new ImagePublisher({
      images: this.service,
      operations: core.operations,
      ports: core.ports,
      defaultCompression: () => core.server.get("images.compression_algorithm") ?? "gzip",
    });
    core.ports.images = this.service;
  }

  routes() {
    return imageRoutes({ images: this.service, operations: this.core.operations, publisher: this.publisher, imageSpaceBudget: (project) => this.core.ports.projects?.imageSpaceBudget?.(project) ?? -1 });
  }

  async start(): Promise<void> {
    await this.service.cleanup();
  }
}
