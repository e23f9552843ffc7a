// Moving an instance inside this server (instance_pool_move, instance_project_move): POST
// /1.0/instances/{name} with {migration: true, pool | project}. As upstream, the instance is
// copied to its new place (under a temporary name when it keeps its name on the same
// project), with its snapshots unless instance_only, keeping its volatile state (MACs, uuid);
// then the original is deleted and the copy takes its name.
import { randomUUID } from "node:crypto";
import { BadRequest } from "../shared/errors.js";
import { InstanceService, type CreateRequest } from "./service.js";

export interface LocalMove {
  /** The new name (the current one when empty). */
  name: string;
  pool?: string;
  project?: string;
  instanceOnly: boolean;
  /** Stateful (live) move; absent in the request means true, as upstream. */
  live: boolean;
}

/** Checks made before the operation starts. */
export function checkLocalMove(svc: InstanceService, project: string, name: string, req: LocalMove): void {
  svc.require(project, name);
  if (req.pool !== undefined) svc.deps.ports.storage.assertPool(req.pool);
  if (req.pool === undefined && req.project === undefined) throw new BadRequest("No pool or project given");
}

export async function moveLocally(svc: InstanceService, project: string, name: string, req: LocalMove, signal: AbortSignal): Promise<void> {
  const row = svc.require(project, name);
  const byPool = req.pool !== undefined && req.pool !== "";
  const targetProject = byPool ? project : req.project!;
  const newName = req.name || row.name;
  // A running instance moves live: stopped into a CRIU dump that travels in its volume, and
  // started from it at its new place (LXD's instancePostPoolMigration).
  const statefulStart = svc.runtime.isRunning(row);
  if (statefulStart) {
    if (!req.live) throw new BadRequest(`Instance must be stopped to move between ${byPool ? "pools" : "projects"} statelessly`);
    await svc.runtime.stop(project, name, { force: false, timeout: -1, stateful: true });
  }
  const ex = svc.expanded(row);
  const root = InstanceService.rootDisk(ex.devices);
  const devices = structuredClone(row.devices);
  devices[root.name] = { ...ex.devices[root.name], ...(byPool ? { pool: req.pool! } : {}) };
  const sameSlot = targetProject === project && newName === row.name;
  const copyName = sameSlot ? `lxd-move-of-${row.config["volatile.uuid"] ?? randomUUID()}` : newName;
  const create: CreateRequest = {
    name: copyName,
    architecture: row.architecture,
    config: { ...row.config },
    devices,
    ephemeral: row.ephemeral,
    profiles: row.profiles,
    description: row.description,
    source: { type: "copy", source: row.name, project, instanceOnly: req.instanceOnly },
    move: true,
    stateful: statefulStart,
  };
  const checked = svc.checkCreate(targetProject, create);
  await svc.create(targetProject, create, checked, signal);
  try {
    await svc.runtime.serialize(project, name, () => svc.destroy(svc.require(project, name)));
  } catch (e) {
    // The original stays; the copy goes, so nothing is left half moved.
    await svc.destroy(svc.require(targetProject, copyName)).catch(() => {});
    throw e;
  }
  if (copyName !== newName) await svc.runtime.serialize(targetProject, copyName, () => svc.rename(targetProject, copyName, newName, { applyTemplate: false }));
  if (statefulStart) await svc.runtime.start(targetProject, newName, { stateful: true });
}
