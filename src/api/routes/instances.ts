// /1.0/instances (and the /1.0/containers aliases older clients such as pylxd use).
import { instanceResources, instanceTask } from "./instance-task.js";
import { createReadStream, existsSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { z } from "zod";
import YAML from "yaml";
import type { Core } from "../../daemon/feature.js";
import type { InstanceRow } from "../../db/instance-repo.js";
import { logDir } from "../../instances/lxc/config.js";
import { generateInstanceName } from "../../instances/names.js";
import { parseInstanceType } from "../../instances/instance-types.js";
import { InstanceService, instanceUrl, type CreateRequest } from "../../instances/service.js";
import { readInstanceDisk, readInstanceState } from "../../instances/state.js";
import { checkLocalMove, moveLocally, type LocalMove } from "../../instances/move.js";
import { validateInstanceName } from "../../instances/names.js";
import { readBody } from "../../shared/json.js";
import { BadRequest, InternalError, NotFound } from "../../shared/errors.js";
import { checkEtag, handled, operation, route, sync, type Handler, type Route } from "../route.js";
import { InstanceMigration, type SinkRequest } from "../../migration/instances.js";
import { ConfigMap, configStrings } from "../../shared/schemas/server.js";

const Devices = z
  .record(z.string(), z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).nullish())
  .nullish()
  .transform((m) => Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, configStrings(v ?? {})])));

// The writable fields of an instance (LXD's InstancePut), shared by PUT and POST /1.0/instances.
const instancePutFields = {
  architecture: z.string().optional(),
  config: ConfigMap.transform((m) => configStrings(m)),
  devices: Devices,
  ephemeral: z.boolean().optional(),
  profiles: z.array(z.string()).nullish(),
  description: z.string().optional(),
};

const InstancePut = z
  .object({
    ...instancePutFields,
    restore: z.string().optional(),
    stateful: z.boolean().optional(),
  })
  .passthrough();

const InstancePatch = z
  .object({
    architecture: z.string().optional(),
    config: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).nullish(),
    devices: z.record(z.string(), z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).nullish()).nullish(),
    ephemeral: z.boolean().optional(),
    profiles: z.array(z.string()).nullish(),
    description: z.string().optional(),
  })
  .passthrough();

