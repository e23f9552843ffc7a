// The TLS trust store: who may use the remote API. Rules follow LXD 5.0.2's certificate
// endpoints; every change reloads the TrustStore that the listeners consult.
import { X509Certificate, createHash, randomBytes } from "node:crypto";
import { BadRequest, Forbidden, InternalError, NotFound } from "../shared/errors.js";
import type { Requestor } from "../shared/requestor.js";
import type { CertificateRecord, CertificateRepo } from "../db/certificate-repo.js";
import type { EventHub } from "../operations/events.js";
import { secretsEqual, type OperationManager } from "../operations/manager.js";
import { isAdmin } from "../api/access.js";
import type { OperationView } from "../operations/types.js";
import type { ServerService } from "./server-service.js";
import { checkPassword } from "./trust-password.js";
import type { TrustStore } from "./trust.js";

export const CERTIFICATE_TYPES = ["client", "metrics"] as const;

export interface CertificateView {
  name: string;
  type: string;
  restricted: boolean;
  projects: string[];
  certificate: string;
  fingerprint: string;
}

export interface CertificatesPost {
  name: string;
  type: string;
  restricted: boolean;
  projects: string[];
  certificate: string;
  password: string;
  token: boolean;
}

export interface CertificatePut {
  name: string;
  type: string;
  restricted: boolean;
  projects: string[];
  certificate: string;
}

/** What the request's transport says about the caller. */
export interface Caller {
  requestor: Requestor;
  /** The DER of the TLS client certificate, if one was presented. */
  peerCertificate?: Buffer;
  /** "host:port" for TLS, "@" for the unix socket. */
  remoteAddress: string;
}

export interface CertificateServiceDeps {
  repo: CertificateRepo;
  trust: TrustStore;
  events: EventHub;
  operations: OperationManager;
  server: ServerService;
  serverFingerprint: string;
  /** Whether a project exists (until projects exist, only "default"). */
  projectExists?: (name: string) => boolean;
}

/** The token an untrusted client sends as `password` (`lxc remote add NAME TOKEN`). */
export interface CertificateAddToken {
  client_name: string;
  fingerprint: string;
  addresses: string[];
  secret: string;
  expires_at: string;
}

const GO_ZERO_TIME = "0001-01-01T00:00:00Z";

const view = (c: CertificateRecord): CertificateView => ({
  name: c.name,
  type: c.type,
  restricted: c.restricted,
  projects: c.projects,
  certificate: c.certificate,
  fingerprint: c.fingerprint,
});

export function toPem(der: Buffer): string {
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

export function fingerprintOf(der: Buffer): string {
  return createHash("sha256").update(der).digest("hex");
}

/** Decode a token as `lxc` encodes it: base64 of JSON. Undefined if it isn't one. */
export function decodeToken(text: string): CertificateAddToken | undefined {
  try {
    const json = JSON.parse(Buffer.from(text, "base64").toString("utf8"));
    if (json && typeof json.secret === "string" && typeof json.client_name === "string") return json as CertificateAddToken;
  } catch {
    /* not a token */
  }
  return undefined;
}

export function encodeToken(t: CertificateAddToken): string {
  return Buffer.from(JSON.stringify(t)).toString("base64");
}

/** LXD expiry expressions ("30d", "1H 30M") added to a date. */
export function addExpiry(from: Date, expr: string): Date {
  const out = new Date(from);
  for (const [, n, unit] of expr.matchAll(/(\d+)\s*(S|M|H|d|w|m|y)/g)) {
    const v = Number(n);
    if (unit === "S") out.setUTCSeconds(out.getUTCSeconds() + v);
    if (unit === "M") out.setUTCMinutes(out.getUTCMinutes() + v);
    if (unit === "H") out.setUTCHours(out.getUTCHours() + v);
    if (unit === "d") out.setUTCDate(out.getUTCDate() + v);
    if (unit === "w") out.setUTCDate(out.getUTCDate() + 7 * v);
    if (unit === "m") out.setUTCMonth(out.getUTCMonth() + v);
    if (unit === "y") out.setUTCFullYear(out.getUTCFullYear() + v);
  }
  return out;
}

function parseX509(der: Buffer): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch {
    throw new BadRequest("Invalid certificate material: x509: malformed certificate");
  }
}

