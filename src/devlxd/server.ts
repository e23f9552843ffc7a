// The guest API (LXD 5.0.2's devlxd): one unix socket, $LXD_DIR/devlxd/sock, bind-mounted into
// every container with security.devlxd (default true) at /dev/lxd/sock. A caller is identified by
// its peer credentials (SO_PEERCRED, read once per connection): the container whose init shares
// the pid namespace of the caller or of one of its ancestors; only that container's root user
// is served, and a container only ever sees its own config, devices and events.
import { chmodSync, existsSync, mkdirSync, readFileSync, readlinkSync, unlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { join } from "node:path";
import type { Logger } from "pino";
import { createRequire } from "node:module";
import type { WebSocket, WebSocketServer } from "ws";
import type { EventHub } from "../operations/events.js";
import { hostRoot, parseIdmapJson } from "../instances/idmap.js";
import { native } from "../os/native.js";
import { apiUrl } from "../shared/urls.js";

export interface GuestInstance {
  project: string;
  name: string;
  pid: number;
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
}

export interface DevlxdDeps {
  dir: string;
  log: Logger;
  events: EventHub;
  /** Running instances, with expanded config (volatile keys included) and devices. */
  running(): GuestInstance[];
  /** security.devlxd.images: write the export of a public or cached image (see ImagesPort). */
  exportImage?: (project: string, fingerprint: string, res: ServerResponse) => Promise<void>;
}

type Cred = { pid: number; uid: number; gid: number };

const isFalse = (v: string | undefined) => ["false", "0", "no", "off"].includes((v ?? "").toLowerCase());

function readPidNs(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

function parentPid(pid: number): number {
  try {
    return Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The running container `pid` belongs to: its pid namespace, or an ancestor's, is the container init's. */
export function findInstanceForPid(pid: number, running: GuestInstance[]): GuestInstance | undefined {
  const byNs = new Map<string, GuestInstance>();
  for (const inst of running) {
    const ns = readPidNs(inst.pid);
    if (ns) byNs.set(ns, inst);
  }
  const host = readPidNs(process.pid);
  for (let p = pid, depth = 0; p > 1 && depth < 64; p = parentPid(p), depth++) {
    const ns = readPidNs(p);
    if (!ns || ns === host) return undefined; // reached the host's pid namespace: not in a container
    const inst = byNs.get(ns);
    if (inst) return inst;
  }
  return undefined;
}

function plainError(res: ServerResponse, code: number, message: string): void {
  // Go's http.Error
  res.writeHead(code, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" });
  res.end(message + "\n");
}

function json(res: ServerResponse, value: unknown): void {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(value) + "\n");
}

function raw(res: ServerResponse, text: string): void {
  res.writeHead(200, { "content-type": "application/octet-stream" });
  res.end(text);
}

function devicesView(inst: GuestInstance): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const [name, dev] of Object.entries(inst.devices)) {
    out[name] = { ...dev };
    const hw = inst.config[`volatile.${name}.hwaddr`];
    if (dev.type === "nic" && !dev.hwaddr && hw) out[name].hwaddr = hw;
  }
  return out;
}

export class DevlxdServer {
  private server?: Server;
  private readonly creds = new WeakMap<Socket, Cred>();
  /** ws is loaded when a guest first asks for /dev/lxd/sock events. */
  private upgrader?: WebSocketServer;
  private get wss(): WebSocketServer {
    return (this.upgrader ??= new (createRequire(import.meta.url)("ws") as typeof import("ws")).WebSocketServer({ noServer: true }));
  }

  constructor(private readonly deps: DevlxdDeps) {}

  get socketPath(): string {
    return join(this.deps.dir, "sock");
  }

  async start(): Promise<void> {
    mkdirSync(this.deps.dir, { recursive: true, mode: 0o755 });
    chmodSync(this.deps.dir, 0o755);
    if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
    const server = createServer((req, res) => this.handle(req, res));
    server.on("connection", (socket: Socket) => {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (typeof fd !== "number" || fd < 0) return;
      try {
        const [pid, uid, gid] = native.peerCredentials(fd);
        this.creds.set(socket, { pid, uid, gid });
      } catch (e) {
        this.deps.log.debug({ err: e }, "devlxd: cannot read peer credentials");
      }
    });
    server.on("upgrade", (req, socket, head) => this.upgrade(req, socket as Socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.socketPath, () => resolve());
    });
    // Container root users (mapped ids) must be able to connect.
    chmodSync(this.socketPath, 0o666);
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
    for (const c of this.upgrader?.clients ?? []) c.terminate();
    if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
  }

  /** The caller's container, or an error already answered. */
  private caller(req: IncomingMessage, res: ServerResponse | undefined): GuestInstance | undefined {
    const fail = (code: number, msg: string) => {
      if (res) plainError(res, code, msg);
      else req.socket.destroy();
      return undefined;
    };
    const cred = this.creds.get(req.socket as Socket);
    if (!cred) return fail(500, "pid not in container?");
    const inst = findInstanceForPid(cred.pid, this.deps.running());
    if (!inst) return fail(500, "pid not in container?");
    const map = parseIdmapJson(inst.config["volatile.idmap.current"] ?? inst.config["volatile.idmap.next"]);
    if (hostRoot(map).uid !== cred.uid) return fail(401, "Access denied for non-root user");
    if (isFalse(inst.config["security.devlxd"])) return fail(403, "not authorized");
    return inst;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const inst = this.caller(req, res);
    if (!inst) return;
    const url = new URL(req.url ?? "/", "http://lxd");
    const path = url.pathname;
    if (path === "/") return json(res, ["/1.0"]);
    if (path === "/1.0") return json(res, { state: "Started", api_version: "1.0", instance_type: "container", location: "none" });
    if (path === "/1.0/config") {
      return json(
        res,
        Object.keys(inst.config)
          .filter((k) => k.startsWith("user.") || k.startsWith("cloud-init."))
          .map((k) => `/1.0/config/${k}`),
      );
    }
    const key = /^\/1\.0\/config\/([^/]+)$/.exec(path)?.[1];
    if (key !== undefined) {
      let name: string;
      try {
        name = decodeURIComponent(key);
      } catch {
        return plainError(res, 400, "bad request");
      }
      if (!name.startsWith("user.") && !name.startsWith("cloud-init.")) return plainError(res, 403, "not authorized");
      if (!(name in inst.config)) return plainError(res, 404, "not found");
      return raw(res, inst.config[name]);
    }
    if (path === "/1.0/meta-data") {
      return raw(res, `#cloud-config\ninstance-id: ${inst.config["volatile.cloud-init.instance-id"] ?? ""}\nlocal-hostname: ${inst.name}\n${inst.config["user.meta-data"] ?? ""}`);
    }
    if (path === "/1.0/devices") return json(res, devicesView(inst));
    if (path === "/1.0/events") return this.streamEvents(inst, url, req, res);
    const image = /^\/1\.0\/images\/([^/]+)\/export$/.exec(path)?.[1];
    if (image !== undefined) {
      const on = ["true", "1", "yes", "on"].includes((inst.config["security.devlxd.images"] ?? "").toLowerCase());
      if (!on || !this.deps.exportImage) return plainError(res, 403, "not authorized");
      let fingerprint: string;
      try {
        fingerprint = decodeURIComponent(image);
      } catch {
        return plainError(res, 400, "bad request");
      }
      // As LXD: the request's ?project= (default "default"), not the container's project.
      void this.deps.exportImage(url.searchParams.get("project") || "default", fingerprint, res).catch((e) => {
        this.deps.log.debug({ err: e }, "devlxd: image export failed");
        if (!res.headersSent) plainError(res, 500, "internal server error");
        else res.destroy();
      });
      return;
    }
    return plainError(res, 404, "404 page not found");
  }

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const url = new URL(req.url ?? "/", "http://lxd");
    const inst = url.pathname === "/1.0/events" ? this.caller(req, undefined) : undefined;
    if (!inst) {
      socket.destroy();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.listen(inst, url, (line) => ws.send(line), ws));
  }

  private streamEvents(inst: GuestInstance, url: URL, req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { "content-type": "application/json" });
    res.flushHeaders();
    const stop = this.listen(inst, url, (line) => res.write(line + "\n"));
    req.socket.on("close", stop);
  }

  /**
   * config and device events for one instance, as LXD sends them when the instance is updated:
   * the differences from what this listener last saw (config: user.* keys only).
   */
  private listen(inst: GuestInstance, url: URL, send: (line: string) => void, ws?: WebSocket): () => void {
    const types = new Set((url.searchParams.get("type") || "config,device").split(","));
    let last = inst;
    const source = apiUrl(inst.project, "instances", inst.name);
    const emit = (type: string, metadata: unknown) => {
      if (types.has(type)) send(JSON.stringify({ type, timestamp: new Date().toISOString(), metadata }));
    };
    const unsubscribe = this.deps.events.subscribe({
      filter: { types: new Set(["lifecycle"]), project: inst.project },
      send: (event) => {
        const m = event.metadata as { action?: string; source?: string };
        if (m.action !== "instance-updated" || m.source !== source) return;
        const now = this.deps.running().find((i) => i.project === inst.project && i.name === inst.name);
        if (!now) return;
        const keys = new Set([...Object.keys(last.config), ...Object.keys(now.config)]);
        for (const k of [...keys].sort()) {
          if (!k.startsWith("user.") || last.config[k] === now.config[k]) continue;
          emit("config", { key: k, old_value: last.config[k] ?? "", value: now.config[k] ?? "" });
        }
        for (const [name, dev] of Object.entries(last.devices)) if (!(name in now.devices)) emit("device", { action: "removed", name, config: dev });
        for (const [name, dev] of Object.entries(now.devices)) {
          if (name in last.devices && JSON.stringify(last.devices[name]) !== JSON.stringify(dev)) emit("device", { action: "updated", name, config: dev });
        }
        for (const [name, dev] of Object.entries(now.devices)) if (!(name in last.devices)) emit("device", { action: "added", name, config: dev });
        last = now;
      },
    });
    ws?.on("close", unsubscribe);
    return unsubscribe;
  }
}
