// /1.0/instances (and the /1.0/containers aliases older clients such as pylxd use).
import { collectionOf, instanceResources, instanceTask } from "./instance-task.js";
import { apiUrl } from "../../shared/urls.js";
import { pipeline } from "node:stream/promises";
import type { z } from "zod";
import { parseYaml, stringifyYaml } from "../../shared/yaml.js";
import type { ClusterPort } from "../../ports.js";
import type { EventHub } from "../../operations/events.js";
import type { OperationManager } from "../../operations/manager.js";
import type { SnapshotRow } from "../../db/snapshot-repo.js";
import type { BackupRow } from "../../instances/backups.js";
import type { InstanceRow } from "../../db/instance-repo.js";
import type { InstanceFiles } from "../../instances/instance-files.js";
import { matchFilter, parseFilter } from "../../shared/filter.js";
import { generateInstanceName } from "../../instances/names.js";
import { parseInstanceType } from "../../instances/instance-types.js";
import { InstanceService, instanceUrl, type CreateRequest } from "../../instances/service.js";
import { readInstanceStates } from "../../instances/state.js";
import { instanceStateHandlers } from "./instance-state.js";
import { checkLocalMove, moveLocally, type LocalMove } from "../../instances/move.js";
import { validateInstanceName } from "../../instances/names.js";
import { readBody } from "../../shared/json.js";
import { BadRequest } from "../../shared/errors.js";
import { checkEtag, handled, operation, route, sync, type ApiRequest, type Handler, type Route } from "../route.js";
import { LOCAL_ONLY_HEADER } from "../../shared/requestor.js";
import type { InstanceMigration, LiveRestore } from "../../migration/instances.js";
import type { ClusterMove } from "../../migration/cluster-move.js";
import { isStagingName } from "../../migration/move-journal.js";
import { isAdmin } from "../access.js";
import { closeChannels, sinkChannels, sinkOperation, sinkSockets, type SinkRequest } from "../../migration/channel.js";
import { assertRefreshable, refreshFromCopy } from "../../instances/refresh.js";
import { InstancePatch, InstancePost, InstancePut, InstancesPost, MetadataPut } from "../../shared/schemas/instances.js";
import { configStrings } from "../../shared/schemas/server.js";


const validateName = (name: string) => {
  try {
    validateInstanceName(name);
  } catch (e) {
    throw new BadRequest((e as Error).message);
  }
};

export interface InstanceRouteDeps {
  operations: OperationManager;
  events: EventHub;
  cluster: Pick<ClusterPort, "clustered" | "name" | "withWriteLock" | "remoteInstances">;
  migration: InstanceMigration;
  /** Moves to another cluster member (`?target=`). */
  clusterMove: ClusterMove;
}

