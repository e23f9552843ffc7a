// /1.0/networks: thin handlers over NetworkService.
import { NetworkPost, NetworkPut, NetworksPost } from "../../shared/schemas/network.js";
import { Forbidden, NotFound } from "../../shared/errors.js";
import { checkEtag, created, route, sync, type ApiRequest, type Handler, type Route } from "../route.js";
import { filterUsedBy, fromMember, isAdmin } from "../access.js";
import type { ProjectsPort } from "../../ports.js";
import type { NetworkService } from "../../network/service.js";
import type { NetworkMembers } from "../../network/network-members.js";

/**
 * `projects` decides what a restricted project may see (LXD's project.NetworkAllowed):
 * networks it may not use are left out of listings and answer 404, creating one is a 403.
 */
export function networkRoutes(svc: NetworkService, projects: Pick<ProjectsPort, "networkAllowed">, members: NetworkMembers): Route[] {
  const clustered = () => members?.clustered() ?? false;
  const allowed = (project: string, name: string, managed: boolean) => projects.networkAllowed(project, name, managed);
  /** A network the request project may not use answers 404 (one that does not exist keeps the service's own error). */
  const guard = (project: string, name: string) => {
    let managed: boolean;
    try {
      managed = svc.view(project, name).managed;
    } catch {
      return;
    }
    if (!allowed(project, name, managed)) throw new NotFound("Network not found");
  };
  const update =
    (mode: "replace" | "merge"): Handler =>
    async (req) => {
      const name = req.params.name;
      guard(req.project, name);
      const body = await req.body(NetworkPut, "NetworkPut");
      // Another member's cluster-wide update: this host only (that member wrote the record).
      if (members && fromMember(req)) {
        await svc.applyHere(name, body.config ?? {});
        return sync({});
      }
      if (members && clustered() && req.query.target) {
        checkEtag(req, members.memberEtag(name));
        await members.updateHere(name, body.config ?? {}, mode);
        return sync({});
      }
      checkEtag(req, svc.etagOf(req.project, name));
      if (members && clustered()) members.checkUpdate(body.config);
      await svc.update(req.project, name, body, mode);
      await members?.updateEverywhere(name);
      return sync({});
    };
  /** Non-admins see no network config (it may hold secrets) and only used_by entries of their projects, as LXD. */
  const shown = <V extends { config: Record<string, string>; used_by: string[] | null }>(req: ApiRequest, v: V): V =>
    isAdmin(req.requestor) ? v : { ...v, config: {}, used_by: filterUsedBy(req.requestor, v.used_by) };
  return [
    route("/1.0/networks", {
      GET: async (req) => {
        const list = svc.list(req.project).filter((n) => allowed(req.project, n.name, n.managed));
        if (req.recursion === 0) return sync(list.map((n) => `/1.0/networks/${n.name}`));
        return sync(await Promise.all(list.map(async (n) => shown(req, members ? await members.view(n, false) : n))));
      },
      POST: async (req) => {
        const body = await req.body(NetworksPost, "NetworksPost");
        if (body.name && !allowed(req.project, body.name, true)) throw new Forbidden("Network not allowed in project");
        // Another member's cluster-wide create: this member's part only (its config as started back).
        if (members && fromMember(req)) return sync(await members.createHere(body));
        const target = req.query.target;
        if (members && clustered() && target) await members.createPending(target, body);
        else if (members && (await members.needsCluster(body.name))) await members.createEverywhere(body);
        else {
          await svc.create(req.project, body);
          members?.recordCreatedHere(body.name);
        }
        return created(`/1.0/networks/${body.name}`, null);
      },
    }, "project", { feature: "networks" }),
    route("/1.0/networks/:name", {
      GET: async (req) => {
        guard(req.project, req.params.name);
        const raw = svc.view(req.project, req.params.name);
        const view = shown(req, members ? await members.view(raw, !!req.query.target) : raw);
        return sync(view, { etag: { name: view.name, managed: view.managed, type: view.type, description: view.description, config: view.config } });
      },
      PUT: update("replace"),
      PATCH: update("merge"),
      POST: async (req) => {
        guard(req.project, req.params.name);
        const body = await req.body(NetworkPost, "NetworkPost");
        await svc.rename(req.project, req.params.name, body.name);
        return created(`/1.0/networks/${body.name}`, null);
      },
      DELETE: async (req) => {
        guard(req.project, req.params.name);
        if (members && fromMember(req)) await svc.deleteHere(req.params.name);
        else if (members && clustered()) await members.deleteEverywhere(req.params.name);
        else await svc.delete(req.project, req.params.name);
        return sync({});
      },
    }, "project", { feature: "networks" }),
    route("/1.0/networks/:name/state", {
      GET: async (req) => {
        guard(req.project, req.params.name);
        return sync(await svc.state(req.project, req.params.name));
      },
    }, "project", { feature: "networks" }),
    route("/1.0/networks/:name/leases", {
      GET: async (req) => {
        guard(req.project, req.params.name);
        return sync(await svc.leases(req.project, req.params.name));
      },
    }, "project", { feature: "networks" }),
  ];
}
