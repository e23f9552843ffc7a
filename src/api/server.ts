// The HTTP application: declared routes in, LXD envelopes out. Transport-agnostic: the
// daemon feeds it requests from the unix socket and the TLS listener.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { asyncEnvelope, encode, errorEnvelope, syncEnvelope } from "../shared/envelope.js";
import { authorize } from "./access.js";
import { ApiError, Forbidden, InternalError, NotFound, NotImplemented, toApiError } from "../shared/errors.js";
import { withRequestor } from "../operations/request-context.js";
import { toApiRequest, type ProjectFeature, type Result, type Route } from "./route.js";
import { METHODS, type Method } from "./access.js";
import { type Requestor } from "../shared/requestor.js";

export interface ApiDeps {
  routes: Route[];
  log: Logger;
  /** Who is asking: unix socket peers are trusted; TLS peers by their certificate. */
  identify(req: FastifyRequest): Requestor;
  /** Which project holds a feature's objects for a request in `project` (projects' features.*). */
  effectiveProject?(project: string, feature: ProjectFeature): string;
  /** Candid: the bakery's discharge-required answer to a refused client that speaks the bakery protocol. */
  dischargeRequired?(path: string, bakeryVersion: string | undefined): Promise<{ status: number; headers: Record<string, string>; body: string }>;
}

export function sendError(reply: FastifyReply, err: ApiError): FastifyReply {
  return reply.code(err.status).header("content-type", "application/json").send(Buffer.from(encode(errorEnvelope(err.status, err.message))));
}

function render(reply: FastifyReply, result: Result): FastifyReply | undefined {
  switch (result.kind) {
    case "handled":
      return undefined;
    case "encoded":
      reply.code(200).header("content-type", "application/json");
      if (result.etag) reply.header("etag", `"${result.etag}"`);
      return reply.send(result.body);
    case "async":
      return reply
        .code(202)
        .header("content-type", "application/json")
        .header("location", result.location ?? `/1.0/operations/${result.operation.id}`)
        .send(Buffer.from(encode(asyncEnvelope(result.operation))));
    case "sync": {
      reply.code(result.status ?? 200).header("content-type", "application/json");
      if (result.etag) reply.header("etag", `"${result.etag}"`);
      if (result.location) reply.header("location", result.location);
      return reply.send(Buffer.from(encode(syncEnvelope(result.metadata))));
    }
  }
}

/**
 * Features may declare different methods of one path (the instances feature owns GET of
 * /1.0/instances/{name}/console, exec/console owns POST): join them; a method declared
 * twice is a wiring error.
 */
export function mergeRoutes(routes: Route[]): Route[] {
  const byPath = new Map<string, Route>();
  for (const r of routes) {
    const prev = byPath.get(r.path);
    if (!prev) {
      byPath.set(r.path, { ...r, handlers: { ...r.handlers }, access: { ...r.access } });
      continue;
    }
    if (r.feature !== prev.feature) throw new Error(`Route '${r.path}' declared with two project features`);
    for (const [method, handler] of Object.entries(r.handlers)) {
      if (prev.handlers[method as Method]) throw new Error(`Method '${method}' declared twice for route '${r.path}'`);
      prev.handlers[method as Method] = handler;
      prev.access[method as Method] = r.access[method as Method];
    }
  }
  return [...byPath.values()];
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    exposeHeadRoutes: false,
    routerOptions: { maxParamLength: 1024 },
    return503OnClosing: false,
    forceCloseConnections: true,
  });

  // Bodies are read by the handlers that want them (bounded JSON, or streamed uploads).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_req, _payload, done) => done(null, undefined));

  // One Fastify route per path, for all its methods (a route per method and path cost ~2.5 times
  // the CPU at start, issue #20); the method of the request picks the handler.
  for (const r of mergeRoutes(deps.routes)) {
    const declared = new Set(Object.keys(r.handlers) as Method[]);
    const methods: Method[] = [...METHODS, ...(declared.has("HEAD") ? (["HEAD"] as Method[]) : [])];
    app.route({
      method: methods,
      url: r.path,
      handler: async (req, reply) => {
        const method = req.method as Method;
        const handler = r.handlers[method];
        // The one authorization point: nothing of the handler runs unless the route's access allows it.
        const project = ((req.query ?? {}) as Record<string, string | undefined>).project || "default";
        const who = deps.identify(req);
        // A failed Candid authentication ends every API request (LXD's Authenticate error).
        if (who.authError && r.access[method] !== "open") return sendError(reply, new InternalError(who.authError));
        const decision = authorize(r.access[method], who, {
          method,
          project,
          owner: r.feature && deps.effectiveProject ? () => deps.effectiveProject!(project, r.feature!) : undefined,
          implemented: handler !== undefined,
          requireAuthenticated: !!req.headers["x-lxd-authenticated"],
        });
        if (!decision.allow) {
          if (who.dischargeRequired && !who.trusted && r.access[method] !== "local" && deps.dischargeRequired) {
            const version = req.headers["bakery-protocol-version"];
            const answer = await deps.dischargeRequired(req.url.split("?")[0], Array.isArray(version) ? version[0] : version);
            return reply.code(answer.status).headers(answer.headers).send(Buffer.from(answer.body));
          }
          return sendError(reply, decision.status === 501 ? new NotImplemented() : new Forbidden());
        }
        const requestor = decision.requestor;
        const caller = { username: requestor.username, protocol: requestor.protocol, address: requestor.address };
        const result = await withRequestor(caller, () => handler!(toApiRequest(req, requestor), reply));
        return render(reply, result);
      },
    });
  }

  app.setNotFoundHandler((_req, reply) => sendError(reply, new NotFound()));
  app.setErrorHandler((err, req, reply) => {
    const apiErr = toApiError(err);
    if (apiErr.status >= 500) deps.log.error({ err, url: req.url, method: req.method }, "request failed");
    if (apiErr.status === 413) reply.header("connection", "close");
    return sendError(reply, apiErr);
  });
  await app.ready();
  return app;
}
