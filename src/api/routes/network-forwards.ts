// /1.0/networks/{name}/forwards: thin handlers over NetworkForwardService.
import { checkEtag, created, route, sync, type Handler, type Route } from "../route.js";
import { NetworkForwardPut, NetworkForwardsPost } from "../../shared/schemas/network-forward.js";
import type { NetworkForwardService } from "../../network/forwards/service.js";

/**
 * `network(project, name)` loads the network in the request's network project (LXD's
 * NetworkProject + LoadByName): a features.networks project sees none of the default project's.
 */
export function networkForwardRoutes(svc: NetworkForwardService, network: (project: string, name: string) => unknown = () => undefined): Route[] {
  const loaded =
    (h: Handler): Handler =>
    (req, reply) => {
      network(req.project, req.params.name);
      return h(req, reply);
    };
  const update =
    (mode: "put" | "patch"): Handler =>
    async (req) => {
      const { name, listen } = req.params;
      svc.get(name, listen);
      checkEtag(req, svc.etagOf(name, listen));
      await svc.update(name, listen, await req.body(NetworkForwardPut, "api.NetworkForwardPut"), mode);
      return sync({});
    };
  return [
    route("/1.0/networks/:name/forwards", {
      GET: loaded((req) => {
        const list = svc.list(req.params.name);
        return sync(req.recursion > 0 ? list : list.map((f) => `/1.0/networks/${encodeURIComponent(req.params.name)}/forwards/${encodeURIComponent(f.listen_address)}`));
      }),
      POST: loaded(async (req) => created(await svc.create(req.params.name, await req.body(NetworkForwardsPost, "api.NetworkForwardsPost")), null)),
    }, "project", { feature: "networks" }),
    route("/1.0/networks/:name/forwards/:listen", {
      GET: loaded((req) => sync(svc.get(req.params.name, req.params.listen), { etag: svc.etagOf(req.params.name, req.params.listen) })),
      PUT: loaded(update("put")),
      PATCH: loaded(update("patch")),
      DELETE: loaded(async (req) => {
        await svc.delete(req.params.name, req.params.listen);
        return sync({});
      }),
    }, "project", { feature: "networks" }),
  ];
}
