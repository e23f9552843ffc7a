// The images feature: the image store, its REST routes, and the ImagesPort for instances.
import { copyImageFromMembers } from "../../images/member-copy.js";
import { NotFound } from "../../shared/errors.js";
import { imageRoutes } from "../../api/routes/images.js";
import type { Core, Feature } from "../feature.js";
import { ImageRepo } from "../../db/image-repo.js";
import { exportForGuest } from "../../api/routes/image-export.js";
import { ImagePublisher } from "../../images/publish.js";
import { ImagePuller } from "../../images/pull.js";
import { ImageSecrets } from "../../images/secrets.js";
import type { ImagesPort, Ports } from "../../ports.js";
import { ImageRefresher } from "../../images/refresh.js";
import { ImageService } from "../../images/service.js";
import { outsideWriteLock } from "../../shared/write-lock.js";

export class ImagesFeature implements Feature {
  readonly name = "images";
  readonly service: ImageService;
  private readonly publisher: ImagePublisher;
  readonly puller: ImagePuller;
  private readonly secrets: ImageSecrets;
  readonly refresher: ImageRefresher;
  /** What instances and storage use of images. */
  readonly port: ImagesPort;

  constructor(
    private readonly core: Core,
    private readonly ports: Pick<Ports, "cluster" | "projects" | "profiles" | "instances"> & { storage: Pick<Ports["storage"], "deleteImageVolumes"> },
  ) {
    const cluster = ports.cluster;
    const writeLock = <T>(fn: () => Promise<T>): Promise<T> => cluster.withWriteLock(fn);
    this.service = new ImageService({
      writeLock,
      dir: core.paths.images,
      treesDir: core.paths.imageTrees,
      repo: new ImageRepo(core.db),
      events: core.events,
      log: core.log,
      fetchFromMember: async (project, fingerprint, files) => {
        if (!cluster.clustered()) throw new Error("Image file missing");
        // Files only: other members' writes need not wait for the copy.
        await outsideWriteLock(async () => copyImageFromMembers(await cluster.imagePeers(), project, fingerprint, files));
      },
      projectFor: (project) => ports.projects.effectiveProject(project, "images"),
      dropImageVolumes: (fingerprint) => ports.storage.deleteImageVolumes(fingerprint),
      profileExists: (project, name) => {
        try {
          ports.profiles.get(project, name);
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
      ports,
      defaultCompression: () => core.server.get("images.compression_algorithm") ?? "gzip",
    });
    this.puller = new ImagePuller({
      images: this.service,
      log: core.log,
      autoUpdateInterval: () => Number(core.server.get("images.auto_update_interval") ?? "6"),
    });
    this.secrets = new ImageSecrets(core.operations, core.events);
    this.refresher = new ImageRefresher({ images: this.service, puller: this.puller, events: core.events, log: core.log, config: (k) => core.server.get(k),
      leads: () => cluster.leads(),
      writeLock,
      onLeadership: (fn) => cluster.onLeadership(fn),
    });
    const service = this.service;
    const puller = this.puller;
    this.port = {
      resolve: (project, ref) => service.resolve(project, ref),
      unpackInto: (fp, target, opts) => service.trees.unpackInto(fp, target, opts),
      markUsed: (fp) => service.markUsed(fp),
      exportForGuest: (project, fingerprint, res) => exportForGuest(service, project, fingerprint, res),
      // LXD's createFromImage: cached, auto-updated when images.auto_update_cached, private.
      pull: async (project, src, opts) => {
        const row = await puller.pull(service.projectFor(project), src, {
          setCached: true,
          preferCached: true,
          autoUpdate: ["true", "1", "yes", "on"].includes(String(core.server.get("images.auto_update_cached") ?? "true").toLowerCase()),
          public: false,
          signal: opts.signal,
          onMetadata: opts.onMetadata,
        });
        return service.resolve(project, { fingerprint: row.fingerprint });
      },
    };
  }

  routes() {
    return imageRoutes({
      images: this.service,
      operations: this.core.operations,
      publisher: this.publisher,
      imageSpaceBudget: (project) => this.ports.projects.imageSpaceBudget(project),
      puller: this.puller,
      secrets: this.secrets,
      refresher: this.refresher,
      events: this.core.events,
    });
  }

  async start(): Promise<void> {
    await this.service.cleanup();
    // Another member's deletion (a user's or the leader's expiry) reaches this member's files too.
    this.ports.cluster.onReplicated((tables) => {
      if (tables.has("images") || tables.has("*")) void this.service.dropUnreferencedFiles().catch((err) => this.core.log.warn({ err }, "removing deleted images' files failed"));
    });
    this.refresher.start();
  }

  async stop(): Promise<void> {
    await this.refresher.stop();
    await this.service.trees.stop();
  }
}
