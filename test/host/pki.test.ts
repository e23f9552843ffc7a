// PKI mode as LXD's suite (pki) drives it: a `server.ca` in LXD_DIR makes the TLS listener take
// only CA-signed client certificates; with core.trust_ca_certificates those are trusted without
// a trust store entry, and one that `ca.crl` revokes is never trusted, even from the store.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectResponse, startDaemon, type Res, type TestDaemon } from "../helpers/daemon.js";

let d: TestDaemon;
let tmp: string;
let port: number;
type Pair = { cert: string; key: string };
const certs: Record<string, Pair> = {};

const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: tmp, stdio: ["ignore", "pipe", "pipe"] });

/** A client key and certificate signed by the test CA with the given serial. */
function signed(name: string, serial: string): Pair {
  openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
  writeFileSync(join(tmp, "client.ext"), "extendedKeyUsage=clientAuth\n");
  openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", serial, "-days", "30", "-extfile", "client.ext", "-out", `${name}.crt`);
  return { cert: readFileSync(join(tmp, `${name}.crt`), "utf8"), key: readFileSync(join(tmp, `${name}.key`), "utf8") };
}

function tls(method: string, path: string, client?: Pair, body?: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, rejectUnauthorized: false, cert: client?.cert, key: client?.key, agent: false }, (res) => collectResponse(res).then(resolve, reject));
    req.on("error", reject);
    if (body !== undefined) req.write(JSON.stringify(body));
    req.end();
  });
}
const auth = async (client?: Pair) => (await tls("GET", "/1.0", client)).body.metadata.auth as string;

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-pki-");
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=test-ca", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  certs.client = signed("lxd-client", "0x1001");
  certs.other = signed("lxd-other", "0x1003");
  certs.revoked = signed("lxd-revoked", "0x1002");
  certs.lxc = signed("lxd-lxc", "0x1004");
  // A CRL revoking the second one, made with `openssl ca` over a minimal database.
  writeFileSync(join(tmp, "index.txt"), "");
  writeFileSync(join(tmp, "crlnumber"), "01\n");
  writeFileSync(join(tmp, "ca.cnf"), "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n");
  openssl("ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt", "-revoke", "lxd-revoked.crt");
  openssl("ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt", "-gencrl", "-out", "crl.pem");
  // A certificate of its own, signed by nobody the daemon knows.
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "self.key", "-out", "self.crt", "-days", "30", "-subj", "/CN=self");
  certs.self = { cert: readFileSync(join(tmp, "self.crt"), "utf8"), key: readFileSync(join(tmp, "self.key"), "utf8") };

  const dir = mkdtempSync("/tmp/nodelxd-test-pkid-");
  copyFileSync(join(tmp, "ca.crt"), join(dir, "server.ca"));
  copyFileSync(join(tmp, "crl.pem"), join(dir, "ca.crl"));
  d = await startDaemon({ dir });
  port = 20000 + Math.floor(Math.random() * 20000);
  const r = await d.api("PATCH", "/1.0", { config: { "core.https_address": `127.0.0.1:${port}`, "core.trust_password": "pw-Secret1" } });
  expect(r.status).toBe(200);
}, 60_000);

afterAll(async () => {
  await d?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("PKI mode (server.ca)", () => {
  it("takes no certificate but a CA-signed one: others cannot join even with the password", async () => {
    expect(await auth()).toBe("untrusted");
    expect(await auth(certs.self)).toBe("untrusted");
    const self = await tls("POST", "/1.0/certificates", certs.self, { type: "client", password: "pw-Secret1" });
    expect([self.status, self.body.error]).toEqual([400, "No client certificate provided"]);
    expect(await auth(certs.self)).toBe("untrusted");
    expect(await auth(certs.client)).toBe("untrusted");
  });

  it("lets the stock client join with a CA-signed certificate and the password", () => {
    const conf = join(tmp, "lxcconf");
    mkdirSync(conf);
    copyFileSync(join(tmp, "lxd-lxc.crt"), join(conf, "client.crt"));
    copyFileSync(join(tmp, "lxd-lxc.key"), join(conf, "client.key"));
    copyFileSync(join(tmp, "ca.crt"), join(conf, "client.ca"));
    const r = spawnSync("lxc", ["remote", "add", "pki", `127.0.0.1:${port}`, "--accept-certificate", "--password=pw-Secret1"], { env: { ...process.env, LXD_CONF: conf }, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    // A client with a certificate of its own (not CA-signed) sends none: LXD's message.
    const plain = spawnSync("lxc", ["remote", "add", "pki", `127.0.0.1:${port}`, "--accept-certificate", "--password=pw-Secret1"], { env: { ...process.env, LXD_CONF: join(tmp, "plainconf") }, encoding: "utf8" });
    expect(plain.status).not.toBe(0);
    expect(plain.stderr).toContain("No client certificate provided");
  }, 60_000);

  it("adds a CA-signed certificate with the trust password, as without a CA", async () => {
    expect((await tls("POST", "/1.0/certificates", certs.client, { type: "client", password: "wrong" })).status).toBe(403);
    expect((await tls("POST", "/1.0/certificates", certs.client, { type: "client", password: "pw-Secret1" })).status).toBe(201);
    expect(await auth(certs.client)).toBe("trusted");
  });

  it("trusts every CA-signed certificate with core.trust_ca_certificates, except revoked ones", async () => {
    // The revoked certificate enters the trust store by password while the CA is not trusted.
    expect((await tls("POST", "/1.0/certificates", certs.revoked, { type: "client", password: "pw-Secret1" })).status).toBe(201);
    expect(await auth(certs.revoked)).toBe("trusted");
    expect((await d.api("PATCH", "/1.0", { config: { "core.trust_ca_certificates": "true" } })).status).toBe(200);
    expect(await auth(certs.other)).toBe("trusted");
    expect((await tls("GET", "/1.0/instances", certs.other)).status).toBe(200);
    // Revoked: untrusted although it is in the store; a password does not help.
    expect(await auth(certs.revoked)).toBe("untrusted");
    expect((await tls("GET", "/1.0/instances", certs.revoked)).status).toBe(403);
    expect((await d.api("PATCH", "/1.0", { config: { "core.trust_ca_certificates": "false" } })).status).toBe(200);
    expect(await auth(certs.other)).toBe("untrusted");
    expect(await auth(certs.revoked)).toBe("trusted");
  });
});
