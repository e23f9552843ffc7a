import type { PoolService } from "../../storage/pool-service.js";
import { NotImplemented } from "../errors.js";
import { filterUsedBy, isAdmin } from "../access.js";
import { StoragePoolPut, StoragePoolsPost, StorageVolumePost, StorageVolumePut, StorageVolumesPost } from "../schemas/storage.js";
import { checkEtag, created, route, sync, type ApiRequest, type Route } from "../route.js";

export function storagePoolRoutes(pools: PoolService): Route[] {
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
    // There are no volume snapshots to restore from yet.
    if (body.restore) throw new NotImplemented();
    checkEtag(req, volumeEtag(req));
    await pools.updateCustomVolume(req.params.pool, req.project, req.params.type, req.params.volume, body, mode);
    return sync({});
  };
  /** Non-admins see no pool config (it may hold secrets) and only used_by entries of their projects, as LXD. */
  const shown = <V extends { config: unknown; used_by: string[] | null }>(req: ApiRequest, v: V): V =>
    isAdmin(req.requestor) ? v : { ...v, config: null, used_by: filterUsedBy(req.requestor, v.used_by) };
  return [
    route("/1.0/storage-pools", {
      GET: (req) => {
        const list = pools.listPools();
        return sync(req.recursion > 0 ? list.map((p) => shown(req, pools.poolView(p))) : list.map((p) => `/1.0/storage-pools/${p.name}`));
      },
      POST: async (req) => {
        const body = await req.body(StoragePoolsPost, "StoragePoolsPost");
        await pools.createPool(body);
        return created(`/1.0/storage-pools/${body.name}`, null);
      },
    }, { GET: "authenticated", POST: "admin" }),
    route("/1.0/storage-pools/:name", {
      GET: (req) => sync(shown(req, pools.getPool(req.params.name)), { etag: poolEtag(req.params.name) }),
      PUT: update("replace"),
      PATCH: update("merge"),
      DELETE: async (req) => {
        await pools.deletePool(req.params.name);
        return sync({});
      },
    }, { GET: "authenticated" }),
    route("/1.0/storage-pools/:name/resources", {
      GET: async (req) => sync(await pools.resources(req.params.name)),
    }, "authenticated"),
    route("/1.0/storage-pools/:pool/volumes", { GET: listVolumes, POST: createVolume }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type", { GET: listVolumes, POST: createVolume }, "project", { feature: "storage.volumes" }),
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
    }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/snapshots", {
      GET: (req) => {
        const list = pools.listVolumeSnapshots(req.params.pool, req.project, req.params.type, req.params.volume);
        return sync(req.recursion > 0 ? list.map((v) => pools.volumeSnapshotView(v, false)) : list.map((v) => pools.volumeUrl(v)));
      },
    }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/snapshots/:snapshot", {
      GET: (req) => sync(pools.volumeSnapshotView(pools.getVolumeSnapshot(req.params.pool, req.project, req.params.type, req.params.volume, req.params.snapshot), true)),
    }, "project", { feature: "storage.volumes" }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume/state", {
      GET: async (req) => sync(await pools.volumeState(req.params.pool, req.project, req.params.type, req.params.volume)),
    }, "project", { feature: "storage.volumes" }),
  ];
}
