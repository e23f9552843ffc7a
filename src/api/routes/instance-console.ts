// POST /1.0/instances/{name}/console (and the /1.0/containers alias). The console log
// (GET/DELETE) belongs to the instances feature.
import { consolePostSchema, type ConsoleService } from "../../console/console-service.js";
import { operation, route, type Route } from "../route.js";

export function consoleRoutes(console: ConsoleService): Route[] {
  const r = route("/1.0/instances/:name/console", {
    POST: async (req) => operation(console.attach(req.project, req.params.name, await req.body(consolePostSchema, "InstanceConsolePost"))),
  }, "project");
  return [r, { ...r, path: "/1.0/containers/:name/console" }];
}
