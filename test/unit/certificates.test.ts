import { describe, expect, it } from "vitest";
import { addExpiry, decodeToken, encodeToken, fingerprintOf, toPem } from "../../src/daemon/certificate-service.js";
import { checkPassword, hashPassword } from "../../src/daemon/trust-password.js";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { generateCertificate } from "../../src/daemon/certificates.js";

describe("trust password hashing", () => {
  it("salted scrypt: same password, different hashes; checks only the right one", async () => {
    const a = hashPassword("pw");
    const b = hashPassword("pw");
    expect(a).not.toBe(b);
    expect(a).toMatch(/^[0-9a-f]{192}$/);
    expect(await checkPassword(a, "pw")).toBe(true);
    expect(await checkPassword(a, "pw ")).toBe(false);
    expect(await checkPassword("not-a-hash", "pw")).toBe(false);
  });
});

describe("tokens", () => {
  it("round-trip as lxc encodes them; other strings are not tokens", () => {
    const t = { client_name: "c", fingerprint: "ab", addresses: ["127.0.0.1:8443"], secret: "s", expires_at: "0001-01-01T00:00:00Z" };
    expect(decodeToken(encodeToken(t))).toEqual(t);
    expect(decodeToken("a password")).toBeUndefined();
    expect(decodeToken(Buffer.from('{"x":1}').toString("base64"))).toBeUndefined();
  });

  it("expiry expressions", () => {
    const from = new Date("2026-01-31T00:00:00Z");
    expect(addExpiry(from, "1H 30M").toISOString()).toBe("2026-01-31T01:30:00.000Z");
    expect(addExpiry(from, "2d").toISOString()).toBe("2026-02-02T00:00:00.000Z");
    expect(addExpiry(from, "1w").toISOString()).toBe("2026-02-07T00:00:00.000Z");
    expect(addExpiry(from, "1y").toISOString()).toBe("2027-01-31T00:00:00.000Z");
  });
});

describe("server certificate", () => {
  it("is LXD's kind: ECDSA P-384, self-signed, server auth, not a CA, loopback SANs, with its key", async () => {
    const { cert, key } = await generateCertificate("root@unit-host");
    const x = new X509Certificate(cert);
    expect(x.subject).toBe("O=linuxcontainers.org\nCN=root@unit-host");
    expect(x.issuer).toBe(x.subject);
    expect(x.ca).toBe(false);
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe("secp384r1");
    expect(x.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(x.subjectAltName).toContain("IP Address:0:0:0:0:0:0:0:1");
    expect(x.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(key))).toBe(true);
    expect(key).toMatch(/^-----BEGIN EC PRIVATE KEY-----\n/);
    const years = (Date.parse(x.validTo) - Date.parse(x.validFrom)) / (365.25 * 86400_000);
    expect(Math.round(years)).toBe(10);
    await expect(generateCertificate("a/b\nCN=x")).rejects.toThrow("Invalid certificate common name");
  });
});

describe("PEM", () => {
  it("DER to PEM keeps the certificate and its fingerprint", async () => {
    const { cert } = await generateCertificate("unit");
    const der = new X509Certificate(cert).raw;
    const pem = toPem(der);
    expect(pem).toMatch(/^-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END CERTIFICATE-----\n$/);
    expect(fingerprintOf(new X509Certificate(pem).raw)).toBe(fingerprintOf(der));
  });
});
