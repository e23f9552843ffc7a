// The server's TLS identity: an ECDSA P-384 self-signed certificate, created on first start.
import { X509Certificate, createHash, createPrivateKey } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../os/exec.js";

export interface KeyPair {
  cert: string;
  key: string;
  fingerprint: string;
}

export function certFingerprint(pem: string): string {
  const der = new X509Certificate(pem).raw;
  return createHash("sha256").update(der).digest("hex");
}

/** Names that can go into openssl's config file as they are (hostnames are these). */
const PLAIN_NAME = /^[A-Za-z0-9@._-]{1,64}$/;

/**
 * An ECDSA P-384 self-signed certificate as LXD makes its server's: O=linuxcontainers.org, the
 * given CN, 10 years, server auth, not a CA, SANs for the hostname and loopback. Made by the
 * system's openssl (one process at first start, instead of loading an X.509 library).
 */
export async function generateCertificate(commonName: string): Promise<{ cert: string; key: string }> {
  const host = hostname();
  if (!PLAIN_NAME.test(commonName)) throw new Error(`Invalid certificate common name ${JSON.stringify(commonName)}`);
  const dir = mkdtempSync(join(tmpdir(), "nodelxd-cert-"));
  try {
    const config = [
      "[req]",
      "distinguished_name = dn",
      "x509_extensions = ext",
      "prompt = no",
      "[dn]",
      "O = linuxcontainers.org",
      `CN = ${commonName}`,
      "[ext]",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "extendedKeyUsage = serverAuth",
      "basicConstraints = critical, CA:FALSE",
      `subjectAltName = ${PLAIN_NAME.test(host) ? `DNS:${host}, ` : ""}IP:127.0.0.1, IP:::1`,
      "",
    ].join("\n");
    writeFileSync(join(dir, "req.cnf"), config, { mode: 0o600 });
    await run("openssl", ["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-sha384", "-nodes", "-days", "3650",
      "-config", join(dir, "req.cnf"), "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")]);
    const key = createPrivateKey(readFileSync(join(dir, "key.pem"))).export({ type: "sec1", format: "pem" }).toString();
    return { cert: readFileSync(join(dir, "cert.pem"), "utf8"), key };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
