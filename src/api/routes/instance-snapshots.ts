// /1.0/instances/{name}/snapshots (and the /1.0/containers aliases).
import { collectionOf, instanceResources, instanceTask } from "./instance-task.js";
import { apiUrl } from "../../shared/urls.js";
import { z } from "zod";
import type { OperationManager } from "../../operations/manager.js";
import type { InstanceService } from "../../instances/service.js";
import { checkEtag, operation, route, sync, type Handler, type Route } from "../route.js";
import type { InstanceMigration } from "../../migration/instances.js";

const SnapshotsPost = z
  .object({
    name: z.string().default(""),
    stateful: z.boolean().default(false),
    expires_at: z.string().nullish(),
  })
  .passthrough();

const SnapshotPost = z
  .object({
    name: z.string().default(""),
    migration: z.boolean().default(false),
    live: z.boolean().optional(),
    target: z.object({ certificate: z.string().default(""), operation: z.string(), secrets: z.record(z.string(), z.string()) }).nullish(),
  })
  .passthrough();

const SnapshotPut = z.object({ expires_at: z.string().nullish() }).passthrough();

export function snapshotRoutes(deps: { operations: OperationManager; migration: InstanceMigration }, svc: InstanceService): Route[] {
  const { operations, migration } = deps;
  const snaps = () => svc.snapshots;
  const resources = instanceResources;

  const list: Handler = (req) => {
    const row = svc.require(req.project, req.params.name);
    const list = snaps().list(row);
    if (req.recursion > 0) return sync(list.map((s) => snaps().view(row, s)));
    return sync(list.map((s) => apiUrl(req.project, collectionOf(req.url), row.name, "snapshots", s.name)));
  };

  const create: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const body = await req.body(SnapshotsPost, "api.InstanceSnapshotsPost");
    const snap = snaps().checkCreate(row, body);
    const { project } = req;
    return instanceTask(operations, { description: "Snapshotting instance", project, resources: resources(project, row.name) }, async (signal) => snaps().create(project, row.name, snap, body.expires_at, signal, body.stateful));
  };

  const etagOf = (req: { project: string; params: Record<string, string> }) => {
    const row = svc.require(req.project, req.params.name);
    return { expires_at: snaps().require(row, req.params.snap).expiresAt };
  };

  const get: Handler = (req) => {
    const row = svc.require(req.project, req.params.name);
    const s = snaps().require(row, req.params.snap);
    return sync(snaps().view(row, s), { etag: { expires_at: s.expiresAt } });
  };

  const update: Handler = async (req) => {
    checkEtag(req, etagOf(req));
    const body = await req.body(SnapshotPut, "api.InstanceSnapshotPut");
    const { project } = req;
    const { name, snap } = req.params;
    // Upstream names the snapshot as if it were an instance here; clients see the same.
    return instanceTask(operations, { description: "Updating snapshot", project, resources: resources(project, snap) }, async () => svc.runtime.serialize(project, name, async () => snaps().updateExpiry(project, name, snap, body.expires_at)));
  };

  const rename: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const body = await req.body(SnapshotPost, "api.InstanceSnapshotPost");
    const { snap } = req.params;
    if (body.migration) {
      // Migration source for a snapshot (`lxc copy r1:c1/snap0 r2:c2`): sent as an instance without snapshots.
      const target = body.target ? { certificate: body.target.certificate, operation: body.target.operation, websockets: body.target.secrets } : undefined;
      return operation(migration.startSource(req.project, row.name, { live: false, instanceOnly: true, snapshot: snap, target }));
    }
    snaps().checkRename(row, snap, body.name);
    const { project } = req;
    return instanceTask(operations, { description: "Renaming snapshot", project, resources: resources(project, row.name) }, async () => snaps().rename(project, row.name, snap, body.name));
  };

  const del: Handler = (req) => {
    const row = svc.require(req.project, req.params.name);
    const { snap } = req.params;
    snaps().require(row, snap);
    const { project } = req;
    return instanceTask(operations, { description: "Deleting snapshot", project, resources: resources(project, row.name) }, async () => snaps().delete(project, row.name, snap));
  };

  const routes: Route[] = [];
  for (const base of ["/1.0/instances", "/1.0/containers"]) {
    routes.push(
      route(`${base}/:name/snapshots`, { GET: list, POST: create }, "project"),
      route(`${base}/:name/snapshots/:snap`, { GET: get, PUT: update, PATCH: update, POST: rename, DELETE: del }, "project"),
    );
  }
  return routes;
}
