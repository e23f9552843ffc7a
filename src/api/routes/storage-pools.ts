import { z } from "zod";
import type { OperationManager } from "../../operations/manager.js";
import type { PoolService } from "../../storage/pool-service.js";
import type { VolumeBackupService } from "../../storage/volume-backups.js";
import type { VolumeSnapshotService } from "../../storage/volume-snapshots.js";
import type { VolumeCopyService } from "../../storage/volume-copy.js";
import type { VolumeMigration } from "../../migration/volumes.js";
import { sinkOperation } from "../../migration/channel.js";
import { BadRequest, NotImplemented } from "../../shared/errors.js";
import { filterUsedBy, isAdmin } from "../access.js";
import { StoragePoolPut, StoragePoolsPost, StorageVolumePut, StorageVolumesPost } from "../../shared/schemas/storage.js";
import { checkEtag, created, operation, sendDownload, route, sync, type ApiRequest, type Handler, type Result, type Route } from "../route.js";
import { apiUrl } from "../../shared/urls.js";
import type { PoolMembers } from "../../storage/pool-members.js";
import { fromMember } from "../access.js";

const VolumeSnapshotsPost = z.object({ name: z.string().nullish().transform((n) => n ?? ""), expires_at: z.string().nullish() }).passthrough();
const VolumeSnapshotPost = z.object({ name: z.string().nullish().transform((n) => n ?? "") }).passthrough();
const VolumeBackupsPost = z
  .object({
    name: z.string().nullish().transform((n) => n ?? ""),
    expires_at: z.string().nullish(),
    volume_only: z.boolean().nullish(),
    optimized_storage: z.boolean().nullish(),
    compression_algorithm: z.string().nullish(),
  })
  .passthrough();
const VolumeSnapshotPut = z.object({ description: z.string().nullish(), expires_at: z.string().nullish() }).passthrough();

const VolumeSource = z
  .object({
    type: z.string().nullish(),
    name: z.string().nullish(),
    pool: z.string().nullish(),
    project: z.string().nullish(),
    mode: z.string().nullish(),
    operation: z.string().nullish(),
    certificate: z.string().nullish(),
    secrets: z.record(z.string(), z.string()).nullish(),
    volume_only: z.boolean().nullish(),
    refresh: z.boolean().nullish(),
  })
  .passthrough();
const VolumeMigrationPost = z
  .object({
    name: z.string().nullish().transform((n) => n ?? ""),
    pool: z.string().nullish(),
    project: z.string().nullish(),
    migration: z.boolean().nullish(),
    volume_only: z.boolean().nullish(),
    target: z.object({ certificate: z.string().default(""), operation: z.string(), secrets: z.record(z.string(), z.string()) }).nullish(),
  })
  .passthrough();

export interface StoragePoolRouteDeps {
  operations: OperationManager;
  config: (key: string) => string | undefined;
  members: PoolMembers;
}

