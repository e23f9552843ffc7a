// The one place where a clustered member decides, before routing a request: forward it to the
// member that owns its object (an instance's member, a targeted create, an operation that lives
// elsewhere), or serve it here — holding the cluster-wide write lock for mutating requests, so
// that members never interleave global writes (the log order is each writer's local order).
// A standalone daemon never goes through here.
import type { PlacementRules } from "./members.js";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { encode, errorEnvelope } from "../shared/envelope.js";
import type { Requestor } from "../shared/requestor.js";
import type { Db } from "../db/database.js";
import type { OperationManager } from "../operations/manager.js";
import { FORWARDED_FOR, LOCAL_ONLY, proxyRequest, proxyUpgrade } from "./forward.js";
import { runHoldingWriteLock } from "../shared/write-lock.js";
import type { ClusterService } from "./service.js";

export interface RouterDeps {
  cluster: ClusterService;
  db: Db;
  log: Logger;
  operations: OperationManager;
  identify(req: IncomingMessage): Requestor;
}

type Next = (req: IncomingMessage, res: ServerResponse) => void;

const INSTANCE_PATH = /^\/1\.0\/(?:instances|containers)\/([^/?]+)(\/[^?]*)?$/;
const OPERATION_PATH = /^\/1\.0\/operations\/([^/?]+)(\/[^?]*)?$/;
const MEMBER_STATE_PATH = /^\/1\.0\/cluster\/members\/([^/?]+)\/state$/;
/** Member-specific views and changes that `?target=` sends to that member (LXD's forwardedResponseIfTargetIsRemote). */
const TARGETED = [
  /^\/1\.0\/storage-pools\/[^/]+(?:\/resources)?$/,
  /^\/1\.0\/networks\/[^/]+(?:\/state|\/leases)?$/,
  /^\/1\.0\/storage-pools\/[^/]+\/volumes(?:\/custom)?$/,
];
/** A custom volume (and what hangs off it): served by the member it lives on. */
const VOLUME_PATH = /^\/1\.0\/storage-pools\/([^/]+)\/volumes\/custom\/([^/]+)(\/.*)?$/;
/** Mutating requests that write no global state (or take care of it themselves). */
const UNLOCKED = [
  /^\/1\.0\/instances\/[^/]+\/(?:exec|console|files|sftp)$/,
  /^\/1\.0\/containers\/[^/]+\/(?:exec|console|files|sftp)$/,
  /^\/1\.0\/operations\//,
  /^\/1\.0\/cluster(?:\/members|\/certificate)?$/,
  /^\/1\.0\/cluster\/members\/[^/]+(?:\/state)?$/,
  /^\/internal\//,
  /^\/1\.0\/events$/,
];

