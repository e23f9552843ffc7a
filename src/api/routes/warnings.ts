import type { WarningRepo } from "../../db/warning-repo.js";
import type { TestingWarnings } from "../../daemon/testing-warnings.js";
import { z } from "zod";
import { InternalError, NotFound } from "../../shared/errors.js";
import { matchFilter, parseFilter, type Clause } from "../../images/filter.js";
import { route, sync, type Handler, type Route } from "../route.js";

export function warningRoutes(warnings: WarningRepo, testing: TestingWarnings): Route[] {
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
        let clauses: Clause[] = [];
        try {
          if (req.query.filter) clauses = parseFilter(req.query.filter);
        } catch (e) {
          throw new InternalError(`Failed to filter warnings: ${(e as Error).message.replace(/^Invalid filter: /, "")}`);
        }
        const list = warnings.list(all ? undefined : req.project).filter((w) => matchFilter(w, clauses));
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
    // LXD's testing endpoint: create or bump a warning of any type (internalCreateWarning).
    route("/internal/testing/warnings", {
      POST: async (req) => {
        testing.create(await req.body(TestingWarningPost, "internalWarningCreatePost"));
        return sync({});
      },
    }, "local"),
  ];
}

const TestingWarningPost = z
  .object({
    location: z.string().optional(),
    project: z.string().optional(),
    type_code: z.number().int().optional(),
    message: z.string().optional(),
    entity_type_code: z.unknown().optional(),
    entity_id: z.unknown().optional(),
  })
  .passthrough();

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
