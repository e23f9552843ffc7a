// GET /internal/testing/bgp: the BGP speaker's state in LXD's shape (bgp.DebugInfo): listener,
// advertised prefixes with their owners and next hops, peers. Unix socket only, as /internal.
import { route, sync, type Route } from "../route.js";
import type { BgpSpeaker } from "../../network/bgp/speaker.js";

export function bgpRoutes(speaker: Pick<BgpSpeaker, "debug">): Route[] {
  return [route("/internal/testing/bgp", { GET: () => sync(speaker.debug()) }, "local")];
}
