// Creating an instance (LXD's instancesPost → createFromImage/Copy/Migration): the synchronous
// checks of a request, then the "Creating instance" operation's body — pull a remote image
// first, make the records and the volume, and remove what was made if anything fails.
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { BadRequest, Conflict, NotFound } from "../shared/errors.js";
import type { Ports } from "../ports.js";
import type { InstanceRow } from "../db/instance-repo.js";

import { RawIdmapError } from "./idmap.js";
import { validateInstanceName } from "./names.js";
import type { InstanceDevices } from "./instance-devices.js";
import type { SnapshotService } from "./snapshots.js";
import { instanceUrl, rootDisk } from "./rows.js";
import { volumeConfigForCopy, type CreateRequest, type InstanceOwner } from "./model.js";
import { CreateMarkers } from "./create-markers.js";

/** A create request's normalised parts (checkCreate's answer). */
export interface CheckedCreate {
  image?: ReturnType<NonNullable<Ports["images"]>["resolve"]>;
  profiles: string[];
  copyOf?: InstanceRow;
  copySnapshot?: string;
}

/** What creation needs of the instance service. */
export interface CreationOwner extends InstanceOwner {
  readonly devices: InstanceDevices;
  destroy(row: InstanceRow): Promise<void>;
  readonly snapshots: SnapshotService;
  allocateIdmap(project: string, name: string, config: Record<string, string>): { base: number; map: string };
}

export class InstanceCreation {
  constructor(private readonly svc: CreationOwner) {}

  private markerStore?: CreateMarkers;
  /** Creates in progress, marked on disk so that a crash leaves no half instance (recover()). */
  private get markers(): CreateMarkers {
    return (this.markerStore ??= new CreateMarkers(join(this.svc.deps.paths.dir, "creating")));
  }

  /**
   * At start: remove the instances whose create a crash interrupted (with their volumes). In a
   * cluster each removal is a cluster write (under its lock). `leave`: names another mechanism
   * settles (a cluster move's copy, by the move journal).
   */
  async recover(opts: { leave?: (name: string) => boolean } = {}): Promise<void> {
    const cluster = this.svc.deps.ports.cluster;
    for (const m of this.markers.list()) {
      if (opts.leave?.(m.name)) {
        this.markers.remove(m.project, m.name);
        continue;
      }
      try {
        await cluster.withWriteLock(async () => {
          const row = this.svc.repo.get(m.project, m.name);
          // Only the instance that create made (a name taken meanwhile by another is left alone).
          if (!row || row.config["volatile.uuid"] !== m.uuid) return;
          this.svc.deps.log.warn({ project: m.project, instance: m.name }, "removing instance left half-created by a crash");
          await this.svc.destroy(row);
        });
      } catch (e) {
        this.svc.deps.log.warn({ err: e, project: m.project, instance: m.name }, "cannot remove half-created instance");
        continue;
      }
      this.markers.remove(m.project, m.name);
    }
  }

