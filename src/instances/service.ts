// Instances: the rules and the database. Creation, updates, renames and deletes live here;
// running containers (start/stop/adoption) are in runtime.ts.
import { randomUUID } from "node:crypto";
import { localMember } from "../db/database.js";

import { BadRequest, Conflict, NotFound } from "../shared/errors.js";

import type { InstancesPort, ProfileRecord } from "../ports.js";
import { InstanceRepo, type InstanceRow } from "../db/instance-repo.js";
import { validateInstanceConfig, isTrue } from "./config-keys.js";
import { checkDeviceValues, dropEmptyDeviceValues } from "../devices/registry.js";
import { ensureRootSubIds, hostRoot, IdmapError, parseIdmapJson, type HostIdSet } from "./idmap.js";
import { computeIdmap } from "./idmap-alloc.js";
import { needsNewInstanceId } from "./cloud-init.js";
import { expand, validateInstanceName } from "./names.js";
import { countRootDisks, duplicateDiskPath } from "../devices/disk.js";
import { AddValidationError } from "../devices/types.js";
import { ProfileChange } from "./profile-change.js";
import type { InstanceRuntime } from "./runtime.js";
import type { InstanceDevices } from "./instance-devices.js";
import type { InitProcess } from "./drivers/types.js";
import { rootDisk, type Devices, type Expanded, type InstanceRecords } from "./rows.js";
import { instanceQueries } from "./queries.js";
import { InstanceCreation, type CheckedCreate } from "./create.js";
import type { SnapshotService } from "./snapshots.js";
import type { BackupService } from "./backups.js";
import type { InstanceRuntime as PortRuntime } from "./runtime-port.js";

export { instanceUrl, STATUS, type Devices } from "./rows.js";
import { instanceUrl, STATUS } from "./rows.js";
import type { CreateRequest, InstancePut, InstanceServiceDeps, InstanceView, InstanceOwner } from "./model.js";
export { emptyDir, volumeConfigForCopy, type CreateRequest, type InstancePut, type InstanceServiceDeps, type InstanceView, type InstanceOwner } from "./model.js";

/** The keys a container's id map is computed from. */
const IDMAP_KEYS = ["raw.idmap", "security.idmap.isolated", "security.idmap.base", "security.idmap.size", "security.privileged"];

export class InstanceService implements InstancesPort, InstanceRecords, InstanceOwner {
  readonly repo: InstanceRepo;
  runtime!: InstanceRuntime;
  devices!: InstanceDevices;
  snapshots!: SnapshotService;
  backups!: BackupService;
  private hostIds?: HostIdSet;

  constructor(readonly deps: InstanceServiceDeps) {
    this.repo = new InstanceRepo(deps.db);
  }

  idSet(): HostIdSet {
    return (this.hostIds ??= ensureRootSubIds());
  }

  get(project: string, name: string): InstanceRow | undefined {
    return this.repo.get(project, name);
  }

  all(): InstanceRow[] {
    return this.repo.list();
  }

  setVolatile(project: string, name: string, changes: Record<string, string>): void {
    if (this.repo.get(project, name)) this.repo.patchConfig(project, name, changes);
  }

  /** With `volatile`, those keys change in the same transaction (one commit for a start). */
  setInit(project: string, name: string, init: InitProcess | undefined, lastUsedAt?: string, volatile?: Record<string, string>): void {
    this.deps.db.transaction(() => {
      this.repo.setRuntime(project, name, { pid: init?.pid ?? 0, start: init?.startTime ?? "" }, lastUsedAt);
      if (volatile) this.setVolatile(project, name, volatile);
    })();
  }

  setStateful(project: string, name: string, stateful: boolean): void {
    this.repo.setStateful(project, name, stateful);
  }

  require(project: string, name: string): InstanceRow {
    const row = this.repo.get(project, name);
    if (!row) throw new NotFound("Instance not found");
    return row;
  }

  expanded(row: Pick<InstanceRow, "project" | "profiles" | "config" | "devices">): Expanded {
    const memo = this.profileMemo;
    const get = (p: string) => {
      if (!memo) return this.profiles().get(row.project, p);
      const k = `${row.project}/${p}`;
      let v = memo.get(k);
      if (!v) memo.set(k, (v = this.profiles().get(row.project, p)));
      return v;
    };
    const profiles = row.profiles.map(get);
    return {
      config: expand([...profiles.map((p) => p.config), row.config]),
      devices: expand([...profiles.map((p) => p.devices), row.devices]),
    };
  }

  private profileMemo?: Map<string, ReturnType<ReturnType<InstanceService["profiles"]>["get"]>>;

