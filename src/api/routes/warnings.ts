import type { WarningRepo } from "../../db/warning-repo.js";
import { z } from "zod";
import { NotFound } from "../../shared/errors.js";
import { route, sync, type Handler, type Route } from "../route.js";

export function warningRoutes(warnings: WarningRepo): Route[] {
  const setStatus: Handler = async (req) => {
    const body = await req.body(WarningPut, "WarningPut");
    if (!warnings.get(req.params.uuid)) notFound();
    warnings.setStatus(req.params.uuid, body.status);
    return sync({});
  };
  return [
    route("/1.0/warnings", {
      GET: (req) => {
        const all = req.query["all-projects"] === "true" || req.query.project === undefined;
        const list = warnings.list(all ? undefined : req.project);
        return sync(req.recursion > 0 ? list : list.map((w) => `/1.0/warnings/${w.uuid}`));
      },
    }, "admin"),
    route("/1.0/warnings/:uuid", {
      GET: (req) => sync(warnings.get(req.params.uuid) ?? notFound()),
      PUT: setStatus,
      PATCH: setStatus,
      DELETE: (req) => {
        if (!warnings.delete(req.params.uuid)) notFound();
        return sync({});
      },
    }, "admin"),
  ];
}

const WarningPut = z.object({ status: z.string() }).transform((b, ctx) => {
  if (b.status !== "new" && b.status !== "acknowledged") {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `Invalid warning status "${b.status}"` });
    return z.NEVER;
  }
  return { status: b.status as "new" | "acknowledged" };
});

function notFound(): never {
  throw new NotFound("Warning not found");
}
