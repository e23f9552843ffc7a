// /1.0/network-zones and their records: thin handlers over NetworkZoneService.
import { checkEtag, created, route, sync, type Handler, type Route } from "../route.js";
import { NetworkZonePut, NetworkZoneRecordPut, NetworkZoneRecordsPost, NetworkZonesPost } from "../../shared/schemas/network-zone.js";
import type { NetworkZoneService } from "../../network/zones/service.js";

export function networkZoneRoutes(svc: NetworkZoneService): Route[] {
  const update =
    (mode: "put" | "patch"): Handler =>
    async (req) => {
      checkEtag(req, svc.etagOf(req.project, req.params.zone));
      svc.update(req.project, req.params.zone, await req.body(NetworkZonePut, "api.NetworkZonePut"), mode);
      return sync({});
    };
  const updateRecord =
    (mode: "put" | "patch"): Handler =>
    async (req) => {
      const { zone, name } = req.params;
      checkEtag(req, svc.recordEtag(req.project, zone, name));
      svc.updateRecord(req.project, zone, name, await req.body(NetworkZoneRecordPut, "api.NetworkZoneRecordPut"), mode);
      return sync({});
    };
  return [
    route("/1.0/network-zones", {
      GET: (req) => {
        const list = svc.list(req.project);
        return sync(req.recursion > 0 ? list : list.map((z) => `/1.0/network-zones/${encodeURIComponent(z.name)}`));
      },
      POST: async (req) => created(svc.create(req.project, await req.body(NetworkZonesPost, "api.NetworkZonesPost")), null),
    }, "project", { feature: "networks" }),
    route("/1.0/network-zones/:zone", {
      GET: (req) => sync(svc.get(req.project, req.params.zone), { etag: svc.etagOf(req.project, req.params.zone) }),
      PUT: update("put"),
      PATCH: update("patch"),
      DELETE: (req) => {
        svc.delete(req.project, req.params.zone);
        return sync({});
      },
    }, "project", { feature: "networks" }),
    route("/1.0/network-zones/:zone/records", {
      GET: (req) => {
        const list = svc.records(req.project, req.params.zone);
        const zone = encodeURIComponent(req.params.zone);
        return sync(req.recursion > 0 ? list : list.map((r) => `/1.0/network-zones/${zone}/records/${encodeURIComponent(r.name)}`));
      },
      POST: async (req) => created(svc.createRecord(req.project, req.params.zone, await req.body(NetworkZoneRecordsPost, "api.NetworkZoneRecordsPost")), null),
    }, "project", { feature: "networks" }),
    route("/1.0/network-zones/:zone/records/:name", {
      GET: (req) => sync(svc.record(req.project, req.params.zone, req.params.name), { etag: svc.recordEtag(req.project, req.params.zone, req.params.name) }),
      PUT: updateRecord("put"),
      PATCH: updateRecord("patch"),
      DELETE: (req) => {
        svc.deleteRecord(req.project, req.params.zone, req.params.name);
        return sync({});
      },
    }, "project", { feature: "networks" }),
  ];
}
