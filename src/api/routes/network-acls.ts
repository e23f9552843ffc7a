// /1.0/network-acls: thin handlers over NetworkAclService.
import { checkEtag, created, handled, route, sync, type Handler, type Route } from "../route.js";
import { NetworkAclPost, NetworkAclPut, NetworkAclsPost } from "../../shared/schemas/network-acl.js";
import type { NetworkAclService } from "../../network/acls/service.js";

export function networkAclRoutes(svc: NetworkAclService): Route[] {
  const update =
    (mode: "put" | "patch"): Handler =>
    async (req) => {
      checkEtag(req, svc.etagOf(req.project, req.params.name));
      await svc.update(req.project, req.params.name, await req.body(NetworkAclPut, "api.NetworkACLPut"), mode);
      return sync({});
    };
  return [
    route("/1.0/network-acls", {
      GET: (req) => {
        const list = svc.list(req.project);
        return sync(req.recursion > 0 ? list : list.map((a) => `/1.0/network-acls/${a.name}`));
      },
      POST: async (req) => created(svc.create(req.project, await req.body(NetworkAclsPost, "api.NetworkACLsPost")), null),
    }, "project", { feature: "networks" }),
    route("/1.0/network-acls/:name", {
      GET: (req) => sync(svc.get(req.project, req.params.name), { etag: svc.etagOf(req.project, req.params.name) }),
      PUT: update("put"),
      PATCH: update("patch"),
      POST: async (req) => created(svc.rename(req.project, req.params.name, (await req.body(NetworkAclPost, "api.NetworkACLPost")).name), null),
      DELETE: (req) => {
        svc.delete(req.project, req.params.name);
        return sync({});
      },
    }, "project", { feature: "networks" }),
    route("/1.0/network-acls/:name/log", {
      // LXD's FileResponse of one in-memory entry: the text inline, no file name.
      GET: (req, reply) => {
        const body = Buffer.from(svc.log(req.project, req.params.name));
        reply.hijack();
        reply.raw
          .writeHead(200, {
            "content-type": "application/octet-stream",
            "content-length": String(body.length),
            "content-disposition": "inline;filename=",
            "last-modified": new Date().toUTCString(),
            "accept-ranges": "bytes",
          })
          .end(body);
        return handled();
      },
    }, "project", { feature: "networks" }),
  ];
}
