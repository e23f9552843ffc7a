// Websocket endpoints: the events stream and operation sockets. Upgrades bypass the
// HTTP router, so this module does its own routing and access checks.
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { createRequire } from "node:module";
import type { WebSocket, WebSocketServer } from "ws";
import type { EventHub } from "../operations/events.js";
import type { OperationManager } from "../operations/manager.js";
import type { EventFilter } from "../operations/events.js";
import type { EventType } from "../operations/types.js";
import { authorize, isAdmin, type Access } from "./access.js";
import { encode, errorEnvelope } from "../shared/envelope.js";

const require = createRequire(import.meta.url);
/** ws is loaded at the first upgrade (many daemons never see one between restarts). */
export const newWebSocketServer = (opts: { perMessageDeflate?: boolean } = {}): WebSocketServer =>
  new (require("ws") as typeof import("ws")).WebSocketServer({ noServer: true, ...opts });
import { ApiError, Forbidden, NotFound, toApiError } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";

export const EVENT_TYPES: EventType[] = ["lifecycle", "logging", "operation"];
/** Event types only unrestricted clients may receive (LXD: privilegedEventTypes). */
const PRIVILEGED_EVENT_TYPES: EventType[] = ["logging"];
export const KEEPALIVE_MS = 10_000;

export interface WebsocketDeps {
  events: EventHub;
  operations: OperationManager;
  log: Logger;
  /** Who the peer of this upgrade request is. */
  identify(req: IncomingMessage): Requestor;
  /** Whether a project exists (events of a named project). */
  projectExists(name: string): boolean;
  /** Non-websocket upgrades contributed by features (e.g. `Upgrade: sftp`). */
  upgrades?: UpgradeRoute[];
}

/**
 * A raw protocol switch on a path (trusted clients only). `handle` either takes the socket
 * over (after writing its own 101 response) or throws an ApiError, sent as LXD's envelope.
 */
export interface UpgradeRoute {
  protocol: string;
  path: RegExp;
  /** Who may upgrade (access.ts), enforced here before `handle` runs, as the router does. */
  access: Access;
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, match: RegExpExecArray, url: URL): void;
}

const REASONS: Record<number, string> = { 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error" };

export function refuse(socket: Duplex, err: ApiError): void {
  const body = encode(errorEnvelope(err.status, err.message));
  socket.end(
    `HTTP/1.1 ${err.status} ${REASONS[err.status] ?? "Error"}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Ping every connected socket; drop those that stopped answering. Operation sockets are only
 * pinged: the stock client never reads its stdin and control sockets, so no pong comes back.
 */
function keepalive(ws: WebSocket, dropSilent = true): void {
  let alive = true;
  ws.on("pong", () => (alive = true));
  const timer = setInterval(() => {
    if (!alive && dropSilent) return ws.terminate();
    alive = false;
    ws.ping();
  }, KEEPALIVE_MS);
  timer.unref();
  ws.on("close", () => clearInterval(timer));
}

/**
 * What a GET /1.0/events asks for, checked as LXD 5.0.2's eventsSocket checks it (its errors
 * are 500s there, since they surface from the response's Render). A restricted client gets the
 * events of its certificate's projects only: a named project outside them is refused, and
 * `all-projects` is narrowed to them.
 */
export function eventsFilter(params: URLSearchParams, who: Requestor, projectExists: (name: string) => boolean): EventFilter {
  let project = params.get("project") ?? "";
  const allProjects = ["1", "true", "on", "yes"].includes((params.get("all-projects") ?? "").toLowerCase());
  if (allProjects && project !== "") throw new ApiError(500, "Cannot specify a project when requesting all projects");
  if (!allProjects && project === "") project = "default";
  if (!allProjects && project !== "default" && !projectExists(project)) throw new ApiError(500, "Project not found");
  const admin = isAdmin(who);
  let types = (params.get("type") ?? "").split(",") as EventType[];
  if (types.length === 1 && (types[0] as string) === "") types = EVENT_TYPES.filter((t) => admin || !PRIVILEGED_EVENT_TYPES.includes(t));
  const unknown = types.find((t) => !EVENT_TYPES.includes(t));
  if (unknown !== undefined) throw new ApiError(500, `"${unknown}" isn't a supported event type`);
  if (!admin && types.some((t) => PRIVILEGED_EVENT_TYPES.includes(t))) throw new ApiError(500, "Forbidden");
  const filter: EventFilter = { types: new Set(types), project: allProjects ? undefined : project };
  if (!admin) {
    if (!allProjects && !(who.projects ?? []).includes(project)) throw new Forbidden();
    filter.projects = new Set(who.projects ?? []);
  }
  return filter;
}

export function attachWebsockets(server: Server, deps: WebsocketDeps): void {
  let upgrader: WebSocketServer | undefined;
  const wss = { handleUpgrade: (...a: Parameters<WebSocketServer["handleUpgrade"]>) => (upgrader ??= newWebSocketServer({ perMessageDeflate: false })).handleUpgrade(...a) };
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://lxd");
    const opMatch = /^\/1\.0\/operations\/([^/]+)\/websocket$/.exec(url.pathname);
    if (url.pathname === "/1.0/events") {
      const who = deps.identify(req);
      if (!who.trusted) return refuse(socket, new Forbidden());
      let filter: EventFilter;
      try {
        filter = eventsFilter(url.searchParams, who, deps.projectExists);
      } catch (e) {
        return refuse(socket, toApiError(e));
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        keepalive(ws);
        const unsubscribe = deps.events.subscribe({
          filter,
          send: (_e, encoded) => {
            if (ws.readyState === ws.OPEN) ws.send(encoded);
          },
        });
        ws.on("close", unsubscribe);
        ws.on("error", unsubscribe);
        ws.on("message", () => {});
      });
      return;
    }
    if (opMatch) {
      // Open to untrusted clients, as LXD: the fd's secret is the credential. It is checked
      // (constant time, once per fd) before anything is upgraded.
      const id = decodeURIComponent(opMatch[1]);
      const secret = url.searchParams.get("secret") ?? "";
      try {
        deps.operations.claim(id, secret);
      } catch (e) {
        return refuse(socket, toApiError(e));
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        keepalive(ws, false);
        deps.operations.connect(id, secret, ws).catch((e) => {
          deps.log.debug({ op: id, err: e }, "operation websocket refused");
          ws.close(1011, (e as Error).message.slice(0, 120));
        });
      });
      return;
    }
    const protocol = String(req.headers.upgrade ?? "").toLowerCase();
    for (const u of deps.upgrades ?? []) {
      const m = u.protocol === protocol ? u.path.exec(url.pathname) : null;
      if (!m) continue;
      const decision = authorize(u.access, deps.identify(req), {
        method: req.method ?? "GET",
        project: url.searchParams.get("project") || "default",
        implemented: true,
        requireAuthenticated: !!req.headers["x-lxd-authenticated"],
      });
      if (!decision.allow) return refuse(socket, new Forbidden());
      try {
        u.handle(req, socket, head, m, url);
      } catch (e) {
        refuse(socket, toApiError(e));
      }
      return;
    }
    refuse(socket, new NotFound());
  });
}
