// Reaching an instance's runtime (exec, console, files) through the instances port.
import { BadRequest, NotImplemented } from "../shared/errors.js";
import type { Core } from "../daemon/feature.js";
import type { InstanceRuntime } from "./runtime-port.js";
import { apiUrl } from "../shared/urls.js";

export function instanceRuntime(core: Core, project: string, name: string): InstanceRuntime {
  const port = core.ports.instances;
  if (!port?.runtimeOf) throw new NotImplemented("Instance runtime access is not available");
  return port.runtimeOf(project, name);
}

/** Exec and console need the instance up (LXD's messages). */
export function runningRuntime(core: Core, project: string, name: string): InstanceRuntime {
  const rt = instanceRuntime(core, project, name);
  if (!rt.running) throw new BadRequest("Instance is not running");
  if (rt.frozen) throw new BadRequest("Instance is frozen");
  return rt;
}

/** Operation resources naming the instance under both of LXD's collections. */
export function instanceResources(project: string, name: string): Record<string, string[]> {
  return { containers: [apiUrl(project, "containers", name)], instances: [apiUrl(project, "instances", name)] };
}
