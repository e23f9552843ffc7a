// /1.0/cluster: enable (first member) and join, join tokens (cluster.enrolment), members and their state (cluster.members).
import { z } from "zod";
import type { ClusterService } from "../../cluster/service.js";
import type { OperationManager } from "../../operations/manager.js";
import { BadRequest } from "../../shared/errors.js";
import { checkEtag, operation, route, sync, type Handler, type Route } from "../route.js";

const ClusterPut = z.object({
  server_name: z.string().default(""),
  enabled: z.boolean().default(false),
  server_address: z.string().default(""),
  cluster_address: z.string().default(""),
  cluster_certificate: z.string().default(""),
  cluster_password: z.string().default(""),
  member_config: z.array(z.unknown()).nullish(),
});

const MemberPut = z.object({
  description: z.string().optional(),
  failure_domain: z.string().optional(),
  roles: z.array(z.string()).nullish(),
  config: z.record(z.string()).nullish(),
  groups: z.array(z.string()).nullish(),
});

export function clusterRoutes(cluster: ClusterService, operations: OperationManager, evacuate: (name: string, action: "evacuate" | "restore", progress: (m: Record<string, unknown>) => void) => Promise<void>): Route[] {
  const memberUrl = (name: string) => `/1.0/cluster/members/${name}`;

  const putMember: Handler = async (req) => {
    const current = await cluster.members.get(req.params.name);
    checkEtag(req, { description: current.description, config: current.config, groups: current.groups, failure_domain: current.failure_domain, roles: current.roles });
    const b = await req.body(MemberPut, "api.ClusterMemberPut");
    if (b.groups) await cluster.groups.checkMemberGroups(b.groups);
    await cluster.members.update(req.params.name, {
      description: b.description,
      failure_domain: b.failure_domain,
      config: b.config ?? undefined,
      groups: b.groups ?? undefined,
      roles: b.roles ?? undefined,
    });
    return sync({});
  };

  return [
    route(
      "/1.0/cluster",
      {
        GET: () => sync(cluster.view(), { etag: cluster.view() }),
        PUT: async (req) => {
          const b = await req.body(ClusterPut, "api.ClusterPut");
          return operation(cluster.enrolment.enable({ ...b, member_config: b.member_config ?? [] }));
        },
      },
      { GET: "authenticated", PUT: "admin" },
    ),
    route("/1.0/cluster/members", {
      GET: async (req) => {
        const members = await cluster.members.list();
        return sync(req.recursion > 0 ? members : members.map((m) => memberUrl(m.server_name)));
      },
      POST: async (req) => {
        const b = await req.body(z.object({ server_name: z.string() }), "api.ClusterMembersPost");
        return operation(await cluster.enrolment.createToken(b.server_name));
      },
    }, { GET: "authenticated", POST: "admin" }),
    route("/1.0/cluster/members/:name", {
      GET: async (req) => {
        const m = await cluster.members.get(req.params.name);
        return sync(m, { etag: { description: m.description, config: m.config, groups: m.groups, failure_domain: m.failure_domain, roles: m.roles } });
      },
      PUT: putMember,
      PATCH: putMember,
      POST: async (req) => {
        const b = await req.body(z.object({ server_name: z.string() }), "api.ClusterMemberPost");
        await cluster.members.rename(req.params.name, b.server_name);
        return sync({});
      },
      DELETE: async (req) => {
        await cluster.members.remove(req.params.name, req.query.force === "1" || req.query.force === "true");
        return sync({});
      },
    }, { GET: "authenticated" }),
    route("/1.0/cluster/members/:name/state", {
      GET: async (req) => {
        await cluster.members.get(req.params.name);
        return sync({ sysinfo: {}, storage_pools: {} });
      },
      POST: async (req) => {
        const b = await req.body(z.object({ action: z.string(), mode: z.string().optional() }), "api.ClusterMemberStatePost");
        if (b.action !== "evacuate" && b.action !== "restore") throw new BadRequest(`Unknown action ${b.action}`);
        const name = req.params.name;
        await cluster.members.get(name);
        return operation(
          operations.create({
            class: "task",
            description: b.action === "evacuate" ? "Evacuating cluster member" : "Restoring cluster member",
            run: async (ctx) => evacuate(name, b.action as "evacuate" | "restore", (m) => ctx.updateMetadata(m)),
          }),
        );
      },
    }, { GET: "authenticated" }),
    route("/1.0/cluster/certificate", {
      PUT: async (req) => {
        const b = await req.body(z.object({ cluster_certificate: z.string().default(""), cluster_certificate_key: z.string().default("") }), "api.ClusterCertificatePut");
        // A member passing the change on (with the cluster certificate) asks for this member only.
        const notified = req.requestor.username === "cluster" && !!req.headers["x-nodelxd-local-only"];
        await cluster.replaceCertificate(b.cluster_certificate, b.cluster_certificate_key, notified);
        return sync({});
      },
    }, { PUT: "admin" }),
    route("/internal/cluster/accept", {
      POST: async (req) => sync(await cluster.enrolment.accept((await req.json()) as Record<string, string>)),
    }, "untrusted"),
  ];
}
