// The daemon's listeners: $LXD_DIR/unix.socket always, and a TLS listener whenever
// core.https_address is set. Both feed the same application.
import { chmodSync, chownSync, existsSync, readFileSync, unlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { connect } from "node:net";
import type { Logger } from "pino";
import { splitHostPort } from "../config/validators.js";

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface EndpointsOptions {
  socketPath: string;
  group?: string;
  /** `ca`: PKI mode (server.ca): the CA announced to clients as the acceptable certificate issuer. */
  tls: { cert: string; key: string; ca?: string };
  handler: RequestHandler;
  /** The core.metrics_address listener's handler (only /1.0/metrics; LXD answers 404 elsewhere). */
  metricsHandler?: RequestHandler;
  /** Called for every server created, to attach websocket upgrade handling. */
  onServer: (server: Server) => void;
  log: Logger;
}

function gidOf(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  const line = readFileSync("/etc/group", "utf8")
    .split("\n")
    .find((l) => l.split(":")[0] === group);
  if (!line) throw new Error(`cannot find group "${group}"`);
  return Number(line.split(":")[2]);
}

async function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

/**
 * LXD's http.Server timeouts (lxd/api.go): a request's headers must arrive within 3 s
 * (ReadHeaderTimeout, which in Go also bounds the TLS handshake) and an idle keep-alive
 * connection is closed after 30 s (IdleTimeout). A request body or a long-poll may take as long
 * as it takes (no ReadTimeout), and upgraded connections (websockets) leave these timers.
 */
export const HTTP_TIMEOUTS = { headersMs: 3_000, idleMs: 30_000, handshakeMs: 3_000, checkEveryMs: 1_000 } as const;

const SERVER_OPTIONS = {
  // How often Node looks for connections past headersTimeout (its default is 30 s).
  connectionsCheckingInterval: HTTP_TIMEOUTS.checkEveryMs,
  headersTimeout: HTTP_TIMEOUTS.headersMs,
  keepAliveTimeout: HTTP_TIMEOUTS.idleMs,
  requestTimeout: 0,
} as const;

function tune(server: Server): Server {
  server.keepAliveTimeout = HTTP_TIMEOUTS.idleMs;
  server.headersTimeout = HTTP_TIMEOUTS.headersMs;
  server.requestTimeout = 0;
  return server;
}

export class Endpoints {
  private unix?: Server;
  private https?: Server;
  private httpsAddress = "";
  private metrics?: Server;
  private metricsAddress = "";

  constructor(private readonly opts: EndpointsOptions) {}

  async listenUnix(): Promise<void> {
    const path = this.opts.socketPath;
    if (existsSync(path)) {
      if (await socketInUse(path)) throw new Error(`LXD is already running (${path} answers)`);
      unlinkSync(path);
    }
    const server = tune(createServer(SERVER_OPTIONS, this.opts.handler));
    this.opts.onServer(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
    chmodSync(path, 0o660);
    if (this.opts.group) chownSync(path, 0, gidOf(this.opts.group));
    this.unix = server;
  }

  /**
   * Serve another certificate (a member that joined a cluster serves the cluster's). As LXD's
   * NetworkUpdateCert, the listener stays: new handshakes get the new certificate, open
   * connections keep theirs, and nobody finds the port closed meanwhile.
   */
  async setTls(tls: { cert: string; key: string }): Promise<void> {
    this.opts.tls = { ...this.opts.tls, ...tls };
    (this.https as HttpsServer | undefined)?.setSecureContext(this.opts.tls);
  }

  /** (Re)bind the TLS listener; an empty address closes it. */
  async setHttpsAddress(address: string): Promise<void> {
    if (address === this.httpsAddress) return;
    const previous = this.https;
    let next: Server | undefined;
    if (address !== "") {
      const { host, port } = splitHostPort(address);
      next = tune(
        createHttpsServer(
          {
            ...SERVER_OPTIONS,
            cert: this.opts.tls.cert,
            key: this.opts.tls.key,
            requestCert: true,
            // As LXD 5.0.2's ServerTLSConfig: in CA mode the CA is announced as the acceptable
            // issuer (LXD's Go clients then send only a certificate it signed); the handshake
            // itself takes any certificate, and the trust store ignores those the CA did not sign.
            rejectUnauthorized: false,
            ...(this.opts.tls.ca ? { ca: this.opts.tls.ca } : {}),
            minVersion: "TLSv1.2",
            handshakeTimeout: HTTP_TIMEOUTS.handshakeMs,
            // As LXD's tcp.SetTimeouts: keep-alive probes find dead peers.
            keepAlive: true,
            keepAliveInitialDelay: 3_000,
          },
          this.opts.handler,
        ),
      );
      this.opts.onServer(next);
      // Rebinding the same port needs the old listener gone first.
      if (previous) await closeServer(previous);
      try {
        await new Promise<void>((resolve, reject) => {
          next!.once("error", reject);
          next!.listen({ host: host === "" ? "::" : host, port }, () => resolve());
        });
      } catch (e) {
        throw new Error(`cannot listen on https socket: ${(e as Error).message}`);
      }
    } else if (previous) {
      await closeServer(previous);
    }
    this.https = next;
    this.httpsAddress = address;
    this.opts.log.info({ address }, address ? "https listener bound" : "https listener closed");
  }

  /** (Re)bind the core.metrics_address listener (TLS, /1.0/metrics only); an empty address closes it. */
  async setMetricsAddress(address: string): Promise<void> {
    if (address === this.metricsAddress) return;
    const previous = this.metrics;
    let next: Server | undefined;
    if (address !== "") {
      const { host, port } = splitHostPort(address, 9100);
      const handler = this.opts.metricsHandler;
      if (!handler) throw new Error("no metrics handler");
      next = tune(createHttpsServer({ cert: this.opts.tls.cert, key: this.opts.tls.key, requestCert: true, rejectUnauthorized: false, minVersion: "TLSv1.2" }, handler));
      if (previous) await closeServer(previous);
      try {
        await new Promise<void>((resolve, reject) => {
          next!.once("error", reject);
          next!.listen({ host: host === "" ? "::" : host, port }, () => resolve());
        });
      } catch (e) {
        throw new Error(`cannot listen on metrics socket: ${(e as Error).message}`);
      }
    } else if (previous) {
      await closeServer(previous);
    }
    this.metrics = next;
    this.metricsAddress = address;
    this.opts.log.info({ address }, address ? "metrics listener bound" : "metrics listener closed");
  }

  async close(): Promise<void> {
    await Promise.all([this.unix, this.https, this.metrics].filter((s): s is Server => !!s).map(closeServer));
    if (existsSync(this.opts.socketPath)) unlinkSync(this.opts.socketPath);
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
