// Who a request comes from. Unix socket peers are trusted (the socket's permissions are
// the access control); TLS peers are trusted when their certificate is in the trust store.
import type { IncomingMessage } from "node:http";
import { createHash } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type { Db } from "../db/database.js";
import type { Requestor } from "../shared/requestor.js";

const UNIX_REQUESTOR: Requestor = Object.freeze({ trusted: true, protocol: "unix", username: "root", address: "@" });

export class TrustStore {
  /** Trusted client fingerprints → their restriction (undefined: unrestricted). */
  private clients = new Map<string, { restricted: boolean; projects: string[] }>();
  /** Fingerprints of certificates of type "metrics". */
  private metrics = new Set<string>();

  constructor(private readonly db: Db) {
    this.reload();
  }

  reload(): void {
    const rows = this.db.prepare("SELECT fingerprint, restricted, projects FROM certificates WHERE type = 'client'").all() as {
      fingerprint: string;
      restricted: number;
      projects: string;
    }[];
    this.clients = new Map(rows.map((r) => [r.fingerprint, { restricted: r.restricted === 1, projects: parseProjects(r.projects) }]));
    const metrics = this.db.prepare("SELECT fingerprint FROM certificates WHERE type = 'metrics'").all() as { fingerprint: string }[];
    this.metrics = new Set(metrics.map((r) => r.fingerprint));
  }

  has(fingerprint: string): boolean {
    return this.clients.has(fingerprint);
  }

  /** The DER of the client certificate a TLS request presented. */
  static peerCertificate(raw: IncomingMessage): Buffer | undefined {
    const socket = raw.socket as TLSSocket;
    if (!socket.encrypted) return undefined;
    const peer = socket.getPeerCertificate?.();
    return peer && peer.raw ? peer.raw : undefined;
  }

  identify(raw: IncomingMessage): Requestor {
    const socket = raw.socket as TLSSocket;
    if (!socket.encrypted) return UNIX_REQUESTOR;
    const host = socket.remoteAddress ?? "";
    const address = host.includes(":") ? `[${host}]:${socket.remotePort}` : `${host}:${socket.remotePort}`;
    const der = TrustStore.peerCertificate(raw);
    if (!der) return { trusted: false, protocol: "tls", username: "", address };
    const fingerprint = createHash("sha256").update(der).digest("hex");
    const client = this.clients.get(fingerprint);
    if (!client) return { trusted: false, protocol: "tls", username: fingerprint, address, fingerprint, metrics: this.metrics.has(fingerprint) };
    return { trusted: true, protocol: "tls", username: fingerprint, address, fingerprint, restricted: client.restricted, projects: client.restricted ? client.projects : undefined };
  }
}

function parseProjects(text: string): string[] {
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? v.filter((p): p is string => typeof p === "string") : [];
  } catch {
    return [];
  }
}