export function instanceRoutes(deps: InstanceRouteDeps, svc: InstanceService, files: InstanceFiles): Route[] {
  const { operations, events, migration } = deps;
  const rt = () => svc.runtime;
  const resources = instanceResources;
  const state = instanceStateHandlers(operations, svc);

  /** `listed`: every instance's snapshots and backups, read at once for a list. */
  const full = (row: InstanceRow, recursion: number, listed?: { snapshots: Map<number, SnapshotRow[]>; backups: Map<number, BackupRow[]> }) => {
    const base = svc.view(row);
    const view: Record<string, unknown> = { ...base };
    if (recursion > 1) {
      view.state = null; // filled by readInstanceStates, in one batch for a whole list
      view.snapshots = svc.snapshots.views(row, listed ? (listed.snapshots.get(row.id) ?? []) : undefined);
      const backups = listed ? (listed.backups.get(row.id) ?? []) : svc.backups.list(row);
      view.backups = backups.length ? backups.map((b) => svc.backups.view(b)) : null;
    }
    return view;
  };

  /**
   * A cluster's list (recursion 1 or 2), as LXD's: every other member holding some of the instances is
   * asked at once for its own (full views, live state) while this member builds the views of its
   * own; an instance whose member does not answer keeps the replica's view, status Error and no
   * state. A member asked by another (local-only header) lists its own instances only.
   */
  const clusterRows = (rows: InstanceRow[], req: ApiRequest, all: boolean) => {
    const me = deps.cluster.name();
    const here = (row: InstanceRow) => !row.node || row.node === me;
    if (req.headers[LOCAL_ONLY_HEADER]) return { rows: rows.filter(here), members: undefined };
    if (rows.every(here)) return { rows, members: undefined };
    const recursion = req.recursion > 1 ? "2" : "1";
    const query = new URLSearchParams(all ? { recursion, "all-projects": "true" } : { recursion, project: req.project }).toString();
    return { rows, members: deps.cluster.remoteInstances(query, req.requestor), here };
  };

  const list: Handler = async (req) => {
    const all = req.query["all-projects"] === "true";
    const collection = collectionOf(req.url);
    // all-projects: a restricted client gets its certificate's projects only.
    // The copy a move to another member makes under LXD's temporary name is not a user's
    // instance: it is never listed (whether its move runs or a crash left it for settling).
    let rows = (all ? svc.list(undefined).filter((r) => req.mayUse(r.project)) : svc.list(req.project)).filter((r) => !isStagingName(r.name));
    const filter = req.query.filter;
    if (req.recursion === 0 && !filter) return sync(rows.map((r) => apiUrl(r.project, collection, r.name)));
    // As LXD, a cluster's list asks the members holding instances for their live views (statuses
    // reported between members lag a start or stop by the time the report takes to arrive).
    const fanOut = req.recursion > 0 && deps.cluster.clustered() ? clusterRows(rows, req, all) : undefined;
    if (fanOut) rows = fanOut.rows;
    const listed = rows;
    // Statuses and (recursion=2) the live state of this member's instances are read together.
    const statuses = svc.readStatuses(listed);
    const here = fanOut?.here;
    const local = here ? listed.filter(here) : listed;
    const states = req.recursion > 1 ? readInstanceStates(svc, local, statuses) : undefined;
    states?.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    const known = await statuses;
    const related = req.recursion > 1 ? { snapshots: svc.snapshots.byInstance(), backups: svc.backups.byInstance() } : undefined;
    const views = svc.batchWithStatuses(known, () => listed.map((r) => ({ row: r, view: full(r, Math.max(req.recursion, 1), related) })));
    const localViews = here ? views.filter(({ row }) => here(row)) : views;
    const [localStates, answers] = await Promise.all([states, fanOut?.members]);
    localStates?.forEach((state, i) => (localViews[i].view.state = state));
    if (answers) {
      for (const item of views) {
        if (here!(item.row)) continue;
        const answered = answers.get(item.row.node)?.find((v) => v.name === item.row.name && (v.project ?? "default") === item.row.project);
        if (answered) item.view = answered;
        else Object.assign(item.view, { status: "Error", status_code: 112 }, req.recursion > 1 ? { state: null } : {});
      }
    }
    const clauses = filter ? parseFilter(filter) : undefined;
    const kept = clauses ? views.filter((v) => matchFilter(v.view, clauses)) : views;
    rows = kept.map((k) => k.row);
    if (req.recursion === 0) return sync(rows.map((r) => apiUrl(r.project, collection, r.name)));
    return sync(kept.map((k) => k.view));
  };

  /** `lxc import`: the body is a backup tarball, received before the operation starts (as LXD). */
  const importBackup: Handler = async (req) => {
    const backups = svc.backups;
    const header = (h: string) => {
      const v = req.stream.headers[h];
      return Array.isArray(v) ? v[0] : v;
    };
    const received = await backups.receive(req.stream);
    let plan: Awaited<ReturnType<typeof backups.inspect>>;
    try {
      plan = await backups.inspect(req.project, received.file, { name: header("x-lxd-name"), pool: header("x-lxd-pool") });
    } catch (e) {
      received.discard();
      throw e;
    }
    const { project } = req;
    return instanceTask(operations, { description: "Restoring backup", project, resources: resources(project, plan.name) }, async (signal) => {
      try {
        await backups.restore(project, received.file, plan, signal);
      } finally {
        received.discard();
      }
    });
  };

  const create: Handler = async (req, reply) => {
    if (/^application\/octet-stream\b/i.test(String(req.stream.headers["content-type"] ?? ""))) return importBackup(req, reply);
    const body = await req.body(InstancesPost, "api.InstancesPost");
    // A standalone server: no member can be targeted (so restricted.cluster.target holds too).
    // Clustered, the router forwarded a create for another member there: here it is this member.
    const cluster = deps.cluster;
    if (req.query.target && !cluster.clustered()) throw new BadRequest("Target only allowed when clustered");
    if (req.query.target && req.query.target !== cluster.name()) throw new BadRequest(`Member "${req.query.target}" not found`);
    // No name: LXD makes one up ("adjective-animal"), unique in the project.
    const name = body.name || generateInstanceName((n) => svc.repo.get(req.project, n) !== undefined);
    // `-t c0.5-m0.2`: limits the request's own config does not set, as LXD.
    let config = body.config;
    if (body.instance_type) {
      let limits: Record<string, string>;
      try {
        limits = parseInstanceType(body.instance_type);
      } catch (e) {
        throw new BadRequest((e as Error).message);
      }
      config = { ...(config ?? {}) };
      for (const [k, v] of Object.entries(limits)) if (!config[k]) config[k] = v;
    }
    const request: CreateRequest = {
      name,
      type: body.type,
      architecture: body.architecture,
      config,
      devices: body.devices,
      ephemeral: body.ephemeral,
      profiles: body.profiles ?? undefined,
      description: body.description,
      source: { type: body.source?.type ?? "none", alias: body.source?.alias, fingerprint: body.source?.fingerprint, source: body.source?.source, instanceOnly: body.source?.instance_only || body.source?.container_only || false, project: body.source?.project || undefined },
    };
    // --refresh of an existing instance (a missing one is created as by a plain copy, as LXD).
    if (body.source?.refresh && (request.source.type === "copy" || request.source.type === "migration") && svc.repo.get(req.project, name)) return refresh(req, name, request, body.source);
    let sockets: ReturnType<typeof sinkSockets>;
    let sink: SinkRequest | undefined;
    if (request.source.type === "migration") {
      const src = body.source!;
      if (src.mode !== "pull" && src.mode !== "push") throw new BadRequest(`Unknown migration mode "${src.mode ?? ""}"`);
      sink = { mode: src.mode, operation: src.operation, certificate: src.certificate, secrets: src.secrets ?? {}, refresh: src.refresh ?? false, instanceOnly: request.source.instanceOnly ?? false, live: src.live ?? false };
      migration.checkSink(sink);
      // A stateful copy (a cluster member's live move): the state dumped into its volume travels with it.
      if (body.stateful) request.stateful = true;
      // The source's base image (LXD's source.base-image) is recorded as volatile.base_image, as
      // LXD's instance create does; when that image is here the new volume starts from it.
      const baseImage = (src as { "base-image"?: unknown })["base-image"];
      if (typeof baseImage === "string" && baseImage) request.config = { ...(request.config ?? {}), "volatile.base_image": baseImage };
      sockets = sinkSockets(sink);
      const sinkReq = sink;
      request.migrate = async ({ pool, signal }) => {
        const ch = await sinkChannels(sinkReq, sockets, signal);
        let restore: LiveRestore | undefined;
        try {
          restore = await migration.receive(req.project, request.name, pool, sinkReq, ch, signal, () => {});
        } finally {
          if (!restore) closeChannels(ch);
        }
        // Live: the channels stay open until the new instance has started from the dump.
        const last = restore;
        if (last) return (error?: Error, started?: () => void) => last(error, started).finally(() => closeChannels(ch));
      };
    }
    const src = body.source;
    if (src?.type === "image" && src.server) {
      request.source.remote = { server: src.server, protocol: src.protocol, certificate: src.certificate, secret: src.secret, project: src.project };
    }
    const checked = svc.checkCreate(req.project, request);
    const res = resources(req.project, name);
    if (sink?.mode === "push" && sockets) {
      const s = sockets;
      return operation(sinkOperation(operations, { description: "Creating instance", project: req.project, resources: res }, s, (signal) => svc.create(req.project, request, checked, signal)));
    }
    if (checked.copySnapshot && request.source.source) {
      // The source snapshot is a resource of the operation too, as upstream lists it.
      const src = resources(request.source.project ?? req.project, request.source.source);
      res.instances.push(...src.instances);
      res.containers.push(...src.containers);
    }
    // A pull can be cancelled while it downloads, as LXD's image download canceller allows.
    return instanceTask(operations, { description: "Creating instance", project: req.project, resources: res, mayCancel: !!request.source.remote }, (signal, update) => svc.create(req.project, request, checked, signal, update));
  };

  /** `lxc copy --refresh` into an existing instance: locally from an instance or snapshot, or from a migration peer. */
  const refresh = (req: Parameters<Handler>[0], name: string, request: CreateRequest, src: z.infer<typeof InstancesPost>["source"] & object) => {
    const { project } = req;
    const target = svc.require(project, name);
    const res = resources(project, name);
    if (request.source.type === "copy") {
      const from = request.source.source ?? "";
      if (!from) throw new BadRequest("Must specify a source instance");
      const [parent, snap] = from.split("/", 2);
      const source = svc.require(request.source.project || project, parent);
      if (snap !== undefined) svc.snapshots.require(source, snap);
      const instanceOnly = request.source.instanceOnly ?? false;
      return instanceTask(operations, { description: "Creating instance", project, resources: res }, (signal) => refreshFromCopy(svc, project, name, source, { snapshot: snap, instanceOnly, signal }));
    }
    if (src.mode !== "pull" && src.mode !== "push") throw new BadRequest(`Unknown migration mode "${src.mode ?? ""}"`);
    assertRefreshable(svc, target);
    const sink: SinkRequest = { mode: src.mode, operation: src.operation, certificate: src.certificate, secrets: src.secrets ?? {}, refresh: true, instanceOnly: request.source.instanceOnly ?? false, live: false };
    const sockets = sinkSockets(sink);
    const pool = InstanceService.rootDisk(svc.expanded(target).devices).pool;
    const run = async (signal: AbortSignal) => {
      const ch = await sinkChannels(sink, sockets, signal);
      try {
        await svc.runtime.serialize(project, name, async () => {
          assertRefreshable(svc, svc.require(project, name));
          await migration.receive(project, name, pool, sink, ch, signal, () => {});
        });
      } finally {
        closeChannels(ch);
      }
    };
    if (sockets) {
      return operation(sinkOperation(operations, { description: "Creating instance", project, resources: res }, sockets, run));
    }
    return instanceTask(operations, { description: "Creating instance", project, resources: res }, (signal) => run(signal));
  };

  const etagOf = (row: InstanceRow) => ({ architecture: row.architecture, config: row.config, devices: row.devices, ephemeral: row.ephemeral, profiles: row.profiles, description: row.description });

  const get: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const etag = etagOf(row);
    // instance_get_full: any recursion on a single instance adds state, snapshots and backups.
    if (req.recursion === 0) return sync(full(row, 0), { etag });
    const statuses = svc.readStatuses([row]);
    const state = readInstanceStates(svc, [row], statuses);
    state.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    const view = svc.batchWithStatuses(await statuses, () => full(row, 2));
    [view.state] = await state;
    return sync(view, { etag });
  };

  const put: Handler = async (req) => {
    checkEtag(req, etagOf(svc.require(req.project, req.params.name)));
    const body = await req.body(InstancePut, "api.InstancePut");
    const name = req.params.name;
    if (body.restore) {
      // `lxc restore`: {"restore": "c1/snap0"} (or just the snapshot name).
      const ref = body.restore;
      return instanceTask(operations, { description: "Restoring snapshot", project: req.project, resources: resources(req.project, name) }, (signal) => svc.snapshots.restore(req.project, name, ref, signal));
    }
    return instanceTask(operations, { description: "Updating instance", project: req.project, resources: resources(req.project, name) }, () => svc.runtime.serialize(req.project, name, () => svc.update(req.project, name, { ...body, profiles: body.profiles ?? undefined }, "put")));
  };

  const patch: Handler = async (req) => {
    checkEtag(req, etagOf(svc.require(req.project, req.params.name)));
    const body = await req.body(InstancePatch, "api.InstancePut");
    const name = req.params.name;
    const put = {
      architecture: body.architecture,
      config: body.config ? configStrings(body.config) : undefined,
      devices: body.devices ? Object.fromEntries(Object.entries(body.devices).map(([k, v]) => [k, configStrings(v ?? {})])) : undefined,
      ephemeral: body.ephemeral,
      profiles: body.profiles ?? undefined,
      description: body.description,
    };
    await svc.runtime.serialize(req.project, name, () => svc.update(req.project, name, put, "patch"));
    return sync({});
  };

  const del: Handler = (req) => {
    const row = svc.require(req.project, req.params.name);
    if (rt().isRunning(row)) throw new BadRequest("Instance is running");
    return instanceTask(operations, { description: "Deleting instance", project: req.project, resources: resources(req.project, row.name) }, () => svc.runtime.serialize(req.project, row.name, () => svc.delete(req.project, row.name)));
  };

  const rename: Handler = async (req) => {
    const body = await req.body(InstancePost, "api.InstancePost");
    const name = req.params.name;
    // With ?target= the cluster router leaves the write lock to the handler (see router.ts).
    const locked = <T>(fn: () => Promise<T>) => (req.query.target ? deps.cluster.withWriteLock(fn) : fn());
    if (body.migration) {
      // Server-side moves between pools and projects (instance_pool_move, instance_project_move).
      if (body.pool || body.project) {
        const move: LocalMove = { name: body.name, pool: body.pool || undefined, project: body.pool ? undefined : body.project, instanceOnly: body.instance_only || body.container_only || false, live: body.live ?? true };
        if (move.name) validateName(move.name);
        checkLocalMove(svc, req.project, name, move);
        return instanceTask(operations, { description: "Migrating instance", project: req.project, resources: { instances: [instanceUrl(req.project, name)] } }, (signal) => locked(() => moveLocally(svc, req.project, name, move, signal)));
      }
      // To another member of the cluster: this member moves it there itself (LXD's migrateInstance).
      const target = req.query.target;
      if (target) {
        const move = { target, name: body.name, live: body.live ?? true, instanceOnly: body.instance_only || body.container_only || false };
        await deps.clusterMove.check(req.project, name, move, isAdmin(req.requestor));
        return instanceTask(operations, { description: "Migrating instance", project: req.project, resources: resources(req.project, name) }, (_signal, update) => deps.clusterMove.run(req.project, name, move, update));
      }
      // Migration source: pull (websocket operation) or push (connect to body.target).
      return operation(migration.startSource(req.project, name, { live: body.live ?? true, instanceOnly: body.instance_only || body.container_only || false, target: body.target ? { certificate: body.target.certificate, operation: body.target.operation, websockets: body.target.secrets } : undefined }));
    }
    svc.checkRename(req.project, name, body.name);
    return instanceTask(operations, { description: "Renaming instance", project: req.project, resources: resources(req.project, name) }, () => locked(() => svc.runtime.serialize(req.project, name, () => svc.rename(req.project, name, body.name))));
  };

  const row = (req: { project: string; params: Record<string, string> }) => svc.require(req.project, req.params.name);

  const logs: Handler = (req) => {
    const r = row(req);
    return sync(files.logNames(r).map((f) => `/1.0/instances/${r.name}/logs/${f}`));
  };
  const getLog: Handler = (req, reply) => {
    const log = files.openLog(row(req), req.params.file);
    // Exec output can be large: streamed with backpressure.
    reply.hijack();
    reply.raw.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-disposition": `inline;filename=${req.params.file}`,
      "content-length": String(log.size),
      "last-modified": log.mtime.toUTCString(),
    });
    void pipeline(log.stream(), reply.raw).catch(() => reply.raw.destroy());
    return handled();
  };
  const deleteLog: Handler = (req) => {
    files.deleteLog(row(req), req.params.file);
    return sync({});
  };

  const consoleLog: Handler = (req, reply) => {
    void reply.header("Content-Type", "application/octet-stream").send(files.consoleLog(row(req)));
    return handled();
  };
  const clearConsole: Handler = (req) => {
    files.clearConsoleLog(row(req));
    return sync({});
  };

  const getMetadata: Handler = async (req) => {
    const text = await files.readMetadata(row(req));
    const meta = (text ? parseYaml(text) : {}) as Record<string, unknown>;
    return sync({ architecture: "", creation_date: 0, expiry_date: 0, properties: {}, templates: {}, ...meta });
  };
  const putMetadata: Handler = async (req) => {
    const r = row(req);
    const body = await req.body(MetadataPut, "api.ImageMetadata");
    await files.writeMetadata(r, stringifyYaml(body));
    events.lifecycle("instance-metadata-updated", instanceUrl(r.project, r.name), { project: r.project });
    return sync({});
  };

  const templates: Handler = async (req, reply) => {
    const r = row(req);
    const path = req.query.path;
    if (!path) return sync(await files.templateNames(r));
    void reply.header("Content-Type", "application/octet-stream").send(await files.readTemplate(r, path));
    return handled();
  };
  const uploadTemplate: Handler = async (req) => {
    const r = row(req);
    const path = req.query.path;
    if (!path) throw new BadRequest("missing path argument");
    await files.writeTemplate(r, path, await readBody(req.stream));
    events.lifecycle("instance-metadata-template-created", instanceUrl(r.project, r.name), { project: r.project, context: { path } });
    return sync({});
  };
  const deleteTemplate: Handler = async (req) => {
    const r = row(req);
    const path = req.query.path;
    if (!path) throw new BadRequest("missing path argument");
    await files.deleteTemplate(r, path);
    events.lifecycle("instance-metadata-template-deleted", instanceUrl(r.project, r.name), { project: r.project, context: { path } });
    return sync({});
  };

  const routes: Route[] = [];
  for (const base of ["/1.0/instances", "/1.0/containers"]) {
    routes.push(
      route(base, { GET: list, POST: create, PUT: state.bulk }, "project"),
      route(`${base}/:name`, { GET: get, PUT: put, PATCH: patch, DELETE: del, POST: rename }, "project"),
      route(`${base}/:name/state`, { GET: state.get, PUT: state.put }, "project"),
      route(`${base}/:name/logs`, { GET: logs }, "project"),
      route(`${base}/:name/logs/:file`, { GET: getLog, DELETE: deleteLog }, "project"),
      route(`${base}/:name/console`, { GET: consoleLog, DELETE: clearConsole }, "project"),
      route(`${base}/:name/metadata`, { GET: getMetadata, PUT: putMetadata, PATCH: putMetadata }, "project"),
      route(`${base}/:name/metadata/templates`, { GET: templates, POST: uploadTemplate, PUT: uploadTemplate, DELETE: deleteTemplate }, "project"),
    );
  }
  return routes;
}
