// Moving an instance to another member of the cluster (POST /1.0/instances/{name}?target=m,
// LXD 5.0.2's instancePostClusteringMigrate): this member, where the instance lives, offers it
// as a pull-mode migration source and asks the target member (over its HTTPS API, with the
// cluster certificate) to create a copy from it under a temporary name; only once the target
// has the whole copy is the instance removed here, then the copy takes its name there. A
// failure before that point removes the partial copy and leaves the instance where it was
// (started again if it was running). The move is journalled (move-journal.ts) from before the
// copy starts until it ended, so a crash of either daemon in between is settled afterwards: at
// the next start of either member, and when the next move of the instance begins.
import { randomUUID } from "node:crypto";
import type { ClusterPort } from "../ports.js";
import type { OperationManager } from "../operations/manager.js";
import type { InstanceService } from "../instances/service.js";
import { validateInstanceName } from "../instances/names.js";
import { onPath } from "../os/exec.js";
import { BadRequest, InternalError, NotFound } from "../shared/errors.js";
import { apiUrl, withTarget } from "../shared/urls.js";
import type { InstanceMigration } from "./instances.js";
import { MOVE_PREFIX, MoveJournal, settleAll } from "./move-journal.js";

export interface ClusterMoveRequest {
  /** The member to move to. */
  target: string;
  /** The instance's name there ("" or the same: unchanged). */
  name: string;
  live: boolean;
  instanceOnly: boolean;
}

export interface ClusterMoveDeps {
  cluster: ClusterPort;
  operations: OperationManager;
  migration: InstanceMigration;
}

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

export class ClusterMove {
  readonly journal: MoveJournal;
  /** Moves running on this member ("project/name"): one at a time per instance. */
  private readonly moving = new Set<string>();

  constructor(
    private readonly d: ClusterMoveDeps,
    private readonly svc: InstanceService,
  ) {
    this.journal = new MoveJournal(svc.deps.db);
  }

  /**
   * At start: settle the moves this member was the source or the target of that a crash cut
   * short (those that began before `startedAt`: a move begun since is running).
   */
  async recover(startedAt: string, log?: { warn(o: object, m: string): void }): Promise<number> {
    if (!this.d.cluster.clustered()) return 0;
    const records = this.journal.involving(this.d.cluster.name(), startedAt);
    return records.length ? settleAll({ cluster: this.d.cluster, journal: this.journal, svc: this.svc }, records, log) : 0;
  }

  /**
   * The checks LXD makes before it starts the operation (instancePost). `admin`: the client may
   * move instances of a project whose `restricted.cluster.target` blocks targeting (LXD's
   * CheckClusterTargetRestriction).
   */
  async check(project: string, name: string, req: ClusterMoveRequest, admin: boolean): Promise<void> {
    const { cluster } = this.d;
    if (!cluster.clustered()) throw new NotFound("Failed to get target node: Cluster member not found");
    const config = this.svc.deps.ports.projects.projectConfig(project) ?? {};
    if (!admin && config.restricted === "true" && (config["restricted.cluster.target"] || "block") === "block") {
      throw new InternalError("This project doesn't allow cluster member targeting");
    }
    const row = this.svc.require(project, name);
    let status: string;
    try {
      status = await cluster.peers().status(req.target);
    } catch (e) {
      if (e instanceof NotFound) throw new NotFound(`Failed to get target node: ${e.message}`);
      throw e;
    }
    if (status === "Offline") throw new BadRequest("Target node is offline");
    try {
      validateInstanceName(req.name || name);
    } catch (e) {
      throw new BadRequest(errText(e));
    }
    if (this.svc.backups.list(row).length > 0) throw new BadRequest("Instance has backups");
    // LXD 5.0.2 stops it statefully (CRIU) and starts it from that state on the target.
    if (req.live && this.svc.runtime.isRunning(row) && !onPath("criu")) throw new InternalError("Unable to perform container live migration. CRIU isn't installed on the source server");
  }

  /** The operation's work. */
  async run(project: string, name: string, req: ClusterMoveRequest, progress: (m: Record<string, unknown>) => void): Promise<void> {
    const key = `${project}/${name}`;
    if (this.moving.has(key)) throw new Error(`Instance "${name}" is already being moved`);
    this.moving.add(key);
    try {
      await this.runMove(project, name, req, progress);
    } finally {
      this.moving.delete(key);
    }
  }

