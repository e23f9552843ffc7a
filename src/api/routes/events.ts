// GET /1.0/events without a websocket upgrade (upgrades are served by websocket.ts). LXD 5.0.2
// checks the request as for a subscription (its errors included), then fails the upgrade the
// way its websocket library does: 400 "Bad Request" in plain text.
import { handled, route, type Route } from "../route.js";
import { eventsFilter } from "../websocket.js";

export function eventRoutes(projectExists: (name: string) => boolean): Route[] {
  return [
    route(
      "/1.0/events",
      {
        GET: (req, reply) => {
          eventsFilter(new URLSearchParams(req.query as Record<string, string>), req.requestor, projectExists);
          reply
            .code(400)
            .header("content-type", "text/plain; charset=utf-8")
            .header("sec-websocket-version", "13")
            .header("x-content-type-options", "nosniff")
            .send("Bad Request\n");
          return handled();
        },
      },
      "authenticated",
    ),
  ];
}
