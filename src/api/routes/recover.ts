// /internal/recover/*: what `lxd recover` asks the daemon. The scan covers the existing pools;
// scanning pools the database does not know, and importing what was found, are not implemented
// (LXD's 501 envelope), so the CLI stops there with that answer.
import { z } from "zod";
import { NotImplemented } from "../../shared/errors.js";
import { route, sync, type Route } from "../route.js";
import type { UnknownVolume } from "../../storage/recover.js";

const RecoverPost = z.object({
  pools: z.array(z.object({ name: z.string(), driver: z.string().optional(), config: z.record(z.string()).optional(), description: z.string().optional() }).passthrough()).default([]),
});

export interface RecoverDeps {
  recoverScan(pools: string[]): Promise<UnknownVolume[]>;
  listPools(): { name: string }[];
}

export function recoverRoutes(deps: RecoverDeps): Route[] {
  return [
    route("/internal/recover/validate", {
      POST: async (req) => {
        const body = await req.body(RecoverPost, "internalRecoverValidatePost");
        const existing = new Set(deps.listPools().map((p) => p.name));
        // A pool given with a driver is one to create from its source: not supported here.
        if (body.pools.some((p) => !existing.has(p.name) || p.driver)) throw new NotImplemented();
        const unknown = await deps.recoverScan(body.pools.map((p) => p.name));
        return sync({ UnknownVolumes: unknown, DependencyErrors: [] });
      },
    }, "local"),
    // Importing recovered volumes is not implemented: the router answers LXD's 501.
    route("/internal/recover/import", {}, "local"),
  ];
}
