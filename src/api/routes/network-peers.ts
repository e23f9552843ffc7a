// /1.0/networks/{name}/peers: LXD 5.0.2 offers peering for OVN networks only. Every other
// network type answers as 5.0.2 does (lxd/network_peer.go): the network is loaded first (404
// "Failed loading network: Network not found" for unknown and unmanaged ones, 404 "Network not
// found" for one the project may not use), then 400 `Network driver "TYPE" does not support
// peering`. POST decodes its body before anything else, so bad JSON is a 400 first.
import { BadRequest, NotFound } from "../../shared/errors.js";
import { route, type ApiRequest, type Handler, type Route } from "../route.js";
import { NetworkPeersPost as NetworksPeersPostSchema } from "../../shared/schemas/network-peer.js";
import type { ProjectsPort } from "../../ports.js";

interface PeerNetworks {
  view(project: string, name: string): { name: string; type: string; managed: boolean };
}

export function networkPeerRoutes(svc: PeerNetworks, projects: Pick<ProjectsPort, "networkAllowed">): Route[] {
  /** network.LoadByName, the project's NetworkAllowed, then the driver's Peering flag. */
  const refuse = (req: ApiRequest): never => {
    const name = req.params.name;
    let net: { type: string; managed: boolean };
    try {
      net = svc.view(req.project, name);
    } catch {
      throw new NotFound("Failed loading network: Network not found");
    }
    if (!net.managed) throw new NotFound("Failed loading network: Network not found");
    if (!projects.networkAllowed(req.project, name, true)) throw new NotFound("Network not found");
    throw new BadRequest(`Network driver "${net.type}" does not support peering`);
  };
  const plain: Handler = (req) => refuse(req);
  const post: Handler = async (req) => {
    await req.body(NetworksPeersPostSchema, "api.NetworkPeersPost");
    return refuse(req);
  };
  return [
    route("/1.0/networks/:name/peers", { GET: plain, POST: post }, "project", { feature: "networks" }),
    route("/1.0/networks/:name/peers/:peer", {
      GET: plain,
      // PUT/PATCH decode their body (api.NetworkPeerPut) only after the driver check, which refuses here.
      PUT: plain,
      PATCH: plain,
      DELETE: plain,
    }, "project", { feature: "networks" }),
  ];
}
