// /1.0/instances/{name}/state and the bulk form, PUT /1.0/instances (`lxc start --all`).
import type { z } from "zod";
import { InstancesPut, StatePut } from "../../shared/schemas/instances.js";
import type { Core } from "../../daemon/feature.js";
import type { InstanceRow } from "../../db/instance-repo.js";
import { instanceUrl, type InstanceService } from "../../instances/service.js";
import { readInstanceDisk, readInstanceState } from "../../instances/state.js";
import { BadRequest } from "../../shared/errors.js";
import { sync, type Handler } from "../route.js";
import { instanceResources, instanceTask } from "./instance-task.js";

type Action = "start" | "stop" | "restart" | "freeze" | "unfreeze";
type StateRequest = z.infer<typeof StatePut>;

const DESCRIPTIONS: Record<Action, string> = {
  start: "Starting instance",
  stop: "Stopping instance",
  restart: "Restarting instance",
  freeze: "Freezing instance",
  unfreeze: "Unfreezing instance",
};

const isAction = (a: string): a is Action => Object.hasOwn(DESCRIPTIONS, a);

export function instanceStateHandlers(core: Core, svc: InstanceService): { get: Handler; put: Handler; bulk: Handler } {
  const rt = () => svc.runtime;

  const apply = (project: string, name: string, req: StateRequest): Promise<void> => {
    const opts = { force: req.force, timeout: req.timeout };
    switch (req.action as Action) {
      case "start":
        return rt().start(project, name, { stateful: req.stateful });
      case "stop":
        return rt().stop(project, name, { ...opts, stateful: req.stateful });
      case "restart":
        return rt().restart(project, name, opts);
      case "freeze":
        return rt().freeze(project, name);
      case "unfreeze":
        return rt().unfreeze(project, name);
    }
  };

  const get: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const state = await readInstanceState(svc, row);
    if (state.status !== "Stopped") state.disk = await readInstanceDisk(svc, row);
    return sync(state);
  };

  const put: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const body = await req.body(StatePut, "api.InstanceStatePut");
    if (!isAction(body.action)) throw new BadRequest(`Unknown action ${body.action}`);
    const status = rt().status(row);
    if (body.action === "start" && status !== "Stopped") throw new BadRequest("The instance is already running");
    if (body.action === "stop" && status === "Stopped") throw new BadRequest("The instance is already stopped");
    const { project } = req;
    return instanceTask(core.operations, { description: DESCRIPTIONS[body.action], project, resources: instanceResources(project, row.name) }, () => apply(project, row.name, body));
  };

  /**
   * Every instance of the project whose state the action changes, all at once (LXD's
   * instancesPut). Failures are gathered into one error naming each instance.
   */
  const bulk: Handler = async (req) => {
    const body = await req.body(InstancesPut, "api.InstancesPut");
    const state = body.state ?? { action: "", timeout: -1, force: false, stateful: false };
    if (!isAction(state.action)) throw new BadRequest(`Unknown action: '${state.action}'`);
    const { project } = req;
    const wanted: Record<Action, (s: ReturnType<ReturnType<typeof rt>["status"]>) => boolean> = {
      start: (s) => s === "Stopped",
      stop: (s) => s !== "Stopped",
      restart: (s) => s !== "Stopped",
      freeze: (s) => s === "Running",
      unfreeze: (s) => s === "Frozen",
    };
    const rows: InstanceRow[] = svc.list(project).filter((r) => wanted[state.action as Action](rt().status(r)));
    const names = rows.map((r) => r.name);
    const resources = { instances: names.map((n) => instanceUrl(project, n)), containers: names.map((n) => instanceUrl(project, n).replace("/1.0/instances/", "/1.0/containers/")) };
    return instanceTask(core.operations, { description: DESCRIPTIONS[state.action], project, resources }, async () => {
      const results = await Promise.allSettled(names.map((n) => apply(project, n, state)));
      const failed = results.flatMap((r, i) => (r.status === "rejected" ? [` - Instance: ${names[i]}: ${(r.reason as Error).message}\n`] : []));
      if (failed.length) throw new Error(`The following instances failed to update state:\n${failed.join("")}`);
    });
  };

  return { get, put, bulk };
}
