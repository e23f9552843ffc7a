// Evacuating a cluster member and restoring it (POST /1.0/cluster/members/{name}/state), as
// LXD 5.0.2's evacuateClusterMember/restoreClusterMember: each instance here is stopped or
// migrated to the member the scheduler picks, by its `cluster.evacuate` policy and whether its
// devices can follow it (LXD's CanMigrate); restore brings back the instances that came from
// here and starts the ones that were running. Runs on the member being evacuated or restored;
// progress is the operation's `evacuation_progress`.
import type { Logger } from "pino";
import type { ClusterPort } from "../ports.js";
import type { InstanceRow } from "../db/instance-repo.js";
import type { InstanceService } from "../instances/service.js";
import { BadRequest } from "../shared/errors.js";
import { apiUrl, withTarget } from "../shared/urls.js";
import type { ClusterMove } from "./cluster-move.js";

/** Storage drivers whose volumes every member reaches (LXD's Remote drivers). */
const REMOTE_DRIVERS = new Set(["ceph", "cephfs", "cephobject"]);

/**
 * Whether a device lets its instance move to another member (LXD's per-device CanMigrate): the
 * root disk, a disk on a remote pool, a NIC on a managed network (not a physical one), none and
 * tpm do; host paths, unmanaged NICs and host devices do not.
 */
export function deviceCanMigrate(dev: Record<string, string>, look: { poolDriver(pool: string): string | undefined; networkType(network: string): string | undefined }): boolean {
  switch (dev.type) {
    case "disk":
      if (dev.path === "/") return true;
      return !!dev.pool && REMOTE_DRIVERS.has(look.poolDriver(dev.pool) ?? "");
    case "nic":
      if (!dev.network) return false;
      return look.networkType(dev.network) !== "physical";
    case "none":
    case "tpm":
      return true;
    default:
      return false;
  }
}

/** LXD's canMigrate: [migrate, live] from the `cluster.evacuate` policy, else the devices (live only for VMs). */
export function canMigrate(config: Record<string, string>, devices: Record<string, Record<string, string>>, look: Parameters<typeof deviceCanMigrate>[1]): { migrate: boolean; live: boolean } {
  const policy = config["cluster.evacuate"] || "auto";
  if (policy === "migrate") return { migrate: true, live: false };
  if (policy === "live-migrate") return { migrate: true, live: true };
  if (policy === "stop") return { migrate: false, live: false };
  for (const dev of Object.values(devices)) if (!deviceCanMigrate(dev, look)) return { migrate: false, live: false };
  return { migrate: true, live: false };
}

export interface EvacuationDeps {
  cluster: ClusterPort;
  move: ClusterMove;
  poolDriver(pool: string): string | undefined;
  networkType(project: string, network: string): string | undefined;
  log: Logger;
}

type Progress = (m: Record<string, unknown>) => void;

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

export class Evacuation {
  constructor(
    private readonly d: EvacuationDeps,
    private readonly svc: InstanceService,
  ) {}

  /** Whether an instance may move to another member, and live. */
  policy(row: InstanceRow): { migrate: boolean; live: boolean } {
    const ex = this.svc.expanded(row);
    return canMigrate(ex.config, ex.devices, { poolDriver: (p) => this.d.poolDriver(p), networkType: (n) => this.d.networkType(row.project, n) });
  }

  async run(member: string, action: "evacuate" | "restore", progress: Progress): Promise<void> {
    if (member !== this.d.cluster.name()) throw new BadRequest("Evacuation runs on the member itself");
    return action === "evacuate" ? this.evacuate(member, progress) : this.restore(member, progress);
  }

  private local(member: string): InstanceRow[] {
    return this.svc.repo.list().filter((r) => r.node === member);
  }

  /** Stop an instance here: cleanly within its host shutdown timeout, else forced (as LXD). */
  private async stopHere(row: InstanceRow): Promise<void> {
    const { cluster } = this.d;
    const timeout = Number.parseInt(this.svc.expanded(row).config["boot.host_shutdown_timeout"] ?? "", 10);
    try {
      await cluster.withWriteLock(() => this.svc.runtime.stop(row.project, row.name, { force: false, timeout: Number.isFinite(timeout) ? timeout : 30 }));
    } catch (err) {
      this.d.log.warn({ err, instance: row.name, project: row.project }, "failed shutting down instance, forcing stop");
      try {
        await cluster.withWriteLock(() => this.svc.runtime.stop(row.project, row.name, { force: true, timeout: -1 }));
      } catch (e) {
        if (this.svc.runtime.isRunning(this.svc.require(row.project, row.name))) throw new Error(`Failed to stop instance "${row.name}": ${errText(e)}`);
      }
    }
  }