function fail(res: ServerResponse, status: number, message: string): void {
  const body = encode(errorEnvelope(status, message));
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export class ClusterRouter {
  /** Operations created on another member by a request forwarded from here: id → member url. */
  private remoteOps = new Map<string, string>();

  constructor(private readonly d: RouterDeps) {}

  private forwardHeaders(who: Requestor): Record<string, string> {
    // A member forwarding on behalf of a TLS client says who it is; unix-socket users and members go as the member.
    return who.protocol === "tls" && who.username !== "cluster" && who.fingerprint ? { [FORWARDED_FOR]: who.fingerprint } : {};
  }

  /** Where a request must go: a member url, or undefined to serve it here. */
  private async destination(req: IncomingMessage, url: URL, who: Requestor): Promise<string | undefined> {
    const { cluster } = this.d;
    const path = url.pathname;
    const project = url.searchParams.get("project") || "default";
    const inst = INSTANCE_PATH.exec(path);
    if (inst) {
      const row = this.d.db.prepare("SELECT node FROM instances WHERE project = ? AND name = ?").get(project, decodeURIComponent(inst[1])) as { node: string } | undefined;
      if (row && row.node && row.node !== cluster.name()) return cluster.members.url(row.node);
      return undefined;
    }
    if (req.method === "POST" && (path === "/1.0/instances" || path === "/1.0/containers")) {
      const asked = url.searchParams.get("target");
      // The member a client's request reaches first checks the project's rules and places it
      // (once: the member it is forwarded to sees a target and a forwarded request).
      if (who.viaMember) return asked && asked !== cluster.name() ? cluster.members.url(asked) : undefined;
      const target = await cluster.members.place(asked, this.placementRules(project, who));
      if (target !== asked) {
        url.searchParams.set("target", target);
        req.url = url.pathname + url.search;
      }
      if (target !== cluster.name()) return cluster.members.url(target);
      return undefined;
    }
    const target = url.searchParams.get("target");
    const vol = VOLUME_PATH.exec(path);
    if (vol || TARGETED.some((re) => re.test(path))) {
      // Creating a pool or network with a target only records the member's config (served here).
      const pending = req.method === "POST" && (path === "/1.0/storage-pools" || path === "/1.0/networks");
      if (target && !pending) return target === cluster.name() ? undefined : cluster.members.url(target);
      if (vol) {
        const volName = decodeURIComponent(vol[2]).split("/")[0];
        const nodes = (
          this.d.db
            .prepare("SELECT v.node FROM storage_volumes v JOIN storage_pools p ON p.id = v.pool_id WHERE p.name = ? AND v.project = ? AND v.type = 'custom' AND v.name = ?")
            .all(decodeURIComponent(vol[1]), this.volumeProject(project), volName) as { node: string }[]
        ).map((r) => r.node);
        // Members of a local pool may each have a volume of the name: the client must say which
        // (LXD's GetStoragePoolVolume).
        if (new Set(nodes).size > 1) throw Object.assign(new Error("Storage volume found on more than one cluster member. Please target a specific member"), { status: 409 });
        const node = nodes[0];
        if (node && node !== cluster.name()) return cluster.members.url(node);
      }
      return undefined;
    }
    const op = OPERATION_PATH.exec(path);
    if (op && !this.isLocalOperation(op[1])) return this.remoteOps.get(op[1]) ?? (await cluster.operationUrl(op[1]));
    const state = MEMBER_STATE_PATH.exec(path);
    if (state && req.method === "POST" && decodeURIComponent(state[1]) !== cluster.name() && who.username !== "cluster") return cluster.members.url(decodeURIComponent(state[1]));
    return undefined;
  }

  /** What project `project` allows `who` in placing instances. */
  private placementRules(project: string, who: Requestor): PlacementRules {
    const row = this.d.db.prepare("SELECT config FROM projects WHERE name = ?").get(project) as { config: string } | undefined;
    const config = row ? (JSON.parse(row.config) as Record<string, string>) : {};
    const restricted = config.restricted === "true";
    return {
      restricted,
      // LXD's CheckClusterTargetRestriction: server administrators (unrestricted clients) may always target.
      targetBlocked: restricted && !!who.restricted && (config["restricted.cluster.target"] || "block") === "block",
      groupsAllowed: (config["restricted.cluster.groups"] ?? "").split(",").map((g) => g.trim()).filter(Boolean),
    };
  }

  /** The project whose custom volumes a request project uses (features.storage.volumes). */
  private volumeProject(project: string): string {
    const row = this.d.db.prepare("SELECT config FROM projects WHERE name = ?").get(project) as { config: string } | undefined;
    if (!row) return project;
    const config = JSON.parse(row.config) as Record<string, string>;
    return config["features.storage.volumes"] === "true" ? project : "default";
  }

  private taskOperation(id: string): boolean {
    try {
      return this.d.operations.get(id).class === "task";
    } catch {
      return false;
    }
  }

  private isLocalOperation(id: string): boolean {
    try {
      this.d.operations.get(id);
      return true;
    } catch {
      return false;
    }
  }

  /** Wrap the local router. */
  handler(next: Next): Next {
    return (req, res) => {
      if (!this.d.cluster.clustered()) return next(req, res);
      void this.route(req, res, next).catch((err) => {
        this.d.log.error({ err, url: req.url }, "cluster routing failed");
        const status = (err as { status?: number }).status;
        if (!res.headersSent) fail(res, typeof status === "number" && status >= 400 ? status : 500, (err as Error).message);
        else res.destroy();
      });
    };
  }

  private async route(req: IncomingMessage, res: ServerResponse, next: Next): Promise<void> {
    const who = this.d.identify(req);
    if (!who.trusted) return next(req, res);
    // Another member telling this one to do its own part of a change it holds the lock for.
    if (who.username === "cluster" && req.headers[LOCAL_ONLY]) return next(req, res);
    const url = new URL(req.url ?? "/", "http://x");
    const dest = await this.destination(req, url, who);
    if (dest) {
      const out = await proxyRequest(req, res, dest, this.d.cluster.tls(), this.forwardHeaders(who));
      const opId = out.status === 202 ? (out.json?.metadata?.id as string | undefined) : undefined;
      if (opId) this.remoteOps.set(opId, dest);
      return;
    }
    const mutating = req.method !== "GET" && req.method !== "HEAD";
    if (!mutating || UNLOCKED.some((re) => re.test(url.pathname))) return next(req, res);
    // A move to another member (POST /1.0/instances/{name}?target=) takes the lock for each of its
    // own writes: the target member's create, which it waits for, needs the lock meanwhile.
    const inst = INSTANCE_PATH.exec(url.pathname);
    if (req.method === "POST" && url.searchParams.get("target") && inst && inst[2] === undefined) return next(req, res);
    const { cluster } = this.d;
    const lock = await cluster.takeWriteLock();
    // Fastify hands its headers to writeHead, where getHeader() cannot see them: the operation a
    // 202 answers with is read there.
    let location = "";
    const writeHead = res.writeHead.bind(res) as (...a: unknown[]) => ServerResponse;
    res.writeHead = ((...a: unknown[]) => {
      const headers = a.find((x) => x && typeof x === "object" && !Array.isArray(x)) as Record<string, unknown> | undefined;
      const loc = headers?.location ?? headers?.Location;
      if (loc) location = String(loc);
      return writeHead(...a);
    }) as typeof res.writeHead;
    let finished = false;
    const done = async () => {
      if (finished) return;
      finished = true;
      // An async task holds the lock until its operation ends (its writes happen then, its long
      // stretches run outside it); a websocket operation (a migration source, exec) does not:
      // its peer may need the lock.
      location ||= String(res.getHeader("location") ?? "");
      const op = res.statusCode === 202 ? /\/1\.0\/operations\/([^/?]+)/.exec(location)?.[1] : undefined;
      if (op && this.taskOperation(op)) await this.d.operations.whenDone(op);
      await lock.end().catch((err) => this.d.log.warn({ err, url: req.url }, "cluster write lock: taking it back for work the request started failed"));
    };
    res.once("finish", () => void done());
    res.once("close", () => void done());
    runHoldingWriteLock(lock, () => next(req, res));
  }

  /** Websocket upgrades for operations that live on another member. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    if (!this.d.cluster.clustered()) return false;
    const url = new URL(req.url ?? "/", "http://x");
    const op = OPERATION_PATH.exec(url.pathname);
    if (!op || this.isLocalOperation(op[1])) return false;
    const dest = this.remoteOps.get(op[1]);
    if (!dest) return false;
    const who = this.d.identify(req);
    proxyUpgrade(req, socket, head, dest, this.d.cluster.tls(), this.forwardHeaders(who));
    return true;
  }
}