  /** Run the synchronous `fn` with each profile read once (listing many instances). */
  batch<T>(fn: () => T): T {
    if (this.profileMemo) return fn();
    this.profileMemo = new Map();
    try {
      return fn();
    } finally {
      this.profileMemo = undefined;
    }
  }

  /** The statuses of this member's instances among `rows`, all read at once off the event loop. */
  async readStatuses(rows: InstanceRow[]): Promise<Map<InstanceRow, string>> {
    const me = localMember(this.deps.db);
    const local = rows.filter((r) => !r.node || r.node === me);
    const statuses = await this.runtime.statuses(local);
    return new Map(local.map((r, i) => [r, statuses[i]]));
  }

  /** As `batch`, with statuses already read (`readStatuses`) answering `status` meanwhile. */
  batchWithStatuses<T>(statuses: Map<InstanceRow, string>, fn: () => T): T {
    this.statusMemo = statuses;
    try {
      return this.batch(fn);
    } finally {
      this.statusMemo = undefined;
    }
  }

  private statusMemo?: Map<InstanceRow, string>;

  private profiles() {
    return this.deps.ports.profiles;
  }

  /** The status of an instance: from the runtime here, or as its member last reported it. */
  status(row: InstanceRow): string {
    const known = this.statusMemo?.get(row);
    if (known) return known;
    if (row.node && row.node !== localMember(this.deps.db)) return this.deps.ports.cluster.remoteStatus(row.project, row.name, row.node) ?? "Error";
    return this.runtime.status(row);
  }

  localStatuses(): Record<string, string> {
    const me = localMember(this.deps.db);
    const out: Record<string, string> = {};
    for (const row of this.repo.list()) if (row.node === me || row.node === "") out[`${row.project}/${row.name}`] = this.runtime.status(row);
    return out;
  }

