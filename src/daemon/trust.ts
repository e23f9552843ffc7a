// Who a request comes from. Unix socket peers are trusted (the socket's permissions are
// the access control); TLS peers are trusted when their certificate is in the trust store.
import type { IncomingMessage } from "node:http";
import { createHash } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type { Db } from "../db/database.js";
import type { Requestor } from "../api/route.js";

const UNIX_REQUESTOR: Requestor = Object.freeze({ trusted: true, protocol: "unix", username: "root", address: "@" });

export class TrustStore {
  private fingerprints = new Set<string>();

  constructor(private readonly db: Db) {
    this.reload();
  }

  reload(): void {
    const rows = this.db.prepare("SELECT fingerprint FROM certificates WHERE type = 'client'").all() as { fingerprint: string }[];
    this.fingerprints = new Set(rows.map((r) => r.fingerprint));
  }

  has(fingerprint: string): boolean {
    return this.fingerprints.has(fingerprint);
  }

  identify(raw: IncomingMessage): Requestor {
    const socket = raw.socket as TLSSocket;
    if (!socket.encrypted) return UNIX_REQUESTOR;
    const address = `${socket.remoteAddress}:${socket.remotePort}`;
    const peer = socket.getPeerCertificate?.();
    if (!peer || !peer.raw) return { trusted: false, protocol: "tls", username: "", address };
    const fingerprint = createHash("sha256").update(peer.raw).digest("hex");
    return { trusted: this.has(fingerprint), protocol: "tls", username: fingerprint, address, fingerprint };
  }
}