  /** Validate a create request synchronously; returns the normalised parts. */
  checkCreate(project: string, req: CreateRequest): CheckedCreate {
    const sourceProject = req.source.project || project;
    try {
      validateInstanceName(req.name);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    if (req.type && req.type !== "container") throw new BadRequest(`Instance type "${req.type}" is not supported`);
    if (this.svc.repo.get(project, req.name)) throw new Conflict(`Instance "${req.name}" already exists`);
    let image;
    if (req.source.type === "image") {
      const images = this.svc.deps.ports.images;
      // A remote image is pulled by the operation (LXD's createFromImage); only local ones resolve here.
      if (!req.source.remote) image = images.resolve(project, { alias: req.source.alias, fingerprint: req.source.fingerprint });
      else if (!req.source.alias && !req.source.fingerprint) throw new BadRequest("Must specify one of alias or fingerprint for init from image");
      if (image && image.type !== "container") throw new BadRequest("Requested image's type 'virtual-machine' doesn't match instance type 'container'");
    }
    let copyOf: InstanceRow | undefined;
    let copySnapshot: string | undefined;
    if (req.source.type === "copy") {
      const from = req.source.source ?? "";
      if (!from) throw new BadRequest("Must specify a source instance");
      if (from.includes("/")) {
        // A snapshot as the source: its config, devices and profiles, and its volume's content.
        const [parent, snap] = from.split("/", 2);
        const row = this.svc.require(sourceProject, parent);
        const s = this.svc.snapshots.require(row, snap);
        copyOf = { ...row, config: s.config, devices: s.devices, profiles: s.profiles, architecture: s.architecture };
        copySnapshot = snap;
      } else {
        copyOf = this.svc.require(sourceProject, from);
      }
      // A copy is a new instance: no volatile state of the source (MACs, uuid, id maps) carries
      // over. A move keeps it (the same instance in a new place).
      const base = req.config ?? copyOf.config;
      req.config = Object.fromEntries(Object.entries(base).filter(([k]) => req.move || !k.startsWith("volatile.")));
      if (copyOf.config["volatile.base_image"]) req.config["volatile.base_image"] = copyOf.config["volatile.base_image"];
      if (!req.devices) req.devices = copyOf.devices;
    } else if (req.source.type === "migration") {
      // The peer's config as the client sent it: volatile keys are the client's choice (kept on moves).
      req.move = true;
    } else if (req.source.type !== "none" && req.source.type !== "image") {
      throw new BadRequest(`Unknown source type ${req.source.type}`);
    }
    const profiles = req.profiles ?? copyOf?.profiles ?? image?.profiles ?? ["default"];
    // The project's limits and restrictions (before the config is validated, as LXD), over the
    // config as it will be with its profiles.
    this.svc.deps.ports.projects.allowInstanceCreation(project, { name: req.name, type: "container", config: { ...(req.config ?? {}) }, devices: req.devices ?? {}, profiles }, !!copyOf);
    try {
      this.svc.validate(project, req.name, req.config ?? {}, req.devices ?? {}, profiles);
    } catch (e) {
      if (e instanceof NotFound) throw e;
      throw new BadRequest((e as Error).message);
    }
    return { image, profiles, copyOf, copySnapshot };
  }

  /** Instances whose "Creating instance" operation still runs ("project/name"). */
  private readonly creating = new Set<string>();

  /** LXD's per-instance operation lock, for the one operation that can overlap others here: create. */
  assertNotCreating(project: string, name: string, action: string): void {
    if (this.creating.has(`${project}/${name}`)) throw new Error(`Failed to create instance ${action} operation: Instance is busy running a "create" operation`);
  }

  /** The body of the "Creating instance" operation. */
  async create(project: string, req: CreateRequest, checked: CheckedCreate, signal: AbortSignal, onMetadata?: (patch: Record<string, unknown>) => void): Promise<void> {
    const key = `${project}/${req.name}`;
    this.creating.add(key);
    try {
      const remote = req.source.remote;
      if (remote && req.source.type === "image") {
        // Pull (or reuse the cached copy of) the remote image first: nothing else exists yet if this fails or is cancelled.
        const image = await this.svc.deps.ports.images.pull(project, { ...remote, alias: req.source.alias, fingerprint: req.source.fingerprint, type: "container" }, { signal, onMetadata });
        if (image.type !== "container") throw new BadRequest("Requested image's type 'virtual-machine' doesn't match instance type 'container'");
        checked = { ...checked, image, profiles: req.profiles ?? image.profiles ?? checked.profiles };
      }
      await this.doCreate(project, req, checked, signal);
    } finally {
      this.creating.delete(key);
    }
  }

  private async doCreate(project: string, req: CreateRequest, checked: CheckedCreate, signal: AbortSignal): Promise<void> {
    const { image, profiles, copyOf, copySnapshot } = checked;
    const config: Record<string, string> = {};
    if (image) for (const [k, v] of Object.entries(image.properties)) config[`image.${k}`] = v;
    Object.assign(config, req.config ?? {});
    const now = new Date().toISOString();
    const ex0 = this.svc.expanded({ project, profiles, config, devices: req.devices ?? {} });
    let root: { name: string; pool: string };
    try {
      root = rootDisk(ex0.devices);
    } catch (e) {
      throw new Error(`Failed creating instance record: Failed initialising instance: ${(e as Error).message}`);
    }
    const storage = this.svc.deps.ports.storage;
    storage.assertPool(root.pool);
    let idmap: { base: number; map: string };
    try {
      idmap = this.svc.allocateIdmap(project, req.name, ex0.config);
    } catch (e) {
      if (e instanceof RawIdmapError) throw new Error(`Failed creating instance record: Failed initialising instance: ${e.message}`);
      throw e;
    }
    Object.assign(config, {
      "volatile.uuid": req.move ? (config["volatile.uuid"] ?? randomUUID()) : randomUUID(),
      "volatile.cloud-init.instance-id": req.move ? (config["volatile.cloud-init.instance-id"] ?? randomUUID()) : randomUUID(),
      "volatile.idmap.base": String(idmap.base),
      "volatile.idmap.next": idmap.map,
      // A copied rootfs keeps the source's ownership: the first start shifts it if the maps differ.
      "volatile.last_state.idmap": copyOf?.config["volatile.last_state.idmap"] ?? "[]",
      "volatile.apply_template": copyOf ? "copy" : "create",
    });
    // Moves apply no template trigger (upstream: applyTemplateTrigger false), but keep one pending.
    if (req.move) {
      if (copyOf?.config["volatile.apply_template"]) config["volatile.apply_template"] = copyOf.config["volatile.apply_template"];
      else delete config["volatile.apply_template"];
      delete config["volatile.last_state.power"];
    }
    if (image) config["volatile.base_image"] = image.fingerprint;
    this.markers.add(project, req.name, config["volatile.uuid"]);
    try {
      this.svc.repo.insert({
        project,
        name: req.name,
        type: "container",
        architecture: image?.architecture ?? copyOf?.architecture ?? req.architecture ?? this.svc.deps.host.kernel_architecture,
        ephemeral: req.ephemeral ?? false,
        stateful: req.stateful ?? false,
        description: req.description ?? "",
        config,
        devices: req.devices ?? {},
        profiles,
        created_at: now,
        last_used_at: "1970-01-01T00:00:00Z",
        init_pid: 0,
        init_start: "",
      });
    } catch (e) {
      this.markers.remove(project, req.name);
      throw e;
    }
    let volumeCreated = false;
    let finishMigration: ((error?: Error, started?: () => void) => Promise<void>) | undefined;
    try {
      const fill = image?.fingerprint ?? (req.migrate ? this.migrationBaseImage(project, config["volatile.base_image"], root.pool) : undefined);
      const dir = await storage.createInstanceVolume(project, root.pool, req.name, { image: fill, signal, size: ex0.devices[root.name]?.size });
      volumeCreated = true;
      if (copyOf) {
        // Snapshots oldest first, each synced into the new volume and snapshotted there; then the
        // source's current content. This works across pools, drivers and projects.
        if (!copySnapshot && !req.source.instanceOnly) await this.svc.snapshots.copyAll(copyOf, project, req.name, root.pool, signal);
        const source = copySnapshot ? await (await this.svc.snapshots.copySource(copyOf.project, `${copyOf.name}/${copySnapshot}`)).dir() : await this.svc.volumeDir(copyOf);
        await storage.syncInstanceVolume(project, root.pool, req.name, source, { signal });
        const sourcePool = rootDisk(this.svc.expanded(this.svc.require(copyOf.project, copyOf.name)).devices).pool;
        const vol = storage.instanceVolumeConfig?.(copyOf.project, sourcePool, copyOf.name, copySnapshot);
        if (vol) storage.setInstanceVolumeConfig?.(project, root.pool, req.name, undefined, { description: vol.description, config: volumeConfigForCopy(vol.config) });
      }
      if (req.migrate) finishMigration = (await req.migrate({ dir, pool: root.pool, signal })) ?? undefined;
      mkdirSync(join(dir, "rootfs"), { recursive: true, mode: 0o755 });
      this.svc.runtime.driver.create({ project, name: req.name }, dir);
      // LXD's device Add (e.g. a NIC's static DHCP host file on its managed bridge).
      await this.svc.devices.add(this.svc.require(project, req.name), ex0);
      if (image) this.svc.deps.ports.images.markUsed(image.fingerprint);
      // A live migration: started from the source's dump before the source lets go of it (the
      // mark goes first: a crash then leaves the instance running here rather than nowhere).
      const finish = finishMigration;
      finishMigration = undefined;
      if (finish) await finish(undefined, () => this.markers.remove(project, req.name));
    } catch (e) {
      await finishMigration?.(e as Error).catch(() => {});
      // Started from the dump but the source never heard of it: the source keeps running, not this copy.
      if (this.svc.runtime.isRunning(this.svc.require(project, req.name))) await this.svc.runtime.stop(project, req.name, { force: true, timeout: 0 }).catch(() => {});
      await this.svc.devices.forget(this.svc.require(project, req.name), ex0).catch(() => {});
      if (volumeCreated) await storage.deleteInstanceVolume(project, root.pool, req.name).catch(() => {});
      this.svc.runtime.driver.delete({ project, name: req.name });
      this.svc.repo.delete(project, req.name);
      this.markers.remove(project, req.name);
      throw e;
    }
    this.markers.remove(project, req.name);
    this.svc.deps.events.lifecycle("instance-created", instanceUrl(project, req.name), { project });
  }

  /**
   * LXD's base-image optimisation of a migration by rsync: when the instance's base image is in
   * the project and its file is on this member, the new volume starts as that image, and the
   * rsync passes then send only what differs (with --delete, the result is the source's tree
   * either way). A pool whose driver streams btrfs may negotiate BTRFS, which needs an empty
   * volume: it starts empty, as before the negotiation it cannot be known.
   */
  private migrationBaseImage(project: string, fingerprint: string | undefined, pool: string): string | undefined {
    if (!fingerprint || !/^[0-9a-f]{64}$/.test(fingerprint) || this.svc.deps.ports.storage.instanceStreamType?.(pool)) return undefined;
    try {
      if (this.svc.deps.ports.images.resolve(project, { fingerprint }).fingerprint !== fingerprint) return undefined;
    } catch {
      return undefined;
    }
    return existsSync(join(this.svc.deps.paths.images, fingerprint)) ? fingerprint : undefined;
  }
}
