// Reaching an instance's runtime (exec, console, files): the one dependency those services have on instances.
import { BadRequest } from "../shared/errors.js";
import type { InstanceRuntime } from "./runtime-port.js";
import { apiUrl } from "../shared/urls.js";

/** An instance's runtime by project and name; throws NotFound("Instance not found"). */
export type RuntimeOf = (project: string, name: string) => InstanceRuntime;

/** Exec and console need the instance up (LXD's messages). */
export function runningRuntime(runtimeOf: RuntimeOf, project: string, name: string): InstanceRuntime {
  const rt = runtimeOf(project, name);
  if (!rt.running) throw new BadRequest("Instance is not running");
  if (rt.frozen) throw new BadRequest("Instance is frozen");
  return rt;
}

/** Operation resources naming the instance under both of LXD's collections. */
export function instanceResources(project: string, name: string): Record<string, string[]> {
  return { containers: [apiUrl(project, "containers", name)], instances: [apiUrl(project, "instances", name)] };
}
