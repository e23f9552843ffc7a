// Instances: the rules and the database. Creation, updates, renames and deletes live here;
// running containers (start/stop/adoption) are in runtime.ts.
import { randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BadRequest, Conflict, NotFound } from "../shared/errors.js";
import type { Core } from "../daemon/feature.js";
import type { InstancesPort } from "../daemon/ports.js";
import { InstanceRepo, type InstanceRow } from "../db/instance-repo.js";
import { validateInstanceConfig, isTrue } from "./config-keys.js";
import { checkDeviceValues } from "../devices/registry.js";
import { allocateIdmap, DEFAULT_ISOLATED_SIZE, ensureRootSubIds, idmapJson, IdmapError, parseIdmapJson, parseRawIdmap, RawIdmapError, toHost, toNs, type HostIdSet, type IdmapEntry, type UsedRange } from "./idmap.js";
import { needsNewInstanceId } from "./cloud-init.js";
import { expand, validateInstanceName } from "./names.js";
import type { InstanceRuntime } from "./runtime.js";
import type { SnapshotService } from "./snapshots.js";
import type { BackupService } from "./backups.js";
import { shiftTree } from "./lxc/shift.js";
import { run } from "../os/exec.js";
import { identityIdMap, type IdMap, type InstanceRuntime as PortRuntime } from "./runtime-port.js";

export type Devices = Record<string, Record<string, string>>;

export interface InstancePut {
  architecture?: string;
  config?: Record<string, string>;
  devices?: Devices;
  ephemeral?: boolean;
  profiles?: string[];
  description?: string;
}

export interface CreateRequest extends InstancePut {
  name: string;
  type?: string;
  /**
   * instanceOnly: a copy leaves the source's snapshots behind (`lxc copy --instance-only`);
   * project: the source instance's project (container_copy_project), this one when absent.
   */
  source: {
    type: string;
    alias?: string;
    fingerprint?: string;
    source?: string;
    instanceOnly?: boolean;
    project?: string;
    /** A remote image server (source type "image", mode "pull"): the image is pulled inside the operation. */
    remote?: { server: string; protocol?: string; certificate?: string; secret?: string; project?: string };
  };
  /** Internal (moves): the source's volatile keys are kept and no template trigger is set. */
  move?: boolean;
  /** Internal (source type migration): fill the new, empty volume (and its snapshots) from a peer. */
  migrate?: (target: { dir: string; pool: string; signal: AbortSignal }) => Promise<void>;
}

export const STATUS = { Running: 103, Stopped: 102, Frozen: 110, Error: 112 } as const;

export interface InstanceView {
  architecture: string;
  config: Record<string, string>;
  devices: Devices;
  ephemeral: boolean;
  profiles: string[];
  stateful: boolean;
  description: string;
  created_at: string;
  expanded_config: Record<string, string>;
  expanded_devices: Devices;
  name: string;
  status: string;
  status_code: number;
  last_used_at: string;
  location: string;
  type: string;
  project: string;
}

export const instanceUrl = (project: string, name: string) => `/1.0/instances/${name}${project === "default" ? "" : `?project=${project}`}`;

/** The keys a container's id map is computed from. */
const IDMAP_KEYS = ["raw.idmap", "security.idmap.isolated", "security.idmap.base", "security.idmap.size", "security.privileged"];

export class InstanceService implements InstancesPort {
  readonly repo: InstanceRepo;
  runtime!: InstanceRuntime;
  snapshots!: SnapshotService;
  backups?: BackupService;
  private hostIds?: HostIdSet;

  constructor(readonly core: Core) {
    this.repo = new InstanceRepo(core.db);
  }

  idSet(): HostIdSet {
    return (this.hostIds ??= ensureRootSubIds());
  }

  require(project: string, name: string): InstanceRow {
    const row = this.repo.get(project, name);
    if (!row) throw new NotFound("Instance not found");
    return row;
  }

  expanded(row: Pick<InstanceRow, "project" | "profiles" | "config" | "devices">): { config: Record<string, string>; devices: Devices } {
    const profiles = row.profiles.map((p) => this.profiles().get(row.project, p));
    return {
      config: expand([...profiles.map((p) => p.config), row.config]),
      devices: expand([...profiles.map((p) => p.devices), row.devices]),
    };
  }

