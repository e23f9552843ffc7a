// /1.0/cluster/groups: cluster groups (LXD 5.0.2's clustering_groups), thin over cluster/groups.ts.
import { z } from "zod";
import type { ClusterGroups } from "../../cluster/groups.js";
import { checkEtag, created, route, sync, type Route } from "../route.js";

const GroupsPost = z.object({
  name: z.string().default(""),
  description: z.string().default(""),
  members: z.array(z.string()).nullish(),
});

const GroupPut = z.object({
  description: z.string().optional(),
  members: z.array(z.string()).nullish(),
});

export function clusterGroupRoutes(groups: ClusterGroups): Route[] {
  const url = (name: string) => `/1.0/cluster/groups/${name}`;
  const etagOf = (g: { description: string; members: string[] }) => ({ description: g.description, members: g.members });
  return [
    route(
      "/1.0/cluster/groups",
      {
        GET: async (req) => {
          const list = await groups.list();
          return sync(req.recursion > 0 ? list : list.map((g) => url(g.name)));
        },
        POST: async (req) => {
          const b = await req.body(GroupsPost, "api.ClusterGroupsPost");
          await groups.create(b.name, b.description, b.members ?? []);
          return created(url(b.name), null);
        },
      },
      // As upstream: creating a group is allowAuthenticated there too.
      { GET: "authenticated", POST: "authenticated" },
    ),
    route(
      "/1.0/cluster/groups/:name",
      {
        GET: async (req) => {
          const g = await groups.get(req.params.name);
          return sync(g, { etag: etagOf(g) });
        },
        PUT: async (req) => {
          checkEtag(req, etagOf(await groups.get(req.params.name)));
          const b = await req.body(GroupPut, "api.ClusterGroupPut");
          await groups.update(req.params.name, { description: b.description ?? "", members: b.members ?? [] }, false);
          return sync({});
        },
        PATCH: async (req) => {
          checkEtag(req, etagOf(await groups.get(req.params.name)));
          const b = await req.body(GroupPut, "api.ClusterGroupPut");
          await groups.update(req.params.name, { description: b.description, members: b.members ?? undefined }, true);
          return sync({});
        },
        POST: async (req) => {
          const b = await req.body(z.object({ name: z.string().default("") }), "api.ClusterGroupPost");
          await groups.rename(req.params.name, b.name);
          return created(url(b.name), null);
        },
        DELETE: async (req) => {
          await groups.delete(req.params.name);
          return sync({});
        },
      },
      { GET: "authenticated" },
    ),
  ];
}
