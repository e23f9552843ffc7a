import { describe, expect, it } from "vitest";
import { addExpiry, decodeToken, encodeToken, fingerprintOf, toPem } from "../../src/daemon/certificate-service.js";
import { checkPassword, hashPassword } from "../../src/daemon/trust-password.js";
import { X509Certificate } from "node:crypto";
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

describe("PEM", () => {
  it("DER to PEM keeps the certificate and its fingerprint", async () => {
    const { cert } = await generateCertificate("unit");
    const der = new X509Certificate(cert).raw;
    const pem = toPem(der);
    expect(pem).toMatch(/^-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END CERTIFICATE-----\n$/);
    expect(fingerprintOf(new X509Certificate(pem).raw)).toBe(fingerprintOf(der));
  });
});
