// Shared by the instance, snapshot and backup routes: the resources an instance operation
// names, and the "run this as a task operation" shape they all answer with.
import type { OperationManager } from "../../operations/manager.js";
import { instanceUrl } from "../../instances/service.js";
import { operation, type Result } from "../route.js";

/** An instance under both API prefixes, as LXD lists it in operation resources. */
export function instanceResources(project: string, name: string): Record<string, string[]> {
  const url = instanceUrl(project, name);
  return { instances: [url], containers: [url.replace("/1.0/instances/", "/1.0/containers/")] };
}

/** The API prefix a request came in under (pylxd uses /1.0/containers). */
export const urlPrefixOf = (url: string) => (url.startsWith("/1.0/containers") ? "/1.0/containers" : "/1.0/instances");

/** Answer with a task operation running `work`. */
export function instanceTask(
  ops: OperationManager,
  opts: { description: string; project: string; resources: Record<string, string[]>; mayCancel?: boolean },
  work: (signal: AbortSignal, updateMetadata: (patch: Record<string, unknown>) => void) => Promise<unknown>,
): Result {
  return operation(
    ops.create({
      class: "task",
      ...opts,
      run: async (ctx) => {
        await work(ctx.signal, ctx.updateMetadata);
      },
    }),
  );
}
