// /internal/recover/*: what `lxd recover` asks the daemon. The scan covers the existing pools and
// the import recreates the records of what it found (instances from their backup.yaml); pools
// the database does not know (given with a driver) are not implemented (LXD's 501 envelope).
import { z } from "zod";
import { NotImplemented } from "../../shared/errors.js";
import { route, sync, type Route } from "../route.js";
import type { UnknownVolume } from "../../storage/recover.js";

const RecoverPost = z.object({
  pools: z.array(z.object({ name: z.string(), driver: z.string().optional(), config: z.record(z.string()).optional(), description: z.string().optional() }).passthrough()).default([]),
});

export interface RecoverDeps {
  recoverValidate(pools: string[]): Promise<{ UnknownVolumes: UnknownVolume[]; DependencyErrors: string[] }>;
  recoverImport(pools: string[]): Promise<void>;
  listPools(): { name: string }[];
}

/** The pools of a request, all known to the database (a new pool to create is not supported). */
function knownPools(deps: RecoverDeps, pools: { name: string; driver?: string }[]): string[] {
  const existing = new Set(deps.listPools().map((p) => p.name));
  if (pools.some((p) => !existing.has(p.name) || p.driver)) throw new NotImplemented();
  return pools.map((p) => p.name);
}

export function recoverRoutes(deps: RecoverDeps): Route[] {
  return [
    route("/internal/recover/validate", {
      POST: async (req) => {
        const body = await req.body(RecoverPost, "internalRecoverValidatePost");
        return sync(await deps.recoverValidate(knownPools(deps, body.pools)));
      },
    }, "local"),
    route("/internal/recover/import", {
      POST: async (req) => {
        const body = await req.body(RecoverPost, "internalRecoverImportPost");
        await deps.recoverImport(knownPools(deps, body.pools));
        return sync(null);
      },
    }, "local"),
  ];
}
