// /1.0/instances/{name}/backups (and the /1.0/containers aliases): `lxc export` and friends.
import { collectionOf, instanceResources, instanceTask } from "./instance-task.js";
import { apiUrl } from "../../shared/urls.js";
import { z } from "zod";
import type { OperationManager } from "../../operations/manager.js";
import type { InstanceService } from "../../instances/service.js";
import { route, sendDownload, sync, type Handler, type Route } from "../route.js";

const BackupsPost = z
  .object({
    name: z.string().default(""),
    expires_at: z.string().nullish(),
    instance_only: z.boolean().default(false),
    container_only: z.boolean().default(false),
    optimized_storage: z.boolean().default(false),
    compression_algorithm: z.string().default(""),
  })
  .passthrough();

const BackupPost = z.object({ name: z.string().default("") }).passthrough();

export function backupRoutes(deps: { operations: OperationManager; config: (key: string) => string | undefined }, svc: InstanceService): Route[] {
  const { operations, config } = deps;
  const backups = () => svc.backups;
  const resources = instanceResources;

  const list: Handler = (req) => {
    const row = svc.require(req.project, req.params.name);
    const rows = backups().list(row);
    if (req.recursion > 0) return sync(rows.map((b) => backups().view(b)));
    return sync(rows.map((b) => apiUrl(req.project, collectionOf(req.url), row.name, "backups", b.name)));
  };

  const create: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const body = await req.body(BackupsPost, "api.InstanceBackupsPost");
    const request = {
      name: body.name,
      expiresAt: body.expires_at,
      instanceOnly: body.instance_only || body.container_only,
      optimizedStorage: body.optimized_storage,
      compression: body.compression_algorithm || config("backups.compression_algorithm") || "gzip",
    };
    const backup = backups().checkCreate(row, request);
    const { project } = req;
    return instanceTask(operations, { description: "Backing up instance", project, resources: { ...resources(project, row.name), backups: [`/1.0/backups/${backup}`] } }, async (signal) => backups().create(project, row.name, backup, request, signal));
  };

  const get: Handler = (req) => {
    const row = svc.require(req.project, req.params.name);
    return sync(backups().view(backups().require(row, req.params.backup)));
  };

  const rename: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const body = await req.body(BackupPost, "api.InstanceBackupPost");
    const { backup } = req.params;
    backups().checkRename(row, backup, body.name);
    const { project } = req;
    return instanceTask(operations, { description: "Renaming instance backup", project, resources: resources(project, row.name) }, async () => backups().rename(project, row.name, backup, body.name));
  };

  const del: Handler = (req) => {
    const row = svc.require(req.project, req.params.name);
    const { backup } = req.params;
    backups().require(row, backup);
    const { project } = req;
    return instanceTask(operations, { description: "Removing instance backup", project, resources: resources(project, row.name) }, async () => backups().delete(project, row.name, backup));
  };

  const exportBackup: Handler = (req, reply) => sendDownload(reply, backups().exportFile(req.project, req.params.name, req.params.backup));

  const routes: Route[] = [];
  for (const base of ["/1.0/instances", "/1.0/containers"]) {
    routes.push(
      route(`${base}/:name/backups`, { GET: list, POST: create }, "project"),
      route(`${base}/:name/backups/:backup`, { GET: get, POST: rename, DELETE: del }, "project"),
      route(`${base}/:name/backups/:backup/export`, { GET: exportBackup }, "project"),
    );
  }
  return routes;
}
