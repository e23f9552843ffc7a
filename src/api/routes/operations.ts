import { LOCAL_ONLY_HEADER } from "../../shared/requestor.js";
import type { OperationManager } from "../../operations/manager.js";
import { secretsEqual } from "../../operations/manager.js";
import type { OperationView } from "../../operations/types.js";
import { isAdmin } from "../access.js";
import { Forbidden } from "../../shared/errors.js";
import { intParam, route, sync, type ApiRequest, type Route } from "../route.js";

function groupByStatus<T>(ops: OperationView[], pick: (op: OperationView) => T): Record<string, T[]> {
  const out: Record<string, T[]> = {};
  for (const op of ops) (out[op.status.toLowerCase()] ??= []).push(pick(op));
  return out;
}

/** Operations that live on other cluster members (absent standalone). */
export interface RemoteOperations {
  /** Whether this daemon is a cluster member now. */
  clustered(): boolean;
  /** The other members' operations (`query`: the listing's project or all-projects selector). */
  list(query: string, req: ApiRequest): Promise<OperationView[]>;
}

/** A member asking for this member's own operations only (the fan-out of a listing). */

export function operationRoutes(ops: OperationManager, remote?: RemoteOperations): Route[] {
  /**
   * Whether the caller may see the operation (and so its metadata: websocket secrets). A
   * restricted client sees operations of its projects only, and never admin-only ones.
   */
  const visible = (req: ApiRequest, id: string): boolean => {
    if (isAdmin(req.requestor)) return true;
    const owner = ops.owner(id);
    return !owner.adminOnly && req.mayUse(owner.project);
  };
  const assertVisible = (req: ApiRequest, id: string): void => {
    if (!visible(req, id)) throw new Forbidden();
  };
  return [
    route(
      "/1.0/operations",
      {
        GET: async (req) => {
          const all = req.query["all-projects"] === "true";
          if (!all && !req.mayUse(req.project)) throw new Forbidden();
          const list = ops.list(all ? undefined : req.project).filter((op) => visible(req, op.id));
          // In a cluster, every member's operations (each carries its `location`), as LXD lists them.
          if (remote?.clustered() && !req.headers[LOCAL_ONLY_HEADER]) {
            const query = `recursion=1&${all ? "all-projects=true" : `project=${encodeURIComponent(req.project)}`}`;
            list.push(...(await remote.list(query, req)));
          }
          return sync(req.recursion > 0 ? groupByStatus(list, (op) => op) : groupByStatus(list, (op) => `/1.0/operations/${op.id}`));
        },
      },
      "authenticated",
    ),
    route(
      "/1.0/operations/:id",
      {
        GET: (req) => {
          assertVisible(req, req.params.id);
          return sync(ops.get(req.params.id));
        },
        DELETE: async (req) => {
          assertVisible(req, req.params.id);
          await ops.cancel(req.params.id);
          return sync({});
        },
      },
      "authenticated",
    ),
    route(
      "/1.0/operations/:id/wait",
      {
        // LXD: untrusted clients may wait on an operation whose metadata secret they present.
        GET: async (req) => {
          const secret = req.query.secret ?? "";
          if (!req.requestor.trusted && secret === "") throw new Forbidden();
          const timeout = intParam(req, "timeout", -1);
          const current = ops.get(req.params.id);
          if (secret !== "") {
            const expected = current.metadata?.secret;
            if (typeof expected !== "string" || !secretsEqual(secret, expected)) throw new Forbidden();
          } else assertVisible(req, req.params.id);
          const closed = new AbortController();
          req.stream.socket.once("close", () => closed.abort());
          return sync(await ops.wait(req.params.id, timeout, closed.signal));
        },
      },
      { GET: "untrusted" },
    ),
  ];
}