  private profiles() {
    const p = this.core.ports.profiles;
    if (!p) throw new Error("Profiles are not available (no profiles feature loaded)");
    return p;
  }

  view(row: InstanceRow): InstanceView {
    const ex = this.expanded(row);
    const status = this.runtime.status(row);
    return {
      architecture: row.architecture,
      config: row.config,
      devices: row.devices,
      ephemeral: row.ephemeral,
      profiles: row.profiles,
      stateful: row.stateful,
      description: row.description,
      created_at: row.created_at,
      expanded_config: ex.config,
      expanded_devices: ex.devices,
      name: row.name,
      status,
      status_code: STATUS[status as keyof typeof STATUS] ?? 112,
      last_used_at: row.last_used_at,
      location: "none",
      type: row.type,
      project: row.project,
    };
  }

  list(project: string | undefined): InstanceRow[] {
    return this.repo.list(project);
  }

  /** The root disk device of an expanded device set: LXD's error when absent. */
  static rootDisk(devices: Devices): { name: string; pool: string } {
    for (const [name, d] of Object.entries(devices)) {
      if (d.type === "disk" && d.path === "/" && !d.source) {
        if (!d.pool) throw new Error(`Failed getting root disk: Root disk entry must have a "pool" property set`);
        return { name, pool: d.pool };
      }
    }
    throw new Error("Failed getting root disk: No root device could be found");
  }

  /** Validate config and devices the way LXD does before anything is saved. */
  validate(project: string, name: string, config: Record<string, string>, devices: Devices, profiles: string[], expandedOnly = false): void {
    validateInstanceConfig(config);
    for (const p of profiles) this.profiles().get(project, p);
    const ex = this.expanded({ project, profiles, config, devices });
    if (!expandedOnly) validateInstanceConfig(ex.config);
    for (const [dev, cfg] of Object.entries(devices)) {
      let device;
      try {
        checkDeviceValues(cfg);
        device = this.runtime.makeDevice({ project, name, config: ex.config }, dev, cfg);
      } catch (e) {
        // An unknown type fails while loading the device, as LXD words it.
        const msg = (e as Error).message;
        throw new Error(msg === "Unsupported device type" ? `Invalid devices: Device validation failed for "${dev}": Failed loading device "${dev}": ${msg}` : `Invalid devices: Device validation failed for "${dev}": ${msg}`);
      }
      try {
        device.validate();
      } catch (e) {
        throw new Error(`Invalid devices: Device validation failed for "${dev}": ${(e as Error).message}`);
      }
    }
  }

  /** Allocate the id map for a container (volatile.idmap.*). */
  allocateIdmap(project: string, name: string, config: Record<string, string>): { base: number; map: string } {
    try {
      return this.computeIdmap(project, name, config);
    } catch (e) {
      if (e instanceof IdmapError) throw new Error(`Failed to allocate an idmap: ${e.message}`);
      throw e;
    }
  }

  /** The map with raw.idmap punched in; throws IdmapError or RawIdmapError with LXD's bare message. */
  private computeIdmap(project: string, name: string, config: Record<string, string>): { base: number; map: string } {
    const used: UsedRange[] = [];
    for (const other of this.repo.list()) {
      if (other.project === project && other.name === name) continue;
      const ex = this.expanded(other).config;
      if (!isTrue(ex["security.idmap.isolated"])) continue;
      // The allocation's size, not the first entry's: raw.idmap may have split it.
      if (parseIdmapJson(other.config["volatile.idmap.next"]).length > 0) used.push({ base: Number(other.config["volatile.idmap.base"] ?? 0), size: ex["security.idmap.size"] ? Number(ex["security.idmap.size"]) : DEFAULT_ISOLATED_SIZE });
    }
    const size = config["security.idmap.size"] ? Number(config["security.idmap.size"]) : undefined;
    const privileged = isTrue(config["security.privileged"]);
    const raw = privileged ? [] : parseRawIdmap(config["raw.idmap"] ?? "");
    const base = config["security.idmap.base"] ? Number(config["security.idmap.base"]) : undefined;
    const r = allocateIdmap(this.idSet(), { privileged, isolated: isTrue(config["security.idmap.isolated"]), size, base, raw }, used);
    return { base: r.base, map: idmapJson(r.map) };
  }