export function storagePoolRoutes(deps: StoragePoolRouteDeps, pools: PoolService, snapshots: VolumeSnapshotService, backups: VolumeBackupService, moves: { copies: VolumeCopyService; migration: VolumeMigration }): Route[] {
  const { operations, config, members } = deps;
  const volumes = pools.volumes;
  const task = (req: ApiRequest, description: string, resources: Record<string, string[]>, work: (signal: AbortSignal) => Promise<unknown>): Result =>
    operation(operations.create({ class: "task", description, project: req.project, resources, run: async (ctx) => void (await work(ctx.signal)) }));
  const poolEtag = (name: string, memberSpecific: boolean) => {
    const p = pools.pool(name);
    return [p.name, p.driver, p.description, members.configFor(p, memberSpecific)];
  };
  const update = (mode: "replace" | "merge") => async (req: ApiRequest) => {
    const body = await req.body(StoragePoolPut, "StoragePoolPut");
    // Another member's cluster-wide update: this host only (that member wrote the record).
    if (fromMember(req)) {
      await pools.applyUpdateHere(req.params.name, body.config ?? {});
      return sync({});
    }
    if (members.clustered() && req.query.target) {
      // One member's own keys (the router sent the request to that member).
      const p = members.row(req.params.name);
      checkEtag(req, [p.name, p.driver, p.description, members.configFor(p, true)]);
      await members.updateHere(req.params.name, { description: body.description ?? "", config: body.config ?? {} }, mode);
      return sync({});
    }
    members.checkGlobalUpdate(req.params.name);
    checkEtag(req, poolEtag(req.params.name, false));
    await pools.updatePool(req.params.name, { ...body, config: members.updateRequest(req.params.name, body.config ?? {}) }, mode);
    await members.updateEverywhere(req.params.name);
    return sync({});
  };
  const listVolumes = (req: ApiRequest) => {
    // ?target= (served by that member): its own volumes and the shared ones only (LXD's memberSpecific listing).
    const list = volumes.listVolumes(req.params.pool, req.project, req.params.type, !req.query.target);
    return sync(req.recursion > 0 ? list.map((v) => volumes.volumeView(v)) : list.map((v) => volumes.volumeUrl(v)));
  };
  /** `lxc storage volume import`: the body is a backup tarball, received before the operation starts (as LXD). */
  const importVolume: Handler = async (req) => {
    const header = (h: string) => {
      const v = req.stream.headers[h];
      return Array.isArray(v) ? v[0] : v;
    };
    if (req.params.type !== undefined && req.params.type !== "custom") throw new BadRequest(`Invalid storage volume type "${req.params.type}"`);
    const received = await backups.receive(req.stream);
    let plan: Awaited<ReturnType<typeof backups.inspect>>;
    try {
      plan = await backups.inspect(req.params.pool, req.project, received.file, header("x-lxd-name") || undefined);
    } catch (e) {
      received.discard();
      throw e;
    }
    const project = req.project;
    return task(req, "Restoring custom volume backup", { storage_volumes: [`/1.0/storage_volumes/${plan.name}`] }, async (signal) => {
      try {
        await backups.restore(project, received.file, plan, signal);
      } finally {
        received.discard();
      }
    });
  };
  const createVolume = async (req: ApiRequest, reply: Parameters<Handler>[1]) => {
    if (/^application\/octet-stream\b/i.test(String(req.stream.headers["content-type"] ?? ""))) return importVolume(req, reply);
    const body = await req.body(StorageVolumesPost, "StorageVolumesPost");
    if (body.source?.type) return createFromSource(req, body);
    await volumes.createCustomVolume(req.params.pool, req.project, { ...body, type: req.params.type ?? body.type });
    return sync({});
  };
  /** Volume create with source.type copy (this server, maybe another pool or project) or migration (a peer). */
  const createFromSource = (req: ApiRequest, body: z.infer<typeof StorageVolumesPost>): Result => {
    const source = VolumeSource.parse(body.source);
    const type = req.params.type ?? body.type;
    if (type !== "custom") throw new BadRequest(`Currently not allowed to create storage volumes of type "${type}"`);
    const request = { name: body.name, description: body.description, config: body.config, content_type: body.content_type };
    const { project } = req;
    const pool = req.params.pool;
    const resources = { storage_volumes: [`/1.0/storage-pools/${pool}/volumes/custom/${body.name}`] };
    if (source.type === "copy") {
      const from = { pool: source.pool || pool, project: source.project || project, name: source.name ?? "", volumeOnly: source.volume_only ?? false, refresh: source.refresh ?? false };
      if (!from.name) throw new BadRequest("No source volume name supplied");
      moves.copies.source(from.pool, from.project, from.name, { snapshots: true });
      moves.copies.checkTarget(pool, project, request, from.refresh);
      return task(req, "Copying storage volume", resources, (signal) => moves.copies.copy(pool, project, request, from, signal));
    }
    if (source.type === "migration") {
      if (source.mode !== "pull" && source.mode !== "push") throw new BadRequest(`Unknown migration mode "${source.mode ?? ""}"`);
      const sink = { mode: source.mode, operation: source.operation ?? undefined, certificate: source.certificate ?? undefined, secrets: source.secrets ?? {}, refresh: source.refresh ?? false, instanceOnly: source.volume_only ?? false, live: false } as const;
      const plan = moves.migration.checkSink(pool, project, request, sink);
      const run = (signal: AbortSignal) => moves.migration.sink(pool, project, request, sink, plan, signal);
      if (plan.sockets) {
        return operation(sinkOperation(operations, { description: "Creating storage volume", project, resources }, plan.sockets, run));
      }
      return task(req, "Creating storage volume", resources, run);
    }
    throw new BadRequest(`Unknown source type "${source.type}"`);
  };
  const volumeEtag = (req: ApiRequest) => {
    const v = volumes.volumeView(pools.getVolume(req.params.pool, req.project, req.params.type, req.params.volume));
    return [v.name, v.type, v.description, v.config];
  };
  const updateVolume = (mode: "replace" | "merge") => async (req: ApiRequest) => {
    const body = await req.body(StorageVolumePut, "StorageVolumePut");
    checkEtag(req, volumeEtag(req));
    const { pool, type, volume } = req.params;
    // A restore comes first; the config is then applied only when the body carries one, as upstream.
    if (body.restore) {
      const v = pools.getVolume(pool, req.project, type, volume);
      if (v.type !== "custom") throw new NotImplemented();
      await snapshots.restore(pool, req.project, volume, body.restore);
      if (!body.configGiven) return sync({});
    }
    await volumes.updateCustomVolume(pool, req.project, type, volume, body, mode);
    return sync({});
  };
  const snapshotParams = (req: ApiRequest) => [req.params.pool, req.project, req.params.volume, req.params.snapshot] as const;
  const customSnapshot = (req: ApiRequest) => {
    pools.getVolume(req.params.pool, req.project, req.params.type, req.params.volume);
    return snapshots.require(...snapshotParams(req));
  };
  /** VolumeTypeNameToDBType: an unknown type is LXD's 400; known non-custom types are not served here. */
  const customOnly = (type: string) => {
    if (!["container", "virtual-machine", "image", "custom"].includes(type)) throw new BadRequest("Invalid storage volume type name");
    if (type !== "custom") throw new NotImplemented();
  };
  const updateSnapshot = (mode: "replace" | "merge") => async (req: ApiRequest) => {
    if (req.params.type === "container") {
      // An instance snapshot's volume: only its description (LXD's UpdateInstanceSnapshot).
      const v = volumes.getVolumeSnapshot(req.params.pool, req.project, req.params.type, req.params.volume, req.params.snapshot);
      const view = volumes.volumeSnapshotView(v, true);
      checkEtag(req, [view.description, view.expires_at]);
      const body = await req.body(VolumeSnapshotPut, "StorageVolumeSnapshotPut");
      volumes.updateInstanceSnapshotVolume(v, mode === "merge" && body.description == null ? v.description : (body.description ?? ""));
      return sync({});
    }
    customOnly(req.params.type);
    checkEtag(req, snapshots.etag(customSnapshot(req)));
    const body = await req.body(VolumeSnapshotPut, "StorageVolumeSnapshotPut");
    snapshots.update(...snapshotParams(req), body, mode);
    return sync({});
  };
  /** Non-admins see no pool config (it may hold secrets) and only used_by entries of their projects, as LXD. */
  const shown = <V extends { config: unknown; used_by: string[] | null }>(req: ApiRequest, v: V): V =>
    isAdmin(req.requestor) ? v : { ...v, config: null, used_by: filterUsedBy(req.requestor, v.used_by) };
  return [
    route("/1.0/storage-pools", {
      GET: async (req) => {
        const list = members.listRows();
        return sync(req.recursion > 0 ? await Promise.all(list.map(async (p) => shown(req, await members.view(p, false)))) : list.map((p) => `/1.0/storage-pools/${p.name}`));
      },
      POST: async (req) => {
        const body = await req.body(StoragePoolsPost, "StoragePoolsPost");
        const config = body.config ?? {};
        const request = { ...body, config };
        // Another member's cluster-wide create: this member's part only (its config as created back).
        if (fromMember(req)) return sync(await members.createHere(request));
        const target = req.query.target;
        if (members.clustered() && target) await members.createPending(target, request);
        else if (await members.needsCluster(body.name)) await members.createEverywhere(request);
        else {
          await pools.createPool(body);
          members.recordCreatedHere(body.name);
        }
        return created(`/1.0/storage-pools/${body.name}`, null);
      },
    }, { GET: "authenticated", POST: "admin" }),
    route("/1.0/storage-pools/:name", {
      GET: async (req) => {
        const view = shown(req, await members.view(members.row(req.params.name), !!req.query.target));
        return sync(view, { etag: [view.name, view.driver, view.description, view.config] });
      },
      PUT: update("replace"),
      PATCH: update("merge"),
      DELETE: async (req) => {
        if (fromMember(req)) await members.deleteHere(req.params.name);
        else if (members.clustered()) await members.deleteEverywhere(req.params.name);
        else await pools.deletePool(req.params.name);
        return sync({});
      },
    }, { GET: "authenticated" }),
    route("/1.0/storage-pools/:name/resources", {
      GET: async (req) => sync(await pools.resources(req.params.name)),
    }, "authenticated"),
    route("/1.0/storage-pools/:pool/volumes", { GET: listVolumes, POST: createVolume }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type", { GET: listVolumes, POST: createVolume }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume", {
      GET: (req) => sync(volumes.volumeView(pools.getVolume(req.params.pool, req.project, req.params.type, req.params.volume)), { etag: volumeEtag(req) }),
      PUT: updateVolume("replace"),
      PATCH: updateVolume("merge"),
      POST: async (req) => {
        const body = await req.body(VolumeMigrationPost, "StorageVolumePost");
        const { pool, volume } = req.params;
        if (body.migration || (body.pool && body.pool !== pool) || (body.project && body.project !== req.project)) {
          if (req.params.type !== "custom") throw new BadRequest(`Invalid storage volume type "${req.params.type}"`);
          const resources = { storage_volumes: [`/1.0/storage-pools/${pool}/volumes/custom/${volume}`] };
          if (body.migration) {
            const target = body.target ? { certificate: body.target.certificate, operation: body.target.operation, websockets: body.target.secrets } : undefined;
            return operation(moves.migration.startSource(pool, req.project, volume, { volumeOnly: body.volume_only ?? false, target }));
          }
          // A move to another pool and/or project on this server (a copy, then the source goes).
          const to = { pool: body.pool || pool, project: body.project || req.project, name: body.name || volume };
          moves.copies.checkMove(pool, req.project, volume, to);
          const project = req.project;
          return task(req, "Moving storage volume", resources, (signal) => moves.copies.move(pool, project, volume, to, signal));
        }
        await volumes.renameCustomVolume(req.params.pool, req.project, req.params.type, req.params.volume, body.name);
        return sync(null);
      },
      DELETE: async (req) => {
        await volumes.deleteCustomVolume(req.params.pool, req.project, req.params.type, req.params.volume);
        return sync({});
      },
    }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/snapshots", {
      GET: (req) => {
        const list = volumes.listVolumeSnapshots(req.params.pool, req.project, req.params.type, req.params.volume);
        if (req.params.type === "custom") {
          const ordered = list.sort((a, b) => a.id - b.id);
          return sync(req.recursion > 0 ? ordered.map((v) => snapshots.listView(v)) : ordered.map((v) => volumes.volumeUrl(v)));
        }
        return sync(req.recursion > 0 ? list.map((v) => volumes.volumeSnapshotView(v, false)) : list.map((v) => volumes.volumeUrl(v)));
      },
      POST: async (req) => {
        const { pool, type, volume } = req.params;
        const body = await req.body(VolumeSnapshotsPost, "StorageVolumeSnapshotsPost");
        const { name, expiresAt } = snapshots.checkCreate(pool, req.project, type, volume, body);
        const project = req.project;
        return task(req, "Creating storage volume snapshot", { storage_volumes: [`/1.0/storage_volumes/${volume}`] }, (signal) => snapshots.create(pool, project, volume, name, expiresAt, { signal }));
      },
    }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/snapshots/:snapshot", {
      GET: (req) => {
        if (req.params.type !== "custom") {
          const view = volumes.volumeSnapshotView(volumes.getVolumeSnapshot(req.params.pool, req.project, req.params.type, req.params.volume, req.params.snapshot), true);
          return sync(view, { etag: [view.description, view.expires_at] });
        }
        const row = customSnapshot(req);
        return sync(snapshots.view(row), { etag: snapshots.etag(row) });
      },
      PUT: updateSnapshot("replace"),
      PATCH: updateSnapshot("merge"),
      POST: async (req) => {
        const body = await req.body(VolumeSnapshotPost, "StorageVolumeSnapshotPost");
        snapshots.checkRename(req.params.type, body.name);
        const [pool, project, volume, snapshot] = snapshotParams(req);
        return task(req, "Renaming storage volume snapshot", { storage_volume_snapshots: [`/1.0/storage_volume_snapshots/${volume}`] }, () => snapshots.rename(pool, project, volume, snapshot, body.name));
      },
      DELETE: async (req) => {
        if (!["container", "virtual-machine", "image", "custom"].includes(req.params.type)) throw new BadRequest("Invalid storage volume type name");
        if (req.params.type !== "custom") throw new BadRequest(`Invalid storage volume type "${req.params.type}"`);
        customSnapshot(req);
        const [pool, project, volume, snapshot] = snapshotParams(req);
        return task(req, "Deleting storage volume snapshot", { storage_volume_snapshots: [`/1.0/storage_volume_snapshots/${volume}`] }, () => snapshots.delete(pool, project, volume, snapshot));
      },
    }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/backups", {
      GET: (req) => {
        const { pool, type, volume } = req.params;
        const rows = backups.list(pool, req.project, type, volume);
        if (req.recursion > 0) return sync(rows.map((b) => backups.view(b)));
        return sync(rows.map((b) => apiUrl(req.project, "storage-pools", pool, "volumes", "custom", volume, "backups", b.name)));
      },
      POST: async (req) => {
        const { pool, type, volume } = req.params;
        const body = await req.body(VolumeBackupsPost, "StoragePoolVolumeBackupsPost");
        const request = {
          name: body.name,
          expiresAt: body.expires_at,
          volumeOnly: body.volume_only ?? false,
          optimizedStorage: body.optimized_storage ?? false,
          compression: body.compression_algorithm || config("backups.compression_algorithm") || "gzip",
        };
        const backup = backups.checkCreate(pool, req.project, type, volume, request);
        const project = req.project;
        return task(req, "Creating custom volume backup", { backups: [`/1.0/backups/${backup}`], storage_volumes: [`/1.0/storage_volumes/${volume}`] }, (signal) => backups.create(pool, project, volume, backup, request, signal));
      },
    }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/backups/:backup", {
      GET: (req) => {
        const { pool, type, volume, backup } = req.params;
        return sync(backups.view(backups.require(pool, req.project, type, volume, backup).b));
      },
      POST: async (req) => {
        const { pool, type, volume, backup } = req.params;
        const body = await req.body(VolumeSnapshotPost, "StoragePoolVolumeBackupPost");
        backups.checkRename(pool, req.project, type, volume, backup, body.name);
        const project = req.project;
        return task(req, "Renaming custom volume backup", { volume: [`/1.0/volume/${volume}`] }, () => backups.rename(pool, project, type, volume, backup, body.name));
      },
      DELETE: async (req) => {
        const { pool, type, volume, backup } = req.params;
        backups.require(pool, req.project, type, volume, backup);
        const project = req.project;
        return task(req, "Deleting custom volume backup", { volume: [`/1.0/volume/${volume}`] }, () => backups.delete(pool, project, type, volume, backup));
      },
    }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/backups/:backup/export", {
      GET: (req, reply) => {
        const { pool, type, volume, backup } = req.params;
        return sendDownload(reply, backups.exportFile(pool, req.project, type, volume, backup));
      },
    }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/state", {
      GET: async (req) => sync(await volumes.volumeState(req.params.pool, req.project, req.params.type, req.params.volume)),
    }, "project", { feature: "storage.volumes" }),
  ];
}
