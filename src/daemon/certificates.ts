// The server's TLS identity: an ECDSA P-384 self-signed certificate, created on first start.
import { X509Certificate, createHash, KeyObject, webcrypto } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";

/** @peculiar/x509 is loaded only when a certificate is made: most starts never need it. */
async function loadX509() {
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(webcrypto as unknown as Crypto);
  return x509;
}

export interface KeyPair {
  cert: string;
  key: string;
  fingerprint: string;
}

export function certFingerprint(pem: string): string {
  const der = new X509Certificate(pem).raw;
  return createHash("sha256").update(der).digest("hex");
}

export async function generateCertificate(commonName: string): Promise<{ cert: string; key: string }> {
  const x509 = await loadX509();
  const alg = { name: "ECDSA", namedCurve: "P-384", hash: "SHA-384" };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = new Date();
  const notAfter = new Date(now);
  notAfter.setFullYear(now.getFullYear() + 10);
  const host = hostname();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString("hex").replace(/^[89a-f]/, "1"),
    name: `O=linuxcontainers.org, CN=${commonName}`,
    notBefore: now,
    notAfter,
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: host },
        { type: "ip", value: "127.0.0.1" },
        { type: "ip", value: "::1" },
      ]),
    ],
  });
  const key = KeyObject.from(keys.privateKey).export({ type: "sec1", format: "pem" }).toString();
  return { cert: cert.toString("pem") + "\n", key };
}

/** Load the server keypair, creating it (key 0600) if missing. */
export async function ensureServerCertificate(certFile: string, keyFile: string): Promise<KeyPair> {
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    const { cert, key } = await generateCertificate(`root@${hostname()}`);
    writeFileSync(keyFile, key, { mode: 0o600 });
    writeFileSync(certFile, cert, { mode: 0o644 });
  }
  const cert = readFileSync(certFile, "utf8");
  return { cert, key: readFileSync(keyFile, "utf8"), fingerprint: certFingerprint(cert) };
}
