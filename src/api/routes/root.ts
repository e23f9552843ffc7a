import type { ServerService } from "../../daemon/server-service.js";
import { serverKeys } from "../../config/server-keys.js";
import { ServerPut, configStrings } from "../../shared/schemas/server.js";
import { checkEtag, route, sync, type Route } from "../route.js";
import { isAdmin } from "../access.js";

const hiddenKeys = new Set(Object.entries(serverKeys).filter(([, s]) => s.hidden).map(([k]) => k));

export function rootRoutes(server: ServerService): Route[] {
  const update = (mode: "replace" | "merge") => async (req: Parameters<Route["handlers"]["PUT"] & {}>[0]) => {
    const body = await req.body(ServerPut, "ServerPut");
    checkEtag(req, server.visibleConfig());
    await server.update(configStrings(body.config ?? {}, hiddenKeys), mode);
    return sync({});
  };
  return [
    // LXD answers `/` to anyone, whatever the method.
    route("/", Object.fromEntries(["GET", "PUT", "PATCH", "POST", "DELETE"].map((m) => [m, () => sync(["/1.0"])])), "open"),
    route(
      "/1.0",
      {
        GET: (req) => {
          const doc = server.document(req.requestor.trusted, isAdmin(req.requestor));
          return { kind: "encoded", body: doc.body, etag: doc.etag };
        },
        PUT: update("replace"),
        PATCH: update("merge"),
      },
      { GET: "untrusted", PUT: "admin", PATCH: "admin" },
    ),
  ];
}
