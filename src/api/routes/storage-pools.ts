import { z } from "zod";
import type { Core } from "../../daemon/daemon.js";
import type { PoolService } from "../../storage/pool-service.js";
import type { VolumeSnapshotService } from "../../storage/volume-snapshots.js";
import { NotImplemented } from "../errors.js";
import { StoragePoolPut, StoragePoolsPost, StorageVolumePost, StorageVolumePut, StorageVolumesPost } from "../schemas/storage.js";
import { checkEtag, created, operation, route, sync, type ApiRequest, type Result, type Route } from "../route.js";

const VolumeSnapshotsPost = z.object({ name: z.string().nullish().transform((n) => n ?? ""), expires_at: z.string().nullish() }).passthrough();
const VolumeSnapshotPost = z.object({ name: z.string().nullish().transform((n) => n ?? "") }).passthrough();
const VolumeSnapshotPut = z.object({ description: z.string().nullish(), expires_at: z.string().nullish() }).passthrough();

export function storagePoolRoutes(core: Core, pools: PoolService, snapshots: VolumeSnapshotService): Route[] {
  const task = (req: ApiRequest, description: string, resources: Record<string, string[]>, work: (signal: AbortSignal) => Promise<unknown>): Result =>
    operation(core.operations.create({ class: "task", description, project: req.project, resources, run: async (ctx) => void (await work(ctx.signal)) }));
  const poolEtag = (name: string) => {
    const p = pools.getPool(name);
    return [p.name, p.driver, p.description, p.config];
  };
  const update = (mode: "replace" | "merge") => async (req: ApiRequest) => {
    const body = await req.body(StoragePoolPut, "StoragePoolPut");
    checkEtag(req, poolEtag(req.params.name));
    await pools.updatePool(req.params.name, body, mode);
    return sync({});
  };
  const listVolumes = (req: ApiRequest) => {
    const list = pools.listVolumes(req.params.pool, req.project, req.params.type);
    return sync(req.recursion > 0 ? list.map((v) => pools.volumeView(v)) : list.map((v) => pools.volumeUrl(v)));
  };
  const createVolume = async (req: ApiRequest) => {
    const body = await req.body(StorageVolumesPost, "StorageVolumesPost");
    // Copies, migrations and backups as a volume source are not implemented.
    if (body.source?.type) throw new NotImplemented();
    await pools.createCustomVolume(req.params.pool, req.project, { ...body, type: req.params.type ?? body.type });
    return sync({});
  };
  const volumeEtag = (req: ApiRequest) => {
    const v = pools.volumeView(pools.getVolume(req.params.pool, req.project, req.params.type, req.params.volume));
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
    await pools.updateCustomVolume(pool, req.project, type, volume, body, mode);
    return sync({});
  };
  const snapshotParams = (req: ApiRequest) => [req.params.pool, req.project, req.params.volume, req.params.snapshot] as const;
  const customSnapshot = (req: ApiRequest) => {
    pools.getVolume(req.params.pool, req.project, req.params.type, req.params.volume);
    return snapshots.require(...snapshotParams(req));
  };
  const updateSnapshot = (mode: "replace" | "merge") => async (req: ApiRequest) => {
    if (req.params.type !== "custom") throw new NotImplemented();
    checkEtag(req, snapshots.etag(customSnapshot(req)));
    const body = await req.body(VolumeSnapshotPut, "StorageVolumeSnapshotPut");
    snapshots.update(...snapshotParams(req), body, mode);
    return sync({});
  };
  return [
    route("/1.0/storage-pools", {
      GET: (req) => {
        const list = pools.listPools();
        return sync(req.recursion > 0 ? list.map((p) => pools.poolView(p)) : list.map((p) => `/1.0/storage-pools/${p.name}`));
      },
      POST: async (req) => {
        const body = await req.body(StoragePoolsPost, "StoragePoolsPost");
        await pools.createPool(body);
        return created(`/1.0/storage-pools/${body.name}`, null);
      },
    }),
    route("/1.0/storage-pools/:name", {
      GET: (req) => sync(pools.getPool(req.params.name), { etag: poolEtag(req.params.name) }),
      PUT: update("replace"),
      PATCH: update("merge"),
      DELETE: async (req) => {
        await pools.deletePool(req.params.name);
        return sync({});
      },
    }),
    route("/1.0/storage-pools/:name/resources", {
      GET: async (req) => sync(await pools.resources(req.params.name)),
    }),
    route("/1.0/storage-pools/:pool/volumes", { GET: listVolumes, POST: createVolume }),
    route("/1.0/storage-pools/:pool/volumes/:type", { GET: listVolumes, POST: createVolume }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume", {
      GET: (req) => sync(pools.volumeView(pools.getVolume(req.params.pool, req.project, req.params.type, req.params.volume)), { etag: volumeEtag(req) }),
      PUT: updateVolume("replace"),
      PATCH: updateVolume("merge"),
      POST: async (req) => {
        const body = await req.body(StorageVolumePost, "StorageVolumePost");
        // Moves between pools/projects and migrations are not implemented; only renames.
        if (body.migration || (body.pool && body.pool !== req.params.pool) || (body.project && body.project !== req.project)) throw new NotImplemented();
        await pools.renameCustomVolume(req.params.pool, req.project, req.params.type, req.params.volume, body.name);
        return sync(null);
      },
      DELETE: async (req) => {
        await pools.deleteCustomVolume(req.params.pool, req.project, req.params.type, req.params.volume);
        return sync({});
      },
    }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/snapshots", {
      GET: (req) => {
        const list = pools.listVolumeSnapshots(req.params.pool, req.project, req.params.type, req.params.volume);
        if (req.params.type === "custom") {
          const ordered = list.sort((a, b) => a.id - b.id);
          return sync(req.recursion > 0 ? ordered.map((v) => snapshots.listView(v)) : ordered.map((v) => pools.volumeUrl(v)));
        }
        return sync(req.recursion > 0 ? list.map((v) => pools.volumeSnapshotView(v, false)) : list.map((v) => pools.volumeUrl(v)));
      },
      POST: async (req) => {
        const { pool, type, volume } = req.params;
        const body = await req.body(VolumeSnapshotsPost, "StorageVolumeSnapshotsPost");
        const { name, expiresAt } = snapshots.checkCreate(pool, req.project, type, volume, body);
        const project = req.project;
        return task(req, "Creating storage volume snapshot", { storage_volumes: [`/1.0/storage_volumes/${volume}`] }, (signal) => snapshots.create(pool, project, volume, name, expiresAt, { signal }));
      },
    }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/snapshots/:snapshot", {
      GET: (req) => {
        if (req.params.type !== "custom") return sync(pools.volumeSnapshotView(pools.getVolumeSnapshot(req.params.pool, req.project, req.params.type, req.params.volume, req.params.snapshot), true));
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
        if (req.params.type !== "custom") throw new NotImplemented();
        customSnapshot(req);
        const [pool, project, volume, snapshot] = snapshotParams(req);
        return task(req, "Deleting storage volume snapshot", { storage_volume_snapshots: [`/1.0/storage_volume_snapshots/${volume}`] }, () => snapshots.delete(pool, project, volume, snapshot));
      },
    }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/state", {
      GET: async (req) => sync(await pools.volumeState(req.params.pool, req.project, req.params.type, req.params.volume)),
    }),
  ];
}
