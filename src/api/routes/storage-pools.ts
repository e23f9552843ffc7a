import type { PoolService } from "../../storage/pool-service.js";
import { StoragePoolPut, StoragePoolsPost } from "../schemas/storage.js";
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
    route("/1.0/storage-pools/:pool/volumes", { GET: listVolumes }),
    route("/1.0/storage-pools/:pool/volumes/:type", { GET: listVolumes }),
    route("/1.0/storage-pools/:pool/volumes/:type/:volume", {
      GET: (req) => {
        const v = pools.getVolume(req.params.pool, req.project, req.params.type, req.params.volume);
        const view = pools.volumeView(v);
        return sync(view, { etag: [view.description, view.config] });
      },
    }),
  ];
}
