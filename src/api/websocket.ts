// Websocket endpoints: the events stream and operation sockets. Upgrades bypass the
// HTTP router, so this module does its own routing and access checks.
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { WebSocketServer, type WebSocket } from "ws";
import type { EventHub } from "../operations/events.js";
import type { OperationManager } from "../operations/manager.js";
import type { EventType } from "../operations/types.js";
import { encode, errorEnvelope } from "./envelope.js";
import { BadRequest, Forbidden, NotFound, toApiError, type ApiError } from "./errors.js";

export const EVENT_TYPES: EventType[] = ["lifecycle", "logging", "operation"];
export const KEEPALIVE_MS = 10_000;

export interface WebsocketDeps {
  events: EventHub;
  operations: OperationManager;
  log: Logger;
  /** Whether the peer of this upgrade request is trusted. */
  trusted(req: IncomingMessage): boolean;
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
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, match: RegExpExecArray, url: URL): void;
}

export function refuse(socket: Duplex, err: ApiError): void {
  const body = encode(errorEnvelope(err.status, err.message));
  socket.end(
    `HTTP/1.1 ${err.status} ${err.status === 404 ? "Not Found" : err.status === 403 ? "Forbidden" : "Bad Request"}\r\n` +
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

export function attachWebsockets(server: Server, deps: WebsocketDeps): WebSocketServer {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://lxd");
    const opMatch = /^\/1\.0\/operations\/([^/]+)\/websocket$/.exec(url.pathname);
    if (url.pathname === "/1.0/events") {
      if (!deps.trusted(req)) return refuse(socket, new Forbidden());
      const types = (url.searchParams.get("type") ?? "").split(",").filter(Boolean) as EventType[];
      const unknown = types.find((t) => !EVENT_TYPES.includes(t));
      if (unknown) return refuse(socket, new BadRequest(`"${unknown}" isn't a supported event type`));
      const allProjects = url.searchParams.get("all-projects") === "true";
      const project = allProjects ? undefined : url.searchParams.get("project") || "default";
      wss.handleUpgrade(req, socket, head, (ws) => {
        keepalive(ws);
        const unsubscribe = deps.events.subscribe({
          filter: { types: new Set(types.length ? types : EVENT_TYPES), project },
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
      const id = decodeURIComponent(opMatch[1]);
      const secret = url.searchParams.get("secret") ?? "";
      try {
        deps.operations.get(id);
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
      if (!deps.trusted(req)) return refuse(socket, new Forbidden());
      try {
        u.handle(req, socket, head, m, url);
      } catch (e) {
        refuse(socket, toApiError(e));
      }
      return;
    }
    refuse(socket, new NotFound());
  });
  return wss;
}
