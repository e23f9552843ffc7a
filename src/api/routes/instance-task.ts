// Shared by the instance, snapshot and backup routes: the resources an instance operation
// names, and the "run this as a task operation" shape they all answer with.
import type { OperationManager } from "../../operations/manager.js";
import { operation, type Result } from "../route.js";

export { instanceResources } from "../../instances/access.js";

/** The API collection a request came in under (pylxd uses /1.0/containers). */
export const collectionOf = (url: string) => (url.startsWith("/1.0/containers") ? "containers" : "instances");

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