const InstancesPost = z
  .object({
    ...instancePutFields,
    name: z.string().default(""),
    type: z.string().optional(),
    instance_type: z.string().optional(),
    source: z
      .object({
        type: z.string().default("none"),
        alias: z.string().optional(),
        fingerprint: z.string().optional(),
        source: z.string().optional(),
        instance_only: z.boolean().optional(),
        container_only: z.boolean().optional(),
        project: z.string().optional(),
        mode: z.string().optional(),
        operation: z.string().optional(),
        certificate: z.string().optional(),
        secrets: z.record(z.string(), z.string()).nullish(),
        live: z.boolean().optional(),
        refresh: z.boolean().optional(),
        server: z.string().optional(),
        protocol: z.string().optional(),
        secret: z.string().optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();

const InstancePost = z
  .object({
    name: z.string().default(""),
    migration: z.boolean().optional(),
    live: z.boolean().optional(),
    instance_only: z.boolean().optional(),
    container_only: z.boolean().optional(),
    pool: z.string().optional(),
    project: z.string().optional(),
    target: z.object({ certificate: z.string().default(""), operation: z.string(), secrets: z.record(z.string(), z.string()) }).nullish(),
  })
  .passthrough();

const StatePut = z.object({
  action: z.string(),
  timeout: z.number().int().default(-1),
  force: z.boolean().default(false),
  stateful: z.boolean().default(false),
});

const STATE_DESCRIPTIONS: Record<string, string> = {
  start: "Starting instance",
  stop: "Stopping instance",
  restart: "Restarting instance",
  freeze: "Freezing instance",
  unfreeze: "Unfreezing instance",
};

/** LXD's `filter=` syntax: "FIELD eq|ne VALUE" clauses joined by and/or (evaluated left to right). */
export function matchesFilter(view: Record<string, unknown>, filter: string): boolean {
  const tokens = filter.trim().split(/\s+/);
  let result: boolean | undefined;
  let join: "and" | "or" = "and";
  for (let i = 0; i < tokens.length; ) {
    let negate = false;
    if (tokens[i] === "not") {
      negate = true;
      i++;
    }
    const [field, op, raw] = [tokens[i], tokens[i + 1], tokens[i + 2]];
    if (!field || !op || raw === undefined || !["eq", "ne"].includes(op)) throw new BadRequest(`Invalid filter: ${filter}`);
    const value = raw.replace(/^"|"$/g, "");
    let actual: unknown = view;
    const parts = field.split(".");
    if (parts[0] === "config" || parts[0] === "expanded_config" || parts[0] === "devices" || parts[0] === "expanded_devices") {
      const rest = parts.slice(1).join(".");
      actual = (view[parts[0]] as Record<string, unknown> | undefined)?.[rest];
    } else {
      for (const p of parts) actual = (actual as Record<string, unknown> | undefined)?.[p];
    }
    let ok = String(actual ?? "").toLowerCase() === value.toLowerCase();
    if (op === "ne") ok = !ok;
    if (negate) ok = !ok;
    result = result === undefined ? ok : join === "and" ? result && ok : result || ok;
    i += 3;
    if (tokens[i] === "and" || tokens[i] === "or") {
      join = tokens[i] as "and" | "or";
      i++;
    }
  }
  return result ?? true;
}

const validateName = (name: string) => {
  try {
    validateInstanceName(name);
  } catch (e) {
    throw new BadRequest((e as Error).message);
  }
};

export function instanceRoutes(core: Core, svc: InstanceService): Route[] {
  const rt = () => svc.runtime;
  const resources = instanceResources;
  const migration = new InstanceMigration(core, svc);

  const full = (row: InstanceRow, recursion: number) => {
    const view: Record<string, unknown> = { ...svc.view(row) };
    if (recursion > 1) {
      view.state = readInstanceState(svc, row);
      view.snapshots = svc.snapshots.views(row);
      const backups = svc.backups?.list(row) ?? [];
      view.backups = backups.length ? backups.map((b) => svc.backups!.view(b)) : null;
    }
    return view;
  };

  const list: Handler = (req) => {
    const all = req.query["all-projects"] === "true";
    const prefix = req.url.startsWith("/1.0/containers") ? "/1.0/containers" : "/1.0/instances";
    // all-projects: a restricted client gets its certificate's projects only.
    let rows = all ? svc.list(undefined).filter((r) => req.mayUse(r.project)) : svc.list(req.project);
    const filter = req.query.filter;
    if (req.recursion === 0 && !filter) return sync(rows.map((r) => `${prefix}/${r.name}${r.project === "default" ? "" : `?project=${r.project}`}`));
    const views = rows.map((r) => ({ row: r, view: full(r, Math.max(req.recursion, 1)) }));
    const kept = filter ? views.filter((v) => matchesFilter(v.view, filter)) : views;
    rows = kept.map((k) => k.row);
    if (req.recursion === 0) return sync(rows.map((r) => `${prefix}/${r.name}${r.project === "default" ? "" : `?project=${r.project}`}`));
    return sync(req.recursion > 1 ? kept.map((k) => k.view) : kept.map((k) => full(k.row, 1)));
  };

  /** `lxc import`: the body is a backup tarball, received before the operation starts (as LXD). */
  const importBackup: Handler = async (req) => {
    const backups = svc.backups;
    if (!backups) throw new Error("Backups are not available");
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
    return instanceTask(core.operations, { description: "Restoring backup", project, resources: resources(project, plan.name) }, async (signal) => {
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
    if (req.query.target) throw new BadRequest("Target only allowed when clustered");
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
    let sockets: ReturnType<InstanceMigration["sinkSockets"]>;
    let sink: SinkRequest | undefined;
    if (request.source.type === "migration") {
      const src = body.source!;
      if (src.mode !== "pull" && src.mode !== "push") throw new BadRequest(`Unknown migration mode "${src.mode ?? ""}"`);
      sink = { mode: src.mode, operation: src.operation, certificate: src.certificate, secrets: src.secrets ?? {}, refresh: src.refresh ?? false, instanceOnly: request.source.instanceOnly ?? false, live: src.live ?? false };
      if (sink.live) throw new InternalError("Unable to perform container live migration. CRIU isn't installed on the destination server");
      sockets = migration.sinkSockets(sink);
      const sinkReq = sink;
      request.migrate = async ({ pool, signal }) => {
        const ch = await migration.channels(sinkReq, sockets, signal);
        try {
          await migration.receive(req.project, request.name, pool, sinkReq, ch, signal, () => {});
        } finally {
          ch.control.close();
          ch.fs.terminate();
        }
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
      return operation(
        core.operations.create({ class: "websocket", description: "Creating instance", project: req.project, resources: res, metadata: { ...s.secrets }, secrets: s.secrets, connect: (sec, ws) => s.connect(sec, ws as never), run: async (ctx) => svc.create(req.project, request, checked, ctx.signal) }),
      );
    }
    if (checked.copySnapshot && request.source.source) {
      // The source snapshot is a resource of the operation too, as upstream lists it.
      const src = resources(request.source.project ?? req.project, request.source.source);
      res.instances.push(...src.instances);
      res.containers.push(...src.containers);
    }
    // A pull can be cancelled while it downloads, as LXD's image download canceller allows.
    return instanceTask(core.operations, { description: "Creating instance", project: req.project, resources: res, mayCancel: !!request.source.remote }, (signal, update) => svc.create(req.project, request, checked, signal, update));
  };

  const etagOf = (row: InstanceRow) => ({ architecture: row.architecture, config: row.config, devices: row.devices, ephemeral: row.ephemeral, profiles: row.profiles, description: row.description });

  const get: Handler = (req) => {
    const row = svc.require(req.project, req.params.name);
    const etag = etagOf(row);
    // instance_get_full: any recursion on a single instance adds state, snapshots and backups.
    return sync(full(row, req.recursion > 0 ? 2 : 0), { etag });
  };

  const put: Handler = async (req) => {
    checkEtag(req, etagOf(svc.require(req.project, req.params.name)));
    const body = await req.body(InstancePut, "api.InstancePut");
    const name = req.params.name;
    if (body.restore) {
      // `lxc restore`: {"restore": "c1/snap0"} (or just the snapshot name).
      const ref = body.restore;
      return instanceTask(core.operations, { description: "Restoring snapshot", project: req.project, resources: resources(req.project, name) }, (signal) => svc.snapshots.restore(req.project, name, ref, signal));
    }
    return instanceTask(core.operations, { description: "Updating instance", project: req.project, resources: resources(req.project, name) }, () => svc.runtime.serialize(req.project, name, () => svc.update(req.project, name, { ...body, profiles: body.profiles ?? undefined }, "put")));
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
    return instanceTask(core.operations, { description: "Deleting instance", project: req.project, resources: resources(req.project, row.name) }, () => svc.runtime.serialize(req.project, row.name, () => svc.delete(req.project, row.name)));
  };

  const rename: Handler = async (req) => {
    const body = await req.body(InstancePost, "api.InstancePost");
    const name = req.params.name;
    if (body.migration) {
      // Server-side moves between pools and projects (instance_pool_move, instance_project_move).
      if (body.pool || body.project) {
        const move: LocalMove = { name: body.name, pool: body.pool || undefined, project: body.pool ? undefined : body.project, instanceOnly: body.instance_only || body.container_only || false, live: body.live ?? true };
        if (move.name) validateName(move.name);
        checkLocalMove(svc, req.project, name, move);
        return instanceTask(core.operations, { description: "Migrating instance", project: req.project, resources: { instances: [instanceUrl(req.project, name)] } }, (signal) => moveLocally(svc, req.project, name, move, signal));
      }
      // Migration source: pull (websocket operation) or push (connect to body.target).
      return operation(migration.startSource(req.project, name, { live: body.live ?? true, instanceOnly: body.instance_only || body.container_only || false, target: body.target ? { certificate: body.target.certificate, operation: body.target.operation, websockets: body.target.secrets } : undefined }));
    }
    svc.checkRename(req.project, name, body.name);
    return instanceTask(core.operations, { description: "Renaming instance", project: req.project, resources: resources(req.project, name) }, () => svc.runtime.serialize(req.project, name, () => svc.rename(req.project, name, body.name)));
  };

  const getState: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const state = readInstanceState(svc, row);
    if (state.status !== "Stopped") state.disk = await readInstanceDisk(svc, row);
    return sync(state);
  };

  const putState: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const body = await req.body(StatePut, "api.InstanceStatePut");
    const description = STATE_DESCRIPTIONS[body.action];
    if (!description) throw new BadRequest(`Unknown action ${body.action}`);
    if (body.stateful) throw new BadRequest("Stateful stop/start is not supported");
    const status = rt().status(row);
    if (body.action === "start" && status !== "Stopped") throw new BadRequest("The instance is already running");
    if (body.action === "stop" && status === "Stopped") throw new BadRequest("The instance is already stopped");
    const { project } = req;
    const name = row.name;
    const opts = { force: body.force, timeout: body.timeout };
    const work: Record<string, () => Promise<void>> = {
      start: () => rt().start(project, name),
      stop: () => rt().stop(project, name, opts),
      restart: () => rt().restart(project, name, opts),
      freeze: () => rt().freeze(project, name),
      unfreeze: () => rt().unfreeze(project, name),
    };
    return instanceTask(core.operations, { description, project, resources: resources(project, name) }, () => work[body.action]());
  };

  const logsDir = (req: { project: string; params: Record<string, string> }) => {
    const row = svc.require(req.project, req.params.name);
    return { row, dir: logDir(core.paths.dir, rt().lxcName(row.project, row.name)) };
  };
  const logFile = (req: { project: string; params: Record<string, string> }) => {
    const { dir } = logsDir(req);
    const file = req.params.file;
    if (!validLogFileName(file)) throw new BadRequest(`log file name ${file} not valid`);
    return join(dir, file);
  };

  const logs: Handler = (req) => {
    const { row, dir } = logsDir(req);
    const files = existsSync(dir) ? readdirSync(dir).filter(validLogFileName).sort() : [];
    return sync(files.map((f) => `/1.0/instances/${row.name}/logs/${f}`));
  };
  const getLog: Handler = (req, reply) => {
    const path = logFile(req);
    let st;
    try {
      st = statSync(path);
    } catch {
      throw new InternalError(`open ${path}: no such file or directory`);
    }
    if (!st.isFile()) throw new InternalError(`open ${path}: not a regular file`);
    // Exec output can be large: streamed with backpressure.
    reply.hijack();
    reply.raw.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-disposition": `inline;filename=${req.params.file}`,
      "content-length": String(st.size),
      "last-modified": st.mtime.toUTCString(),
    });
    void pipeline(createReadStream(path), reply.raw).catch(() => reply.raw.destroy());
    return handled();
  };
  const deleteLog: Handler = (req) => {
    const path = logFile(req);
    if (req.params.file === "lxc.log" || req.params.file === "lxc.conf") throw new BadRequest("lxc.log and lxc.conf may not be deleted");
    try {
      unlinkSync(path);
    } catch {
      throw new NotFound(`remove ${path}: no such file or directory`);
    }
    return sync({});
  };

  const consoleLog: Handler = (req, reply) => {
    const { dir } = logsDir(req);
    const path = join(dir, "console.log");
    void reply.header("Content-Type", "application/octet-stream").send(existsSync(path) ? readFileSync(path) : Buffer.alloc(0));
    return handled();
  };
  const clearConsole: Handler = (req) => {
    const { dir } = logsDir(req);
    const path = join(dir, "console.log");
    if (existsSync(path)) truncateSync(path, 0);
    return sync({});
  };

  const getMetadata: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const text = svc.readMetadataFile(await svc.volumeDir(row));
    const meta = text ? YAML.parse(text) : {};
    return sync({ architecture: "", creation_date: 0, expiry_date: 0, properties: {}, templates: {}, ...meta });
  };
  const putMetadata: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const body = await req.body(MetadataPut, "api.ImageMetadata");
    svc.writeMetadataFile(await svc.volumeDir(row), YAML.stringify(body));
    core.events.lifecycle("instance-metadata-updated", instanceUrl(row.project, row.name), { project: row.project });
    return sync({});
  };

  const templates: Handler = async (req, reply) => {
    const row = svc.require(req.project, req.params.name);
    const dir = await svc.volumeDir(row);
    const path = req.query.path;
    if (!path) return sync(svc.templateNames(dir));
    const file = InstanceService.templatePath(dir, path);
    if (!existsSync(file)) throw new NotFound("Template not found");
    void reply.header("Content-Type", "application/octet-stream").send(readFileSync(file));
    return handled();
  };
  const uploadTemplate: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const dir = await svc.volumeDir(row);
    const path = req.query.path;
    if (!path) throw new BadRequest("missing path argument");
    const file = InstanceService.templatePath(dir, path);
    const data = await readBody(req.stream);
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(dir, "templates"), { recursive: true });
    writeFileSync(file, data, { mode: 0o644 });
    core.events.lifecycle("instance-metadata-template-created", instanceUrl(row.project, row.name), { project: row.project, context: { path } });
    return sync({});
  };
  const deleteTemplate: Handler = async (req) => {
    const row = svc.require(req.project, req.params.name);
    const dir = await svc.volumeDir(row);
    const path = req.query.path;
    if (!path) throw new BadRequest("missing path argument");
    const file = InstanceService.templatePath(dir, path);
    if (!existsSync(file)) throw new NotFound("Template not found");
    rmSync(file);
    core.events.lifecycle("instance-metadata-template-deleted", instanceUrl(row.project, row.name), { project: row.project, context: { path } });
    return sync({});
  };

  const routes: Route[] = [];
  for (const base of ["/1.0/instances", "/1.0/containers"]) {
    routes.push(
      route(base, { GET: list, POST: create }, "project"),
      route(`${base}/:name`, { GET: get, PUT: put, PATCH: patch, DELETE: del, POST: rename }, "project"),
      route(`${base}/:name/state`, { GET: getState, PUT: putState }, "project"),
      route(`${base}/:name/logs`, { GET: logs }, "project"),
      route(`${base}/:name/logs/:file`, { GET: getLog, DELETE: deleteLog }, "project"),
      route(`${base}/:name/console`, { GET: consoleLog, DELETE: clearConsole }, "project"),
      route(`${base}/:name/metadata`, { GET: getMetadata, PUT: putMetadata, PATCH: putMetadata }, "project"),
      route(`${base}/:name/metadata/templates`, { GET: templates, POST: uploadTemplate, PUT: uploadTemplate, DELETE: deleteTemplate }, "project"),
    );
  }
  return routes;
}

/** The files LXD serves from an instance's log directory (upstream's validLogFileName). */
function validLogFileName(file: string): boolean {
  if (file.includes("/") || file.includes("\0")) return false;
  return ["lxc.log", "lxc.conf"].includes(file) || ["exec_", "migration_", "snapshot_"].some((p) => file.startsWith(p));
}

const MetadataPut = z
  .object({
    architecture: z.string().default(""),
    creation_date: z.number().default(0),
    expiry_date: z.number().default(0),
    properties: z.record(z.string(), z.string()).nullish().transform((m) => m ?? {}),
    templates: z.record(z.string(), z.unknown()).nullish().transform((m) => m ?? {}),
  })
  .passthrough();
