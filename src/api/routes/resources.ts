import type { ResourcesService } from "../../daemon/resources/index.js";
import { route, sync, type Route } from "../route.js";

export function resourceRoutes(resources: ResourcesService): Route[] {
  return [route("/1.0/resources", { GET: async () => sync(await resources.current()) }, "authenticated")];
}