  view(row: InstanceRow): InstanceView {
    const ex = this.expanded(row);
    const status = this.status(row);
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
      location: row.node || "none",
      type: row.type,
      project: row.project,
    };
  }

  list(project: string | undefined): InstanceRow[] {
    return this.repo.list(project);
  }

  /** The root disk device of an expanded device set: LXD's error when absent. */
  static rootDisk = rootDisk;

  /** Validate config and devices the way LXD does before anything is saved. */
  validate(project: string, name: string, config: Record<string, string>, devices: Devices, profiles: string[], expandedOnly = false): void {
    validateInstanceConfig(config);
    for (const p of profiles) this.profiles().get(project, p);
    const ex = this.expanded({ project, profiles, config, devices });
    if (!expandedOnly) validateInstanceConfig(ex.config);
    const dup = duplicateDiskPath(devices);
    if (dup) throw new Error(`Invalid devices: Device validation failed for "${dup.name}": More than one disk device uses the same path "${dup.path}"`);
    for (const [dev, cfg] of Object.entries(devices)) {
      let device;
      try {
        checkDeviceValues(cfg);
        device = this.devices.make({ project, name, config: ex.config }, dev, cfg);
      } catch (e) {
        // An unknown type fails while loading the device, as LXD words it.
        const msg = (e as Error).message;
        throw new Error(msg === "Unsupported device type" ? `Invalid devices: Device validation failed for "${dev}": Failed loading device "${dev}": ${msg}` : `Invalid devices: Device validation failed for "${dev}": ${msg}`);
      }
      try {
        device.validate();
        // As LXD's disk validation: two local disks may not share a path (so neither can one
        // custom volume be attached twice at the same place).
        if (cfg.type === "disk" && cfg.path && Object.values(devices).filter((d) => d.type === "disk" && d.path === cfg.path).length > 1) {
          throw new Error(`More than one disk device uses the same path "${cfg.path}"`);
        }
      } catch (e) {
        if (e instanceof AddValidationError) throw new Error(`Failed add validation for device "${dev}": ${e.message}`);
        throw new Error(`Invalid devices: Device validation failed for "${dev}": ${(e as Error).message}`);
      }
    }
    if (countRootDisks(ex.devices) > 1) throw new Error("Invalid devices: Failed detecting root disk device: More than one root device found");
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

  private computeIdmap(project: string, name: string, config: Record<string, string>): { base: number; map: string } {
    return this.batch(() => computeIdmap(this.idSet(), () => this.repo.list(), (r) => this.expanded(r), { project, name }, config));
  }

  // ---- creation (create.ts) ----

  private readonly creation = new InstanceCreation(this);
  readonly checkCreate = (project: string, req: CreateRequest): CheckedCreate => this.creation.checkCreate(project, req);
  readonly assertNotCreating = (project: string, name: string, action: string): void => this.creation.assertNotCreating(project, name, action);
  /** At start: remove the instances whose create a crash interrupted. */
  readonly recoverCreates = (opts?: { leave?: (name: string) => boolean }): Promise<void> => this.creation.recover(opts);
  readonly create = (project: string, req: CreateRequest, checked: CheckedCreate, signal: AbortSignal, onMetadata?: (patch: Record<string, unknown>) => void): Promise<void> =>
    this.creation.create(project, req, checked, signal, onMetadata);

  /** PUT (replace) or PATCH (merge) the writable fields. Throws "Invalid config: ..." as a 500, as LXD. */
  async update(project: string, name: string, put: InstancePut, mode: "put" | "patch"): Promise<void> {
    const row = this.require(project, name);
    let config: Record<string, string>;
    let devices: Devices;
    if (mode === "patch") {
      config = { ...row.config, ...(put.config ?? {}) };
      devices = dropEmptyDeviceValues({ ...row.devices, ...(put.devices ?? {}) });
    } else {
      config = { ...(put.config ?? {}) };
      // Volatile keys are the daemon's: keep them unless the client sends a value.
      for (const [k, v] of Object.entries(row.config)) if (k.startsWith("volatile.") && !(k in config)) config[k] = v;
      devices = dropEmptyDeviceValues(put.devices ?? {});
    }
    for (const [k, v] of Object.entries(config)) if (v === "" && mode === "patch") delete config[k];
    // As LXD: a PUT without profiles (`lxc profile assign c ""` sends null) leaves none.
    const profiles = put.profiles ?? (mode === "patch" ? row.profiles : []);
    // The project's limits and restrictions first (as LXD), over the config with its profiles.
    this.deps.ports.projects.allowInstanceUpdate(project, { name, type: row.type, config, devices, profiles }, row.config);
    this.validate(project, name, config, devices, profiles);
    const next = { ...row, config, devices, profiles, description: put.description ?? (mode === "patch" ? row.description : ""), ephemeral: put.ephemeral ?? (mode === "patch" ? row.ephemeral : false), architecture: put.architecture || row.architecture };
    const before = this.expanded(row);
    const after = this.expanded(next);
    // As LXD: a changed raw.lxc is loaded into liblxc now, so a key it does not know is refused.
    if ((before.config["raw.lxc"] ?? "") !== (after.config["raw.lxc"] ?? "") && after.config["raw.lxc"]) await this.runtime.driver.checkRawConfig?.(after.config["raw.lxc"]);
    // As LXD's user-requested Update, which loads the new config into liblxc: with nvidia.runtime
    // on, a missing hook or nvidia-container-cli refuses the change (so any change, while on).
    try {
      this.runtime.driver.preflight?.(after.config);
    } catch (e) {
      throw new Error(`Initialize LXC: ${(e as Error).message}`);
    }
    const rootBefore = InstanceService.rootDisk(before.devices);
    const rootAfter = InstanceService.rootDisk(after.devices);
    // Moving to another pool is `lxc move --storage`, never a config edit (as LXD).
    if (rootBefore.pool !== rootAfter.pool) throw new BadRequest(`Cannot update root disk device pool name to "${rootAfter.pool}"`);
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
    const sizeBefore = before.devices[rootBefore.name]?.size ?? "";
    const sizeAfter = after.devices[rootAfter.name]?.size ?? "";
    if (sizeBefore !== sizeAfter) await this.deps.ports.storage.setInstanceVolumeQuota?.(project, rootAfter.pool, name, sizeAfter);
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
    this.deps.events.lifecycle("instance-updated", instanceUrl(project, name), { project });
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
    await this.devices.remove(row, ex);
    let pool: string | undefined;
    try {
      pool = InstanceService.rootDisk(ex.devices).pool;
    } catch {
      pool = undefined;
    }
    if (pool) await this.deps.ports.storage.deleteInstanceVolume(row.project, pool, row.name);
    // The driver's host state: logs, device state, seccomp policy (as LXD removes them).
    this.runtime.driver.delete({ project: row.project, name: row.name });
    this.repo.delete(row.project, row.name);
    this.backups.instanceDeleted(row.project, row.name);
    this.deps.events.lifecycle("instance-deleted", instanceUrl(row.project, row.name), { project: row.project });
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
    const storage = this.deps.ports.storage;
    await storage.renameInstanceVolume(project, pool, name, to);
    // Host state named after the instance (static DHCP host files) moves to the new name.
    await this.devices.forget(row, this.expanded(row));
    try {
      this.runtime.driver.rename({ project, name }, { project, name: to });
      const dir = await storage.mountInstanceVolume(project, pool, to);
      this.runtime.driver.create({ project, name: to }, dir);
      this.repo.rename(project, name, to);
      this.backups.instanceRenamed(project, name, to);
      // A pending trigger (an instance never started) is kept: its templates then see the new name.
      if (!row.config["volatile.apply_template"] && opts.applyTemplate !== false) this.repo.patchConfig(project, to, { "volatile.apply_template": "rename" });
      // A new name is a new cloud-init instance (LXD resets the instance-id on rename).
      this.repo.patchConfig(project, to, { "volatile.cloud-init.instance-id": randomUUID() });
      const renamed = this.require(project, to);
      await this.devices.add(renamed, this.expanded(renamed));
    } catch (e) {
      await storage.renameInstanceVolume(project, pool, to, name).catch(() => {});
      throw e;
    }
    this.deps.events.lifecycle("instance-renamed", instanceUrl(project, to), { project, context: { old_name: name } });
  }

  // ---- metadata.yaml and templates (in the instance volume) ----

  async volumeDir(row: InstanceRow): Promise<string> {
    const pool = InstanceService.rootDisk(this.expanded(row).devices).pool;
    return this.deps.ports.storage.mountInstanceVolume(row.project, pool, row.name);
  }

  // ---- InstancesPort ----

  private readonly queries = instanceQueries(this, () => this.snapshots);
  readonly usedBy: InstancesPort["usedBy"] = (ref, project) => this.queries.usedBy(ref, project);
  readonly volumeUsedBy = (pool: string, project: string, volume: string) => this.queries.volumeUsedBy(pool, project, volume);
  readonly runningVolumeUsers = (pool: string, project: string, volume: string) => this.queries.runningVolumeUsers(pool, project, volume);
  readonly nicsOn = (network: string) => this.queries.nicsOn(network);
  readonly hostInterfacesInUse = () => this.queries.hostInterfacesInUse();
  readonly running = (project?: string) => this.queries.running(project);
  readonly runtimeOf = (project: string, name: string): PortRuntime => this.queries.runtimeOf(project, name);
  readonly snapshotExpiry = (project: string, name: string, snapshot: string) => this.queries.snapshotExpiry(project, name, snapshot);
  readonly exportForPublish: InstancesPort["exportForPublish"] = (project, name) => this.queries.exportForPublish(project, name);

  /** Set by the instances feature (InstanceRecovery, which needs the watcher). */
  recovery!: {
    dependencies(project: string, backup: Record<string, unknown>): string[];
    recover(pool: string, project: string, name: string, backup: Record<string, unknown>): Promise<void>;
  };
  instanceExists(project: string, name: string): boolean {
    return this.repo.get(project, name) !== undefined;
  }
  recoverDependencies(project: string, backup: Record<string, unknown>): string[] {
    return this.recovery.dependencies(project, backup);
  }
  async recoverInstance(pool: string, project: string, name: string, backup: Record<string, unknown>): Promise<void> {
    await this.recovery.recover(pool, project, name, backup);
  }

  checkProfileChange(profileProject: string, before: ProfileRecord, after: ProfileRecord): void {
    new ProfileChange(this).checkRootDisk(profileProject, before, after);
  }

  applyProfileChange(profileProject: string, before: ProfileRecord): Promise<void> {
    return new ProfileChange(this).applyAll(profileProject, before);
  }

  /** Containers attaching the custom volume, with their root's host ids (InstancesPort.volumeUserRoots). */
  volumeUserRoots(pool: string, project: string, volume: string): { name: string; uid: number; gid: number; running: boolean }[] {
    return this.repo.list(project).flatMap((row) => {
      let ex;
      try {
        ex = this.expanded(row);
      } catch {
        return [];
      }
      if (!Object.values(ex.devices).some((d) => d.type === "disk" && d.pool === pool && d.source === volume && d.path !== "/")) return [];
      const running = this.runtime.isRunning(row);
      const map = parseIdmapJson(running ? (row.config["volatile.idmap.current"] ?? row.config["volatile.last_state.idmap"]) : row.config["volatile.idmap.next"]);
      return [{ name: row.name, ...hostRoot(map), running }];
    });
  }

  /** Bytes used by the instance's root volume, when its pool's driver can tell (e.g. from a btrfs qgroup). */
  async rootVolumeUsage(row: InstanceRow, pool: string): Promise<number | undefined> {
    return this.deps.ports.storage.instanceVolumeUsage(row.project, pool, row.name);
  }
}