  /** Validate a create request synchronously; returns the normalised parts. */
  checkCreate(project: string, req: CreateRequest): { image?: ReturnType<NonNullable<Core["ports"]["images"]>["resolve"]>; profiles: string[]; copyOf?: InstanceRow; copySnapshot?: string } {
    const sourceProject = req.source.project || project;
    try {
      validateInstanceName(req.name);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    if (req.type && req.type !== "container") throw new BadRequest(`Instance type "${req.type}" is not supported`);
    if (this.repo.get(project, req.name)) throw new Conflict(`Instance "${req.name}" already exists`);
    let image;
    if (req.source.type === "image") {
      const images = this.core.ports.images;
      if (!images) throw new Error("Images are not available (no image feature loaded)");
      // A remote image is pulled by the operation (LXD's createFromImage); only local ones resolve here.
      if (!req.source.remote) image = images.resolve(project, { alias: req.source.alias, fingerprint: req.source.fingerprint });
      else if (!images.pull) throw new Error("Remote images are not available");
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
        const row = this.require(sourceProject, parent);
        const s = this.snapshots.require(row, snap);
        copyOf = { ...row, config: s.config, devices: s.devices, profiles: s.profiles, architecture: s.architecture };
        copySnapshot = snap;
      } else {
        copyOf = this.require(sourceProject, from);
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
    this.core.ports.projects?.allowInstanceCreation?.(project, { name: req.name, type: "container", config: { ...(req.config ?? {}) }, devices: req.devices ?? {}, profiles }, !!copyOf);
    try {
      this.validate(project, req.name, req.config ?? {}, req.devices ?? {}, profiles);
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
  async create(project: string, req: CreateRequest, checked: ReturnType<InstanceService["checkCreate"]>, signal: AbortSignal, onMetadata?: (patch: Record<string, unknown>) => void): Promise<void> {
    const key = `${project}/${req.name}`;
    this.creating.add(key);
    try {
      const remote = req.source.remote;
      if (remote && req.source.type === "image") {
        // Pull (or reuse the cached copy of) the remote image first: nothing else exists yet if this fails or is cancelled.
        const image = await this.core.ports.images!.pull!(project, { ...remote, alias: req.source.alias, fingerprint: req.source.fingerprint, type: "container" }, { signal, onMetadata });
        if (image.type !== "container") throw new BadRequest("Requested image's type 'virtual-machine' doesn't match instance type 'container'");
        checked = { ...checked, image, profiles: req.profiles ?? image.profiles ?? checked.profiles };
      }
      await this.doCreate(project, req, checked, signal);
    } finally {
      this.creating.delete(key);
    }
  }

  private async doCreate(project: string, req: CreateRequest, checked: ReturnType<InstanceService["checkCreate"]>, signal: AbortSignal): Promise<void> {
    const { image, profiles, copyOf, copySnapshot } = checked;
    const config: Record<string, string> = {};
    if (image) for (const [k, v] of Object.entries(image.properties)) config[`image.${k}`] = v;
    Object.assign(config, req.config ?? {});
    const now = new Date().toISOString();
    const ex0 = this.expanded({ project, profiles, config, devices: req.devices ?? {} });
    let root: { name: string; pool: string };
    try {
      root = InstanceService.rootDisk(ex0.devices);
    } catch (e) {
      throw new Error(`Failed creating instance record: Failed initialising instance: ${(e as Error).message}`);
    }
    const storage = this.core.ports.storage;
    if (!storage) throw new Error("Storage is not available (no storage feature loaded)");
    storage.assertPool(root.pool);
    let idmap: { base: number; map: string };
    try {
      idmap = this.allocateIdmap(project, req.name, ex0.config);
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
    this.repo.insert({
      project,
      name: req.name,
      type: "container",
      architecture: image?.architecture ?? copyOf?.architecture ?? req.architecture ?? this.core.host.kernel_architecture,
      ephemeral: req.ephemeral ?? false,
      stateful: false,
      description: req.description ?? "",
      config,
      devices: req.devices ?? {},
      profiles,
      created_at: now,
      last_used_at: "1970-01-01T00:00:00Z",
      init_pid: 0,
      init_start: "",
    });
    let volumeCreated = false;
    try {
      const dir = await storage.createInstanceVolume(project, root.pool, req.name, { image: image?.fingerprint, signal, size: ex0.devices[root.name]?.size });
      volumeCreated = true;
      if (copyOf) {
        // Snapshots oldest first, each synced into the new volume and snapshotted there; then the
        // source's current content. This works across pools, drivers and projects.
        if (!copySnapshot && !req.source.instanceOnly) await this.snapshots.copyAll(copyOf, project, req.name, root.pool, signal);
        const source = copySnapshot ? await (await this.snapshots.copySource(copyOf.project, `${copyOf.name}/${copySnapshot}`)).dir() : await this.volumeDir(copyOf);
        await storage.syncInstanceVolume(project, root.pool, req.name, source, { signal });
      }
      if (req.migrate) await req.migrate({ dir, pool: root.pool, signal });
      mkdirSync(join(dir, "rootfs"), { recursive: true, mode: 0o755 });
      this.runtime.driver.prepare(this.runtime.lxcName(project, req.name), dir);
      if (image) this.core.ports.images?.markUsed(image.fingerprint);
    } catch (e) {
      if (volumeCreated) await storage.deleteInstanceVolume(project, root.pool, req.name).catch(() => {});
      this.runtime.driver.remove(this.runtime.lxcName(project, req.name));
      this.repo.delete(project, req.name);
      throw e;
    }
    this.core.events.lifecycle("instance-created", instanceUrl(project, req.name), { project });
  }

  /** PUT (replace) or PATCH (merge) the writable fields. Throws "Invalid config: ..." as a 500, as LXD. */
  async update(project: string, name: string, put: InstancePut, mode: "put" | "patch"): Promise<void> {
    const row = this.require(project, name);
    let config: Record<string, string>;
    let devices: Devices;
    if (mode === "patch") {
      config = { ...row.config, ...(put.config ?? {}) };
      devices = { ...row.devices, ...(put.devices ?? {}) };
    } else {
      config = { ...(put.config ?? {}) };
      // Volatile keys are the daemon's: keep them unless the client sends a value.
      for (const [k, v] of Object.entries(row.config)) if (k.startsWith("volatile.") && !(k in config)) config[k] = v;
      devices = put.devices ?? {};
    }
    for (const [k, v] of Object.entries(config)) if (v === "" && mode === "patch") delete config[k];
    const profiles = put.profiles ?? (mode === "patch" ? row.profiles : ["default"]);
    // The project's limits and restrictions first (as LXD), over the config with its profiles.
    this.core.ports.projects?.allowInstanceUpdate?.(project, { name, type: row.type, config, devices, profiles }, row.config);
    this.validate(project, name, config, devices, profiles);
    const next = { ...row, config, devices, profiles, description: put.description ?? (mode === "patch" ? row.description : ""), ephemeral: put.ephemeral ?? (mode === "patch" ? row.ephemeral : false), architecture: put.architecture || row.architecture };
    const before = this.expanded(row);
    const after = this.expanded(next);
    InstanceService.rootDisk(after.devices);
    // As LXD: a change of the map's inputs gives a new volatile.idmap.next, used from the next start.
    if (IDMAP_KEYS.some((k) => (before.config[k] ?? "") !== (after.config[k] ?? ""))) {
      try {
        const idmap = this.computeIdmap(project, name, after.config);
        Object.assign(next.config, { "volatile.idmap.next": idmap.map, "volatile.idmap.base": String(idmap.base) });
      } catch (e) {
        throw new Error(`Failed to get ID map: ${(e as Error).message}`);
      }
    }
    // As LXD: cloud-init config or NIC name changes give a new cloud-init instance-id.
    if (needsNewInstanceId(before, after, row.config)) next.config["volatile.cloud-init.instance-id"] = randomUUID();
    // The root disk's size is the volume's quota (where the pool's driver has one).
    const rootBefore = InstanceService.rootDisk(before.devices);
    const rootAfter = InstanceService.rootDisk(after.devices);
    const sizeBefore = before.devices[rootBefore.name]?.size ?? "";
    const sizeAfter = after.devices[rootAfter.name]?.size ?? "";
    if (sizeBefore !== sizeAfter && rootBefore.pool === rootAfter.pool) await this.core.ports.storage?.setInstanceVolumeQuota?.(project, rootAfter.pool, name, sizeAfter);
    // Apply to a running container first, so a failure changes nothing.
    await this.runtime.applyLive(next, before, after);
    // Devices hot-plugged just now recorded volatile keys (hwaddr, host_name): keep them;
    // drop those of devices that are gone.
    const fresh = this.require(project, name).config;
    for (const [k, v] of Object.entries(fresh)) if (k.startsWith("volatile.") && row.config[k] !== v) next.config[k] = v;
    for (const k of Object.keys(next.config)) {
      const dev = /^volatile\.([^.]+)\./.exec(k)?.[1];
      if (dev && dev in before.devices && !(dev in after.devices)) delete next.config[k];
    }
    this.repo.update(project, name, next);
    this.core.events.lifecycle("instance-updated", instanceUrl(project, name), { project });
  }

  async delete(project: string, name: string): Promise<void> {
    const row = this.require(project, name);
    this.assertNotCreating(project, name, "delete");
    if (this.runtime.isRunning(row)) throw new BadRequest("Instance is running");
    if (isTrue(this.expanded(row).config["security.protection.delete"])) throw new BadRequest("Instance is protected");
    await this.destroy(row);
  }

  /** Remove a stopped instance's devices, volume, directories and record. */
  async destroy(row: InstanceRow): Promise<void> {
    const ex = this.expanded(row);
    await this.runtime.removeDevices(row, ex);
    let pool: string | undefined;
    try {
      pool = InstanceService.rootDisk(ex.devices).pool;
    } catch {
      pool = undefined;
    }
    if (pool) await this.core.ports.storage?.deleteInstanceVolume(row.project, pool, row.name);
    this.runtime.driver.remove(this.runtime.lxcName(row.project, row.name));
    rmSync(join(this.core.paths.devices, this.runtime.lxcName(row.project, row.name)), { recursive: true, force: true });
    // Its seccomp policy (security/seccomp/<name>), as LXD removes it with the instance.
    rmSync(join(this.core.paths.security, "seccomp", this.runtime.lxcName(row.project, row.name)), { force: true });
    this.repo.delete(row.project, row.name);
    this.backups?.instanceDeleted(row.project, row.name);
    this.core.events.lifecycle("instance-deleted", instanceUrl(row.project, row.name), { project: row.project });
  }

  checkRename(project: string, name: string, to: string): void {
    const row = this.require(project, name);
    try {
      validateInstanceName(to);
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
    if (this.repo.get(project, to)) throw new Conflict(`Name "${to}" already in use`);
    if (this.runtime.isRunning(row)) throw new BadRequest("Renaming of running instance not allowed");
  }

  async rename(project: string, name: string, to: string, opts: { applyTemplate?: boolean } = {}): Promise<void> {
    this.checkRename(project, name, to);
    this.assertNotCreating(project, name, "rename");
    const row = this.require(project, name);
    const pool = InstanceService.rootDisk(this.expanded(row).devices).pool;
    const storage = this.core.ports.storage;
    if (!storage) throw new Error("Storage is not available (no storage feature loaded)");
    await storage.renameInstanceVolume(project, pool, name, to);
    try {
      this.runtime.driver.rename(this.runtime.lxcName(project, name), this.runtime.lxcName(project, to));
      const dir = await storage.mountInstanceVolume(project, pool, to);
      this.runtime.driver.prepare(this.runtime.lxcName(project, to), dir);
      this.repo.rename(project, name, to);
      this.backups?.instanceRenamed(project, name, to);
      // A pending trigger (an instance never started) is kept: its templates then see the new name.
      if (!row.config["volatile.apply_template"] && opts.applyTemplate !== false) this.repo.patchConfig(project, to, { "volatile.apply_template": "rename" });
      // A new name is a new cloud-init instance (LXD resets the instance-id on rename).
      this.repo.patchConfig(project, to, { "volatile.cloud-init.instance-id": randomUUID() });
    } catch (e) {
      await storage.renameInstanceVolume(project, pool, to, name).catch(() => {});
      throw e;
    }
    this.core.events.lifecycle("instance-renamed", instanceUrl(project, to), { project, context: { old_name: name } });
  }

  // ---- metadata.yaml and templates (in the instance volume) ----

  async volumeDir(row: InstanceRow): Promise<string> {
    const pool = InstanceService.rootDisk(this.expanded(row).devices).pool;
    const storage = this.core.ports.storage;
    if (!storage) throw new Error("Storage is not available (no storage feature loaded)");
    return storage.mountInstanceVolume(row.project, pool, row.name);
  }

  templateNames(dir: string): string[] {
    const t = join(dir, "templates");
    return existsSync(t) ? readdirSync(t).sort() : [];
  }

  static templatePath(dir: string, name: string): string {
    if (!name || name.includes("/") || name === "." || name === "..") throw new BadRequest("Invalid template name");
    return join(dir, "templates", name);
  }

  readMetadataFile(dir: string): string {
    const f = join(dir, "metadata.yaml");
    return existsSync(f) ? readFileSync(f, "utf8") : "";
  }

  writeMetadataFile(dir: string, text: string): void {
    writeFileSync(join(dir, "metadata.yaml"), text, { mode: 0o644 });
  }

  // ---- InstancesPort ----

  usedBy(ref: { profile?: string; pool?: string; network?: string; image?: string }, project?: string): string[] {
    return this.instancesWhere(
      (row, ex) =>
        (ref.profile !== undefined && row.profiles.includes(ref.profile)) ||
        (ref.pool !== undefined && Object.values(ex.devices).some((d) => d.type === "disk" && d.pool === ref.pool)) ||
        (ref.network !== undefined && Object.values(ex.devices).some((d) => d.type === "nic" && (d.network === ref.network || d.parent === ref.network))) ||
        (ref.image !== undefined && row.config["volatile.base_image"] === ref.image),
      project,
    );
  }

  /** Instances with a disk device attaching the custom volume (InstancesPort.volumeUsedBy). */
  volumeUsedBy(pool: string, project: string, volume: string): string[] {
    return this.instancesWhere((_row, ex) => Object.values(ex.devices).some((d) => d.type === "disk" && d.pool === pool && d.source === volume && d.path !== "/"), project);
  }

  /** Bytes used by the instance's root volume, when its pool's driver can tell (e.g. from a btrfs qgroup). */
  async rootVolumeUsage(row: InstanceRow, pool: string): Promise<number | undefined> {
    return this.core.ports.storage?.instanceVolumeUsage(row.project, pool, row.name);
  }

  /** Running instances with a disk device attaching the custom volume (InstancesPort.runningVolumeUsers). */
  runningVolumeUsers(pool: string, project: string, volume: string): string[] {
    return this.instancesWhere((row, ex) => this.runtime.isRunning(row) && Object.values(ex.devices).some((d) => d.type === "disk" && d.pool === pool && d.source === volume && d.path !== "/"), project);
  }

  private instancesWhere(match: (row: InstanceRow, ex: { config: Record<string, string>; devices: Devices }) => boolean, project?: string): string[] {
    const out: string[] = [];
    for (const row of this.repo.list(project)) {
      let ex: { config: Record<string, string>; devices: Devices };
      try {
        ex = this.expanded(row);
      } catch {
        ex = { config: row.config, devices: row.devices };
      }
      if (match(row, ex)) out.push(instanceUrl(row.project, row.name));
    }
    return out;
  }

  /** Running instances with their expanded config and devices (InstancesPort.running). */
  running(project?: string): { project: string; name: string; pid: number; config: Record<string, string>; devices: Devices; volumePath: string }[] {
    const out = [];
    for (const row of this.repo.list(project)) {
      if (!this.runtime.isRunning(row)) continue;
      let ex: { config: Record<string, string>; devices: Devices };
      try {
        ex = this.expanded(row);
      } catch {
        ex = { config: row.config, devices: row.devices };
      }
      const lxc = this.runtime.lxcName(row.project, row.name);
      out.push({ project: row.project, name: row.name, pid: row.init_pid, config: ex.config, devices: ex.devices, volumePath: this.runtime.driver.dir(lxc) });
    }
    return out;
  }

  /** The narrow view exec, console and file transfer need (InstancesPort.runtimeOf). */
  runtimeOf(project: string, name: string): PortRuntime {
    const row = this.require(project, name);
    const ex = this.expanded(row).config;
    const status = this.runtime.status(row);
    // Ownership as the files carry it: the map the container runs with, or (stopped) the one
    // its rootfs is shifted to ("[]" until the first start shifts it).
    const onDisk = status === "Stopped" ? row.config["volatile.last_state.idmap"] : undefined;
    const map = parseIdmapJson(onDisk ?? row.config["volatile.idmap.current"] ?? row.config["volatile.idmap.next"]);
    const environment: Record<string, string> = {};
    for (const [k, v] of Object.entries(ex)) if (k.startsWith("environment.")) environment[k.slice("environment.".length)] = v;
    const lxcName = this.runtime.lxcName(project, name);
    return {
      project,
      name,
      lxcName,
      running: status !== "Stopped",
      frozen: status === "Frozen",
      pid: status !== "Stopped" ? row.init_pid : undefined,
      lxcpath: this.runtime.driver.lxcPath,
      rootfs: this.runtime.driver.rootfsLink(lxcName),
      idmap: map.length === 0 ? identityIdMap : idMapOf(map),
      environment,
    };
  }

  /**
   * `lxc publish c1/snap0`: snapshots are read-only, so a copy of the snapshot is shifted back to
   * host-neutral ownership. It lives in the images directory as a ".build-" entry, which the
   * images feature sweeps at start if a crash leaves it behind.
   */
  private async exportSnapshotForPublish(project: string, ref: string): Promise<{ dir: string; architecture: string; release(): Promise<void> }> {
    const src = await this.snapshots.copySource(project, ref);
    const dir = join(this.core.paths.images, `.build-${randomUUID()}`);
    const release = async () => rmSync(dir, { recursive: true, force: true });
    try {
      await run("cp", ["-a", "--reflink=auto", "--", await src.dir(), dir]);
      const last = parseIdmapJson(src.snapshot.config["volatile.last_state.idmap"]);
      if (last.length > 0) await shiftTree(join(dir, "rootfs"), last, []);
    } catch (e) {
      await release();
      throw e;
    }
    return { dir, architecture: src.snapshot.architecture, release };
  }

  snapshotExpiry(project: string, name: string, snapshot: string): string | undefined {
    const row = this.repo.get(project, name);
    return row ? this.snapshots.repo.get(row.id, snapshot)?.expiresAt : undefined;
  }

  async exportForPublish(project: string, name: string): Promise<{ dir: string; architecture: string; release(): Promise<void> }> {
    if (name.includes("/")) return this.exportSnapshotForPublish(project, name);
    const row = this.require(project, name);
    const wasRunning = this.runtime.isRunning(row);
    if (wasRunning) await this.runtime.stop(project, name, { force: false, timeout: 30 });
    const dir = await this.volumeDir(row);
    // Images hold host-neutral ownership: shift the rootfs back (the next start shifts it again).
    await this.runtime.serialize(project, name, async () => {
      const last = parseIdmapJson(this.require(project, name).config["volatile.last_state.idmap"]);
      if (last.length === 0) return;
      await shiftTree(join(dir, "rootfs"), last, []);
      this.repo.patchConfig(project, name, { "volatile.last_state.idmap": "[]" });
    });
    return {
      dir,
      architecture: row.architecture,
      release: async () => {
        if (wasRunning) await this.runtime.start(project, name);
      },
    };
  }
}

/** Remove everything inside a directory (the directory stays). */
export async function emptyDir(dir: string): Promise<void> {
  for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true });
}

/** An id map as the exec/file side uses it (-1 for unmapped ids). */
function idMapOf(map: IdmapEntry[]): IdMap {
  return {
    uid: (u) => toHost(map, "uid", u) ?? -1,
    gid: (g) => toHost(map, "gid", g) ?? -1,
    reverseUid: (u) => toNs(map, "uid", u) ?? -1,
    reverseGid: (g) => toNs(map, "gid", g) ?? -1,
  };
}
