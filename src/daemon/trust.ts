// Who a request comes from. Unix socket peers are trusted (the socket's permissions are
// the access control); TLS peers are trusted when their certificate is in the trust store.
import type { IncomingMessage } from "node:http";
import { createHash, X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type { Db } from "../db/database.js";
import type { Requestor } from "../shared/requestor.js";
import { caVerdict, type CertificateAuthority } from "./pki.js";

export interface TrustOptions {
  /** server.ca (and ca.crl) when the daemon runs in PKI mode. */
  ca?: CertificateAuthority;
  /** core.trust_ca_certificates: CA-signed clients are trusted without a trust store entry. */
  trustCa?: () => boolean;
}

const UNIX_REQUESTOR: Requestor = Object.freeze({ trusted: true, protocol: "unix", username: "root", address: "@" });

export class TrustStore {
  /** Trusted client fingerprints → their restriction (undefined: unrestricted). */
  private clients = new Map<string, { restricted: boolean; projects: string[] }>();
  /** Certificates of type "metrics" → their restriction. */
  private metrics = new Map<string, { restricted: boolean; projects: string[] }>();
  /** The cluster certificate: its holders are fellow members (trusted as the unix socket, or as the client they forward for). */
  private clusterFingerprint?: string;

  constructor(
    private readonly db: Db,
    private readonly opts: TrustOptions = {},
  ) {
    this.reload();
  }

  reload(): void {
    const rows = this.db.prepare("SELECT fingerprint, restricted, projects FROM certificates WHERE type = 'client'").all() as {
      fingerprint: string;
      restricted: number;
      projects: string;
    }[];
    this.clients = new Map(rows.map((r) => [r.fingerprint, { restricted: r.restricted === 1, projects: parseProjects(r.projects) }]));
    const metrics = this.db.prepare("SELECT fingerprint, restricted, projects FROM certificates WHERE type = 'metrics'").all() as typeof rows;
    this.metrics = new Map(metrics.map((r) => [r.fingerprint, { restricted: r.restricted === 1, projects: parseProjects(r.projects) }]));
  }

  setClusterFingerprint(fingerprint: string | undefined): void {
    this.clusterFingerprint = fingerprint;
  }

  has(fingerprint: string): boolean {
    return this.clients.has(fingerprint);
  }

  /** Whether a client certificate may be used at all: in CA mode, only one the CA signed. */
  acceptsPeer(der: Buffer): boolean {
    const { ca } = this.opts;
    return !ca || caVerdict(ca, new X509Certificate(der)) !== undefined;
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
    let fingerprint = createHash("sha256").update(der).digest("hex");
    let forwarded = false;
    if (this.clusterFingerprint && fingerprint === this.clusterFingerprint) {
      // A member forwarding a request: it says whose it is (none: the member itself, or a unix-socket user).
      const forwardedFor = raw.headers["x-nodelxd-forwarded-for"];
      if (typeof forwardedFor !== "string" || forwardedFor === "") return { trusted: true, protocol: "tls", username: "cluster", address, fingerprint };
      fingerprint = forwardedFor;
      forwarded = true;
    }
    // PKI mode with core.trust_ca_certificates: the CA decides for the certificates it signed,
    // and a revoked one is untrusted even when it is in the trust store (as LXD).
    const { ca, trustCa } = this.opts;
    if (ca && !forwarded && !this.acceptsPeer(der)) return { trusted: false, protocol: "tls", username: "", address };
    if (ca && !forwarded && trustCa?.()) {
      const verdict = caVerdict(ca, new X509Certificate(der));
      if (verdict === false) return { trusted: false, protocol: "tls", username: "", address };
      if (verdict === true && !this.clients.has(fingerprint)) return { trusted: true, protocol: "tls", username: fingerprint, address, fingerprint, restricted: false };
    }
    const client = this.clients.get(fingerprint);
    if (!client) {
      const metrics = this.metrics.get(fingerprint);
      if (!metrics) return { trusted: false, protocol: "tls", username: fingerprint, address, fingerprint };
      return { trusted: false, protocol: "tls", username: fingerprint, address, fingerprint, metrics: true, restricted: metrics.restricted, projects: metrics.restricted ? metrics.projects : undefined };
    }
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
