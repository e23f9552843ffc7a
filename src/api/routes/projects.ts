// /1.0/projects
import { assertProject, mayUseProject } from "../access.js";
import { z } from "zod";
import type { OperationManager } from "../../operations/manager.js";
import type { ProjectService } from "../../projects/service.js";
import { checkEtag, created, operation, route, sync, type Handler, type Route } from "../route.js";
import { Forbidden } from "../../shared/errors.js";
import { ConfigMap, configStrings } from "../../shared/schemas/server.js";

const ProjectsPost = z
  .object({
    name: z.string().default(""),
    description: z.string().default(""),
    config: ConfigMap.transform((m) => configStrings(m)),
  })
  .passthrough();

const ProjectPut = z
  .object({
    description: z.string().optional(),
    config: ConfigMap.transform((m) => configStrings(m)),
  })
  .passthrough();

const ProjectPost = z.object({ name: z.string().default("") }).passthrough();

export function projectRoutes(svc: ProjectService, ops: OperationManager): Route[] {
  const etagOf = (name: string) => {
    const p = svc.require(name);
    return [p.description, p.config];
  };
  const update =
    (mode: "put" | "patch"): Handler =>
    async (req) => {
      checkEtag(req, etagOf(req.params.name));
      const body = await req.body(ProjectPut, "api.ProjectPut");
      svc.update(req.params.name, { description: body.description, config: body.config }, mode);
      return sync({});
    };
  return [
    route("/1.0/projects", {
      GET: (req) => {
        // A restricted client sees the projects of its certificate only.
        const list = svc.repo.list().filter((p) => req.mayUse(p.name));
        return sync(req.recursion > 0 ? list.map((p) => svc.view(p)) : list.map((p) => `/1.0/projects/${p.name}`));
      },
      POST: async (req) => {
        const body = await req.body(ProjectsPost, "api.ProjectsPost");
        svc.create({ name: body.name, description: body.description, config: body.config ?? {} });
        return created(`/1.0/projects/${body.name}`, null);
      },
    }, { GET: "authenticated", POST: "admin" }),
    route("/1.0/projects/:name", {
      GET: (req) => {
        assertProject(req.requestor, req.params.name);
        return sync(svc.view(svc.require(req.params.name)), { etag: etagOf(req.params.name) });
      },
      PUT: update("put"),
      PATCH: update("patch"),
      POST: async (req) => {
        const body = await req.body(ProjectPost, "api.ProjectPost");
        const name = req.params.name;
        if (name === "default") throw new Forbidden("The 'default' project cannot be renamed");
        return operation(
          ops.create({
            class: "task",
            description: "Renaming project",
            run: async () => svc.rename(name, body.name),
          }),
        );
      },
      DELETE: (req) => {
        svc.delete(req.params.name);
        return sync({});
      },
    }, // LXD's PUT/PATCH need "manage-projects", which no restricted certificate has.
    { GET: "authenticated", PUT: "admin", PATCH: "admin", POST: "admin", DELETE: "admin" }),
    route("/1.0/projects/:name/state", {
      GET: (req) => {
        if (!mayUseProject(req.requestor, req.params.name)) throw new Forbidden();
        return sync(svc.state(req.params.name));
      },
    }, "authenticated"),
  ];
}
