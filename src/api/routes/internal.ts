// /internal endpoints used by the daemon's own CLI (waitready, shutdown).
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { z } from "zod";
import { Unavailable } from "../../shared/errors.js";
import { route, sync, type Route } from "../route.js";

export interface InternalDeps {
  isReady(): boolean;
  /** Begin a shutdown that stops instances first (as `lxd shutdown` does). */
  shutdown(opts: { force: boolean }): void;
}

/** The engine's full garbage collection (what LXD's /internal/gc does with runtime.GC()). */
let collect: (() => void) | undefined;
export function collectGarbage(): void {
  if (!collect) {
    setFlagsFromString("--expose-gc");
    collect = runInNewContext("gc") as () => void;
  }
  collect();
}

const ShutdownQuery = z.object({ force: z.enum(["true", "false", "1", "0", ""]).optional() });

export function internalRoutes(deps: InternalDeps): Route[] {
  return [
    route("/internal/ready", {
      GET: () => {
        if (!deps.isReady()) throw new Unavailable("LXD daemon not ready yet");
        return sync({});
      },
    }, "local"),
    route("/internal/gc", {
      GET: () => {
        collectGarbage();
        return sync(null);
      },
    }, "local"),
    route("/internal/shutdown", {
      PUT: (req, reply) => {
        const q = ShutdownQuery.parse(req.query);
        // Answer first: the shutdown closes every connection, this one included.
        reply.raw.once("finish", () => deps.shutdown({ force: q.force === "true" || q.force === "1" }));
        return sync({});
      },
    }, "local"),
  ];
}