function checkValidity(cert: X509Certificate, now = new Date()): void {
  if (new Date(cert.validFrom) > now) throw new BadRequest("The provided certificate isn't valid yet");
  if (new Date(cert.validTo) < now) throw new BadRequest("The provided certificate is expired");
}

function commonName(cert: X509Certificate): string {
  for (const line of cert.subject.split("\n")) if (line.startsWith("CN=")) return line.slice(3);
  return "";
}

export class CertificateService {
  constructor(private readonly deps: CertificateServiceDeps) {}

  /** The trust store as `who` may see it: a restricted client sees its own certificate only. */
  list(who?: Requestor): CertificateView[] {
    return this.deps.repo
      .list()
      .filter((c) => !who || isAdmin(who) || c.fingerprint === who.fingerprint)
      .map(view);
  }

  /** One certificate; a restricted client may see only its own (403 otherwise). */
  get(prefix: string, who?: Requestor): CertificateView {
    const c = this.find(prefix);
    if (who && !isAdmin(who) && c.fingerprint !== who.fingerprint) throw new Forbidden();
    return view(c);
  }

  private find(prefix: string): CertificateRecord {
    const matches = prefix === "" ? [] : this.deps.repo.byPrefix(prefix);
    if (matches.length === 0) throw new NotFound("Certificate not found");
    if (matches.length > 1) throw new BadRequest("More than one certificate matches");
    return matches[0];
  }

