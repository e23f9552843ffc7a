import { z } from "zod";
import type { SqlService } from "../../daemon/sql-service.js";
import { route, sync, type Route } from "../route.js";

const SqlQuery = z.object({ database: z.string().default(""), query: z.string().default("") }).passthrough();

export function sqlRoutes(sql: SqlService): Route[] {
  return [
    route("/internal/sql", {
      GET: (req) => sync(sql.dump(req.query.database ?? "", req.query.schema === "1")),
      POST: async (req) => {
        const body = await req.body(SqlQuery, "internalSQLQuery");
        return sync(sql.query(body.database, body.query));
      },
    }, "local"),
  ];
}