  private async evacuate(member: string, progress: Progress): Promise<void> {
    const { cluster } = this.d;
    const peers = cluster.peers();
    const instances = this.local(member);
    await peers.markEvacuated(member, true);
    try {
      for (const row of instances) {
        const where = `"${row.name}" in project "${row.project}"`;
        const { migrate } = this.policy(row);
        // No CRIU transfer between members: a running instance is stopped first even when its
        // policy asks for a live migration, and started again on its new member.
        const running = this.svc.runtime.isRunning(this.svc.require(row.project, row.name));
        if (running) {
          progress({ evacuation_progress: `Stopping ${where}` });
          await this.stopHere(row);
          // What restore starts again (here, or after migrating it back).
          await cluster.withWriteLock(async () => this.svc.repo.patchConfig(row.project, row.name, { "volatile.last_state.power": "RUNNING" }));
        }
        if (!migrate) continue;
        const target = await peers.schedule();
        if (!target) {
          this.d.log.warn({ instance: row.name, project: row.project }, "no migration target available for instance");
          continue;
        }
        progress({ evacuation_progress: `Migrating ${where} to "${target}"` });
        // The first member evacuated is where it goes back to (several evacuated in a row).
        if (!this.svc.require(row.project, row.name).config["volatile.evacuate.origin"]) {
          await cluster.withWriteLock(async () => this.svc.repo.patchConfig(row.project, row.name, { "volatile.evacuate.origin": member }));
        }
        try {
          await this.d.move.run(row.project, row.name, { target, name: row.name, live: false, instanceOnly: false }, () => undefined);
        } catch (e) {
          throw new Error(`Failed to migrate instance: ${errText(e)}`);
        }
        if (!running) continue;
        progress({ evacuation_progress: `Starting ${where}` });
        await peers.call(target, "PUT", apiUrl(row.project, "instances", row.name, "state"), { action: "start", timeout: -1 });
      }
    } catch (e) {
      await peers.markEvacuated(member, false).catch(() => undefined);
      throw e;
    }
  }

  private async restore(member: string, progress: Progress): Promise<void> {
    const { cluster } = this.d;
    const peers = cluster.peers();
    const all = this.svc.repo.list();
    const local = all.filter((r) => r.node === member);
    const away = all.filter((r) => r.node !== member && r.config["volatile.evacuate.origin"] === member);
    await peers.markEvacuated(member, false);
    try {
      // Those stopped here start again (not those a user had stopped).
      for (const row of local) {
        const cur = this.svc.repo.get(row.project, row.name);
        if (!cur || cur.config["volatile.last_state.power"] !== "RUNNING" || this.svc.runtime.isRunning(cur)) continue;
        progress({ evacuation_progress: `Starting "${row.name}" in project "${row.project}"` });
        try {
          await cluster.withWriteLock(() => this.svc.runtime.start(row.project, row.name));
        } catch (e) {
          throw new Error(`Failed to start instance "${row.name}": ${errText(e)}`);
        }
      }
      // Those migrated away come back, stopped first on the member they are on.
      for (const row of away) {
        const where = `"${row.name}" in project "${row.project}"`;
        progress({ evacuation_progress: `Migrating ${where} from "${row.node}"` });
        const inst = await peers.call(row.node, "GET", apiUrl(row.project, "instances", row.name));
        const running = inst?.status === "Running";
        if (running) {
          progress({ evacuation_progress: `Stopping ${where}` });
          const timeout = Number.parseInt(this.svc.expanded(row).config["boot.host_shutdown_timeout"] ?? "", 10);
          const state = apiUrl(row.project, "instances", row.name, "state");
          try {
            await peers.call(row.node, "PUT", state, { action: "stop", force: false, timeout: Number.isFinite(timeout) ? timeout : 30 });
          } catch {
            await peers.call(row.node, "PUT", state, { action: "stop", force: true, timeout: -1 }).catch((e) => {
              throw new Error(`Failed to stop instance "${row.name}": ${errText(e)}`);
            });
          }
        }
        try {
          await peers.call(row.node, "POST", withTarget(apiUrl(row.project, "instances", row.name), member), { name: row.name, migration: true, live: false });
        } catch (e) {
          throw new Error(`Failed to wait for migration to finish: ${errText(e)}`);
        }
        await cluster.withWriteLock(async () => {
          if (this.svc.repo.get(row.project, row.name)) this.svc.repo.patchConfig(row.project, row.name, { "volatile.evacuate.origin": "" });
        });
        if (!running) continue;
        progress({ evacuation_progress: `Starting ${where}` });
        try {
          await cluster.withWriteLock(() => this.svc.runtime.start(row.project, row.name));
        } catch (e) {
          throw new Error(`Failed to start instance "${row.name}": ${errText(e)}`);
        }
      }
    } catch (e) {
      await peers.markEvacuated(member, true).catch(() => undefined);
      throw e;
    }
  }
}