  /** POST /1.0/certificates: a certificate added (its fingerprint), or a token operation. */
  async add(req: CertificatesPost, caller: Caller): Promise<{ fingerprint: string } | { operation: OperationView }> {
    const httpsAddress = this.deps.server.get("core.https_address") ?? "";
    if (req.token && req.certificate !== "") throw new BadRequest("Can't use certificate if token is requested");
    if (req.token) {
      if (req.type !== "client") throw new BadRequest("Tokens can only be issued for client certificates");
      if (httpsAddress === "") throw new BadRequest("Can't issue token when server isn't listening on network");
    }
    const trusted = caller.requestor.trusted;
    if (trusted && req.certificate === "" && !req.token) throw new BadRequest("Client is already trusted");
    if (trusted && !isAdmin(caller.requestor)) {
      // A restricted client adds certificates only as an untrusted one could: with the trust password.
      if (req.token || req.password === "") throw new Forbidden();
      const stored = this.deps.server.get("core.trust_password") ?? "";
      if (stored === "" || !(await checkPassword(stored, req.password))) throw new Forbidden();
    }
    if (!trusted) {
      const stored = this.deps.server.get("core.trust_password") ?? "";
      const passwordOk = stored !== "" && req.password !== "" && (await checkPassword(stored, req.password));
      if (!passwordOk) {
        const token = req.password !== "" ? decodeToken(req.password) : undefined;
        if (!token) throw new Forbidden();
        const op = this.useToken(token);
        const tokenReq = op.metadata!.request as CertificatesPost;
        req = { ...req, name: tokenReq.name, type: tokenReq.type, restricted: tokenReq.restricted, projects: tokenReq.projects };
      }
    }
    if (!(CERTIFICATE_TYPES as readonly string[]).includes(req.type)) throw new BadRequest("Invalid certificate type");
    for (const p of req.projects) if (!(this.deps.projectExists ?? ((n) => n === "default"))(p)) throw new NotFound("Project not found");

    let der: Buffer;
    let name = "";
    if (req.certificate !== "") {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(req.certificate.replace(/\s/g, ""))) throw new BadRequest("illegal base64 data at input byte 0");
      der = Buffer.from(req.certificate, "base64");
      name = req.name;
    } else if (req.token) {
      return { operation: this.createToken(req) };
    } else if (caller.requestor.protocol === "tls" || caller.requestor.protocol === "candid") {
      // In CA mode only a CA-signed certificate counts (LXD's Go clients send none other there).
      if (!caller.peerCertificate || !this.deps.trust.acceptsPeer(caller.peerCertificate)) throw new BadRequest("No client certificate provided");
      der = caller.peerCertificate;
      name = req.name;
    } else {
      throw new BadRequest("Can't use TLS data on non-TLS link");
    }
    const cert = parseX509(der);
    checkValidity(cert);
    const fingerprint = fingerprintOf(der);
    if (name === "") name = commonName(cert);
    if (name === "") {
      const host = /^(.+):\d+$/.exec(caller.remoteAddress)?.[1];
      if (host === undefined) throw new InternalError(`address ${caller.remoteAddress}: missing port in address`);
      name = host.replace(/^\[|\]$/g, "");
    }
    if (this.deps.repo.get(fingerprint)) {
      this.deps.trust.reload();
      throw new BadRequest("Certificate already in trust store");
    }
    this.deps.repo.insert({ fingerprint, type: req.type, name, certificate: toPem(der), restricted: req.restricted, projects: req.projects });
    this.deps.trust.reload();
    this.deps.events.lifecycle("certificate-created", `/1.0/certificates/${fingerprint}`, { requestor: requestorOf(caller.requestor) });
    return { fingerprint };
  }

  private createToken(req: CertificatesPost): OperationView {
    const expiry = this.deps.server.get("core.remote_token_expiry");
    const metadata: Record<string, unknown> = {
      addresses: this.deps.server.addresses(),
      fingerprint: this.deps.serverFingerprint,
      request: { name: req.name, type: req.type, restricted: req.restricted, projects: req.projects, certificate: "", password: "", token: true },
      secret: randomBytes(32).toString("hex"),
    };
    if (expiry) metadata.expiresAt = addExpiry(new Date(), expiry).toISOString();
    return this.deps.operations.create({ class: "token", description: "Executing operation", metadata, mayCancel: true, adminOnly: true });
  }

  /** Find the running token operation a token belongs to, and end it: a token is used once. */
  private useToken(token: CertificateAddToken): OperationView {
    const op = this.deps.operations
      .list()
      .find((o) => o.class === "token" && o.status_code < 200 && typeof o.metadata?.secret === "string" && secretsEqual(token.secret, o.metadata.secret) && o.metadata?.request !== undefined);
    if (!op) throw new Forbidden("No matching certificate add operation found");
    const expiresAt = op.metadata!.expiresAt as string | undefined;
    void this.deps.operations.cancel(op.id);
    if (expiresAt && expiresAt !== GO_ZERO_TIME && new Date(expiresAt) < new Date()) throw new Forbidden("Token has expired");
    return op;
  }

  /** PUT (or PATCH, merged by the caller) /1.0/certificates/{fingerprint}. */
  update(prefix: string, put: CertificatePut, requestor: Requestor): void {
    const current = this.find(prefix);
    const restrictedCaller = requestor.protocol === "tls" && requestor.restricted;
    if (restrictedCaller) {
      if (requestor.fingerprint !== current.fingerprint) throw new Forbidden();
      if (put.name !== current.name || put.type !== current.type || put.restricted !== current.restricted || !sameList(put.projects, current.projects)) {
        throw new Forbidden("Only the certificate can be changed");
      }
    }
    if (put.type !== current.type) throw new Forbidden("The certificate type cannot be changed");
    for (const p of put.projects) if (!(this.deps.projectExists ?? ((n) => n === "default"))(p)) throw new NotFound("Project not found");
    let next: CertificateRecord = { ...current, name: put.name, restricted: put.restricted, projects: put.projects };
    if (put.certificate !== "" && put.certificate !== current.certificate) {
      const block = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(put.certificate);
      if (!block) throw new BadRequest("Invalid PEM certificate");
      const der = Buffer.from(block[1].replace(/\s/g, ""), "base64");
      checkValidity(parseX509(der));
      const fingerprint = fingerprintOf(der);
      if (fingerprint !== current.fingerprint && this.deps.repo.get(fingerprint)) throw new BadRequest("Certificate already in trust store");
      next = { ...next, fingerprint, certificate: toPem(der) };
    }
    this.deps.repo.replace(current.fingerprint, next);
    this.deps.trust.reload();
    this.deps.events.lifecycle("certificate-updated", `/1.0/certificates/${next.fingerprint}`, { requestor: requestorOf(requestor) });
  }

  delete(prefix: string, requestor: Requestor): void {
    const current = this.find(prefix);
    if (requestor.protocol === "tls" && requestor.restricted && requestor.fingerprint !== current.fingerprint) throw new Forbidden();
    this.deps.repo.delete(current.fingerprint);
    this.deps.trust.reload();
    this.deps.events.lifecycle("certificate-deleted", `/1.0/certificates/${current.fingerprint}`, { requestor: requestorOf(requestor) });
  }

}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function requestorOf(r: Requestor) {
  return { username: r.username, protocol: r.protocol, address: r.address };
}
