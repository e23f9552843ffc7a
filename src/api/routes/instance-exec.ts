// POST /1.0/instances/{name}/exec (and the /1.0/containers alias).
import type { ExecService } from "../../exec/exec-service.js";
import { execPostSchema } from "../../exec/exec-request.js";
import { warmCgroupMigration } from "../../os/cgroup-warmup.js";
import { operation, route, type Route } from "../route.js";

export function execRoutes(exec: ExecService): Route[] {
  const handler = route("/1.0/instances/:name/exec", {
    POST: async (req) => {
      warmCgroupMigration(); // before the body is even read: see cgroup-warmup.ts
      return operation(exec.exec(req.project, req.params.name, await req.body(execPostSchema, "InstanceExecPost")));
    },
  }, "project");
  return [handler, { ...handler, path: "/1.0/containers/:name/exec" }];
}
