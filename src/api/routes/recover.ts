// /internal/recover/*: what `lxd recover` asks the daemon. The scan covers the existing pools and
// the import recreates the records of what it found (instances from their backup.yaml), and of a
// pool the database lost when the user names its driver and source.
import { z } from "zod";
import { route, sync, type Route } from "../route.js";
import type { RecoverPoolSpec, UnknownVolume } from "../../storage/recover.js";

const RecoverPost = z.object({
  pools: z.array(z.object({ name: z.string(), driver: z.string().optional(), config: z.record(z.string()).optional(), description: z.string().optional() }).passthrough()).default([]),
});

export interface RecoverDeps {
  recoverValidate(pools: RecoverPoolSpec[]): Promise<{ UnknownVolumes: UnknownVolume[]; DependencyErrors: string[] }>;
  recoverImport(pools: RecoverPoolSpec[]): Promise<void>;
}

export function recoverRoutes(deps: RecoverDeps): Route[] {
  return [
    route("/internal/recover/validate", {
      POST: async (req) => {
        const body = await req.body(RecoverPost, "internalRecoverValidatePost");
        return sync(await deps.recoverValidate(body.pools));
      },
    }, "local"),
    route("/internal/recover/import", {
      POST: async (req) => {
        const body = await req.body(RecoverPost, "internalRecoverImportPost");
        await deps.recoverImport(body.pools);
        return sync(null);
      },
    }, "local"),
  ];
}