  private async runMove(project: string, name: string, req: ClusterMoveRequest, progress: (m: Record<string, unknown>) => void): Promise<void> {
    const { cluster } = this.d;
    const peers = cluster.peers();
    const row = this.svc.require(project, name);
    if (req.target === row.node) throw new Error("Target must be different than instance's current location");
    const finalName = req.name || name;
    let uuid = row.config["volatile.uuid"];
    if (!uuid) {
      uuid = randomUUID();
      await cluster.withWriteLock(async () => this.svc.repo.patchConfig(project, name, { "volatile.uuid": uuid! }));
    }
    // A previous move of this instance that a crash cut short: its copy goes first.
    const earlier = this.journal.ofInstance(project, uuid);
    if (earlier.length) {
      const deps = { cluster, journal: this.journal, svc: this.svc };
      if ((await settleAll(deps, earlier)) < earlier.length) throw new Error(`Failed removing the copy left by an interrupted move of "${name}": try again once every member is online`);
    }
    // The copy exists next to the instance for a while: under LXD's temporary name.
    const destName = finalName === name ? `${MOVE_PREFIX}${uuid}` : finalName;
    const origApplyTemplate = row.config["volatile.apply_template"] ?? "";
    const wasRunning = this.svc.runtime.isRunning(row);
    // Live (LXD 5.0.2's instancePostClusteringMigrate): stopped into a CRIU dump in its volume,
    // which the copy carries; the target starts from it.
    const stateful = wasRunning && req.live;
    if (wasRunning) {
      try {
        await cluster.withWriteLock(() => this.svc.runtime.stop(project, name, { force: false, timeout: 30, stateful }));
      } catch (e) {
        throw new Error(`Failed stopping instance "${name}": ${errText(e)}`);
      }
    }
    const record = { project, name, uuid, source: cluster.name(), target: req.target, dest: destName, final: finalName, started_at: new Date().toISOString() };
    await cluster.withWriteLock(async () => this.journal.add(record));
    let copied = false;
    try {
      await this.copyTo(project, name, destName, { ...req, stateful }, progress);
      copied = true;
      // The target has all of it: the instance goes from here (LXD's DeleteInstance on the source).
      await cluster.withWriteLock(() => this.svc.runtime.serialize(project, name, () => this.svc.delete(project, name)));
    } catch (e) {
      if (!copied || this.svc.repo.get(project, name)) {
        // Still here: the partial copy goes (the record stays if the target cannot be told now),
        // and the instance runs again if it ran.
        const removed = await peers.call(req.target, "DELETE", apiUrl(project, "instances", destName)).then(
          () => true,
          (err: { status?: number }) => err?.status === 404 && !this.svc.repo.get(project, destName),
        );
        if (removed) await cluster.withWriteLock(async () => this.journal.remove(project, name)).catch(() => undefined);
        if (wasRunning) await cluster.withWriteLock(() => this.svc.runtime.start(project, name, { stateful })).catch(() => undefined);
      }
      throw e;
    }
    if (destName !== finalName) {
      try {
        await peers.call(req.target, "POST", apiUrl(project, "instances", destName), { name: finalName });
      } catch (e) {
        throw new Error(`Rename instance operation failed: ${errText(e)}`);
      }
    }
    await cluster.withWriteLock(async () => this.journal.remove(project, name));
    // The pending template trigger is the instance's own, not the copy's (as LXD restores it).
    await cluster.withWriteLock(async () => {
      if (this.svc.repo.get(project, finalName)) this.svc.repo.patchConfig(project, finalName, { "volatile.apply_template": origApplyTemplate });
    });
    if (wasRunning) {
      try {
        await peers.call(req.target, "PUT", apiUrl(project, "instances", finalName, "state"), { action: "start", timeout: -1, stateful });
      } catch (e) {
        throw new Error(`Failed starting instance "${name}": ${errText(e)}`);
      }
    }
  }

  /** A pull-mode source here, and the target's create from it (its progress relayed). */
  private async copyTo(project: string, name: string, destName: string, req: ClusterMoveRequest & { stateful: boolean }, progress: (m: Record<string, unknown>) => void): Promise<void> {
    const { cluster, operations, migration } = this.d;
    const peers = cluster.peers();
    const view = this.svc.view(this.svc.require(project, name));
    const source = migration.startSource(project, name, { live: false, instanceOnly: req.instanceOnly });
    const selfUrl = await peers.url(cluster.name());
    const body = {
      name: destName,
      architecture: view.architecture,
      config: view.config,
      devices: view.devices,
      ephemeral: view.ephemeral,
      profiles: view.profiles,
      description: view.description,
      stateful: req.stateful,
      source: {
        type: "migration",
        mode: "pull",
        operation: `${selfUrl}/1.0/operations/${source.id}`,
        certificate: peers.certificate(),
        secrets: source.metadata,
        instance_only: req.instanceOnly,
        "base-image": view.config["volatile.base_image"] ?? "",
      },
    };
    const path = withTarget(apiUrl(project, "instances"), req.target);
    // The transfer's progress, as the source reports it (its secrets left out).
    const relay = setInterval(() => {
      const meta = { ...(operations.get(source.id).metadata ?? {}) } as Record<string, unknown>;
      delete meta.control;
      delete meta.fs;
      if (Object.keys(meta).length) progress(meta);
    }, 500);
    try {
      await peers.call(req.target, "POST", path, body);
    } catch (e) {
      throw new Error(`Copy instance operation failed: ${errText(e)}`);
    } finally {
      await operations.whenDone(source.id);
      clearInterval(relay);
    }
    const result = operations.get(source.id);
    if (result.status_code !== 200) throw new Error(`Copy instance operation failed: ${result.err || result.status}`);
  }
}
