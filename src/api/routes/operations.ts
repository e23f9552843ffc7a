import type { OperationManager } from "../../operations/manager.js";
import type { OperationView } from "../../operations/types.js";
import { intParam, route, sync, type Route } from "../route.js";

function groupByStatus<T>(ops: OperationView[], pick: (op: OperationView) => T): Record<string, T[]> {
  const out: Record<string, T[]> = {};
  for (const op of ops) (out[op.status.toLowerCase()] ??= []).push(pick(op));
  return out;
}

export function operationRoutes(ops: OperationManager): Route[] {
  return [
    route("/1.0/operations", {
      GET: (req) => {
        const all = req.query["all-projects"] === "true";
        const list = ops.list(all ? undefined : req.project);
        return sync(req.recursion > 0 ? groupByStatus(list, (op) => op) : groupByStatus(list, (op) => `/1.0/operations/${op.id}`));
      },
    }),
    route("/1.0/operations/:id", {
      GET: (req) => sync(ops.get(req.params.id)),
      DELETE: async (req) => {
        await ops.cancel(req.params.id);
        return sync({});
      },
    }),
    route("/1.0/operations/:id/wait", {
      GET: async (req) => {
        const timeout = intParam(req, "timeout", -1);
        const closed = new AbortController();
        req.stream.socket.once("close", () => closed.abort());
        return sync(await ops.wait(req.params.id, timeout, closed.signal));
      },
    }),
  ];
}
