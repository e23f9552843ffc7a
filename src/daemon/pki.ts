// LXD's PKI mode: a `server.ca` in LXD_DIR makes the TLS listener accept only client
// certificates that CA signed, and with core.trust_ca_certificates those are trusted without
// being in the trust store, unless `ca.crl` lists them as revoked (then never trusted).
import { X509Certificate, webcrypto } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface CertificateAuthority {
  /** The CA as PEM, for the TLS listener's client verification. */
  pem: string;
  cert: X509Certificate;
  /** Serial numbers ca.crl revokes (lower-case hex without leading zeros). */
  revoked: Set<string>;
}

export const normaliseSerial = (hex: string) => hex.toLowerCase().replace(/^0+(?=.)/, "");

/** The CA and CRL of LXD_DIR, or undefined when there is no server.ca (the usual, non-PKI case). */
export async function loadCertificateAuthority(dir: string): Promise<CertificateAuthority | undefined> {
  const caFile = join(dir, "server.ca");
  if (!existsSync(caFile)) return undefined;
  const pem = readFileSync(caFile, "utf8");
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (e) {
    throw new Error(`Failed to load the CA certificate ${caFile}: ${(e as Error).message}`);
  }
  const revoked = new Set<string>();
  const crlFile = join(dir, "ca.crl");
  if (existsSync(crlFile)) {
    await import("reflect-metadata");
    const x509 = await import("@peculiar/x509");
    x509.cryptoProvider.set(webcrypto as unknown as Crypto);
    let crl: InstanceType<typeof x509.X509Crl>;
    try {
      crl = new x509.X509Crl(readFileSync(crlFile, "utf8"));
    } catch (e) {
      throw new Error(`Failed to load the certificate revocation list ${crlFile}: ${(e as Error).message}`);
    }
    for (const entry of crl.entries) revoked.add(normaliseSerial(entry.serialNumber));
  }
  return { pem, cert, revoked };
}

/**
 * Whether `peer` is signed by the CA: undefined when it is not (the trust store decides),
 * otherwise true, or false when the CRL revokes it (LXD's CheckTrustState).
 */
export function caVerdict(ca: CertificateAuthority, peer: X509Certificate): boolean | undefined {
  if (!peer.checkIssued(ca.cert) || !peer.verify(ca.cert.publicKey)) return undefined;
  return !ca.revoked.has(normaliseSerial(peer.serialNumber));
}
