// The TLS trust store, driven over the unix socket, raw TLS clients with and without a client
// certificate, and the stock `lxc` client (remote add with a password and with a token).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import Database from "better-sqlite3";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectResponse, startDaemon, type Res, type TestDaemon } from "../helpers/daemon.js";

let d: TestDaemon;
let port: number;
let tmp: string;

function makeCert(name: string, subject: string): { cert: string; key: string; der: Buffer; fingerprint: string } {
  const crt = join(tmp, `${name}.crt`);
  const key = join(tmp, `${name}.key`);
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj", subject], { stdio: "ignore" });
  const der = execFileSync("openssl", ["x509", "-in", crt, "-outform", "der"]);
  const fingerprint = execFileSync("sha256sum", { input: der }).toString().slice(0, 64);
  return { cert: readFileSync(crt, "utf8"), key: readFileSync(key, "utf8"), der, fingerprint };
}

function tls(method: string, path: string, body?: unknown, client?: { cert: string; key: string }): Promise<Res> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ host: "127.0.0.1", port, method, path, rejectUnauthorized: false, cert: client?.cert, key: client?.key, agent: false }, (res) =>
      collectResponse(res).then(resolve, reject),
    );
    req.on("error", reject);
    if (payload) req.write(payload);
    req.end();
  });
}

function lxc(conf: string, ...args: string[]) {
  const r = spawnSync("lxc", args, { env: { ...process.env, LXD_CONF: join(tmp, conf) }, encoding: "utf8", timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-certs-"); // here, not at collection (`vitest list` runs no afterAll)
  d = await startDaemon();
  port = 20000 + Math.floor(Math.random() * 20000);
  const r = await d.api("PATCH", "/1.0", { config: { "core.https_address": `127.0.0.1:${port}`, "core.trust_password": "pw-Secret1" } });
  expect(r.status).toBe(200);
});
afterAll(async () => {
  await d?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("trust password", () => {
  it("is stored as a salted scrypt hash and shown as true", async () => {
    expect((await d.api("GET", "/1.0")).body.metadata.config["core.trust_password"]).toBe(true);
    const db = new Database(join(d.dir, "database", "global", "db.bin"), { readonly: true });
    const row = db.prepare("SELECT value FROM config WHERE key = 'core.trust_password'").get() as { value: string };
    db.close();
    expect(row.value).toMatch(/^[0-9a-f]{192}$/);
    expect(row.value).not.toContain("pw-Secret1");
  });
});

describe("untrusted TLS clients", () => {
  it("GET /1.0 shows exactly LXD's untrusted fields", async () => {
    for (const client of [undefined, makeCert("stranger", "/CN=stranger")]) {
      const r = await tls("GET", "/1.0", undefined, client);
      expect(r.status).toBe(200);
      expect(Object.keys(r.body.metadata)).toEqual(["api_extensions", "api_status", "api_version", "auth", "public", "auth_methods"]);
      expect(r.body.metadata.auth).toBe("untrusted");
    }
  });

  it("everything else is 403 not authorized", async () => {
    for (const path of ["/1.0/certificates", "/1.0/resources", "/1.0/operations"]) {
      const r = await tls("GET", path);
      expect(r.status).toBe(403);
      expect(r.body.error).toBe("not authorized");
    }
    expect((await tls("GET", "/1.0/nothing")).status).toBe(404);
  });

  it("a wrong password is refused, a missing client certificate is a 400", async () => {
    const c = makeCert("wrong", "/CN=wrong");
    const bad = await tls("POST", "/1.0/certificates", { type: "client", password: "nope" }, c);
    expect(bad.status).toBe(403);
    expect(bad.body.error).toBe("not authorized");
    const nocert = await tls("POST", "/1.0/certificates", { type: "client", password: "pw-Secret1" });
    expect(nocert.status).toBe(400);
    expect(nocert.body.error).toBe("No client certificate provided");
    expect((await d.api("GET", "/1.0/certificates")).body.metadata).toEqual([]);
  });

  it("the right password adds the client's own certificate; it is trusted from then on", async () => {
    const c = makeCert("pwclient", "/CN=pwclient");
    const r = await tls("POST", "/1.0/certificates", { type: "client", password: "pw-Secret1" }, c);
    expect(r.status).toBe(201);
    expect(r.headers.location).toBe(`/1.0/certificates/${c.fingerprint}`);
    expect(r.body.metadata).toBeNull();
    expect((await tls("GET", "/1.0", undefined, c)).body.metadata.auth).toBe("trusted");
    expect((await tls("GET", "/1.0/certificates", undefined, c)).body.metadata).toContain(`/1.0/certificates/${c.fingerprint}`);
    const again = await tls("POST", "/1.0/certificates", { type: "client", password: "pw-Secret1" }, c);
    expect(again.body.error).toBe("Client is already trusted");
    const got = (await d.api("GET", `/1.0/certificates/${c.fingerprint}`)).body.metadata;
    expect(got).toEqual({ name: "pwclient", type: "client", restricted: false, projects: [], certificate: c.cert.replace(/\r/g, ""), fingerprint: c.fingerprint });
    // Revoking it takes effect at once, and a restart keeps the store.
    await d.kill9();
    await d.restart();
    expect((await tls("GET", "/1.0", undefined, c)).body.metadata.auth).toBe("trusted");
    expect((await d.api("DELETE", `/1.0/certificates/${c.fingerprint.slice(0, 12)}`)).status).toBe(200);
    expect((await tls("GET", "/1.0", undefined, c)).body.metadata.auth).toBe("untrusted");
  });
});

describe("names", () => {
  it("a client certificate without a CN is named after the client's address", async () => {
    const c = makeCert("nocn-tls", "/O=nocn");
    expect((await tls("POST", "/1.0/certificates", { type: "client", password: "pw-Secret1" }, c)).status).toBe(201);
    expect((await d.api("GET", `/1.0/certificates/${c.fingerprint}`)).body.metadata.name).toBe("127.0.0.1");
    await d.api("DELETE", `/1.0/certificates/${c.fingerprint}`);
  });
});

describe("managing certificates over the unix socket", () => {
  const b64 = (der: Buffer) => der.toString("base64");

  it("adds, reads by prefix, updates, patches and deletes", async () => {
    const c = makeCert("managed", "/O=nocn");
    // No CN and no TLS peer address to fall back on: LXD's own error.
    const noName = await d.api("POST", "/1.0/certificates", { type: "client", certificate: b64(c.der) });
    expect(noName.status).toBe(500);
    expect(noName.body.error).toBe("address @: missing port in address");
    const r = await d.api("POST", "/1.0/certificates", { type: "client", name: "m1", certificate: b64(c.der), restricted: true, projects: ["default"] });
    expect(r.status).toBe(201);
    expect(r.headers.location).toBe(`/1.0/certificates/${c.fingerprint}`);
    const dup = await d.api("POST", "/1.0/certificates", { type: "client", name: "m1", certificate: b64(c.der) });
    expect(dup.body.error).toBe("Certificate already in trust store");
    const got = await d.api("GET", `/1.0/certificates/${c.fingerprint.slice(0, 8)}`);
    expect(got.body.metadata).toMatchObject({ name: "m1", restricted: true, projects: ["default"], fingerprint: c.fingerprint });
    expect(got.headers.etag).toMatch(/^"[0-9a-f]{64}"$/);
    const list = (await d.api("GET", "/1.0/certificates?recursion=1")).body.metadata;
    expect(list.map((x: any) => x.name)).toContain("m1");

    const typeChange = await d.api("PUT", `/1.0/certificates/${c.fingerprint}`, { name: "m2" });
    expect(typeChange.status).toBe(403);
    expect(typeChange.body.error).toBe("The certificate type cannot be changed");
    const badProject = await d.api("PUT", `/1.0/certificates/${c.fingerprint}`, { name: "m2", type: "client", projects: ["nope"] });
    expect(badProject.body.error).toBe("Project not found");
    const stale = await d.api("PUT", `/1.0/certificates/${c.fingerprint}`, { name: "m2", type: "client" }, { "if-match": '"abc"' });
    expect(stale.status).toBe(412);
    expect((await d.api("PUT", `/1.0/certificates/${c.fingerprint}`, { name: "m2", type: "client" })).status).toBe(200);
    expect((await d.api("GET", `/1.0/certificates/${c.fingerprint}`)).body.metadata).toMatchObject({ name: "m2", restricted: false, projects: [] });
    expect((await d.api("PATCH", `/1.0/certificates/${c.fingerprint}`, { restricted: true })).status).toBe(200);
    expect((await d.api("GET", `/1.0/certificates/${c.fingerprint}`)).body.metadata).toMatchObject({ name: "m2", restricted: true });

    // Replacing the certificate itself changes the fingerprint.
    const next = makeCert("managed2", "/CN=managed2");
    expect((await d.api("PUT", `/1.0/certificates/${c.fingerprint}`, { name: "m3", type: "client", certificate: next.cert })).status).toBe(200);
    expect((await d.api("GET", `/1.0/certificates/${c.fingerprint}`)).status).toBe(404);
    expect((await d.api("GET", `/1.0/certificates/${next.fingerprint}`)).body.metadata.name).toBe("m3");
    const garbage = await d.api("PUT", `/1.0/certificates/${next.fingerprint}`, { name: "m3", type: "client", certificate: "garbage" });
    expect(garbage.status).toBe(400);

    expect((await d.api("DELETE", `/1.0/certificates/${next.fingerprint}`)).status).toBe(200);
    const gone = await d.api("DELETE", `/1.0/certificates/${next.fingerprint}`);
    expect(gone.status).toBe(404);
    expect(gone.body.error).toBe("Certificate not found");
  });

  it("rejects bad input with LXD's messages", async () => {
    const cases: [unknown, number, string][] = [
      [{ type: "client", certificate: "!!!" }, 400, "illegal base64 data at input byte 0"],
      [{ type: "client", certificate: "aGVsbG8=" }, 400, "Invalid certificate material: x509: malformed certificate"],
      [{ type: "client", token: true, certificate: "x" }, 400, "Can't use certificate if token is requested"],
      [{ type: "metrics", token: true }, 400, "Tokens can only be issued for client certificates"],
      [{ type: "client" }, 400, "Client is already trusted"],
      [{ type: "bogus", certificate: "aGVsbG8=" }, 400, "Invalid certificate type"],
    ];
    for (const [body, status, error] of cases) {
      const r = await d.api("POST", "/1.0/certificates", body);
      expect([r.status, r.body.error]).toEqual([status, error]);
    }
    expect((await d.api("GET", "/1.0/certificates")).body.metadata).toEqual([]);
  });
});

describe("tokens", () => {
  it("a token operation carries what the client needs; the token adds a client once", async () => {
    const r = await d.api("POST", "/1.0/certificates", { type: "client", token: true, name: "tok1" });
    expect(r.status).toBe(202);
    const op = r.body.metadata;
    expect(op.class).toBe("token");
    expect(op.may_cancel).toBe(true);
    expect(op.metadata.addresses).toEqual([`127.0.0.1:${port}`]);
    expect(op.metadata.request).toEqual({ name: "tok1", type: "client", restricted: false, projects: [], certificate: "", password: "", token: true });
    expect(op.metadata.secret).toMatch(/^[0-9a-f]{64}$/);
    const token = Buffer.from(
      JSON.stringify({ client_name: "tok1", fingerprint: op.metadata.fingerprint, addresses: op.metadata.addresses, secret: op.metadata.secret, expires_at: "0001-01-01T00:00:00Z" }),
    ).toString("base64");
    const c = makeCert("tokclient", "/CN=tokclient");
    const forged = Buffer.from(JSON.stringify({ client_name: "x", fingerprint: "", addresses: [], secret: "00", expires_at: "0001-01-01T00:00:00Z" })).toString("base64");
    const bad = await tls("POST", "/1.0/certificates", { password: forged }, c);
    expect([bad.status, bad.body.error]).toEqual([403, "No matching certificate add operation found"]);
    const ok = await tls("POST", "/1.0/certificates", { password: token }, c);
    expect(ok.status).toBe(201);
    expect((await d.api("GET", `/1.0/certificates/${c.fingerprint}`)).body.metadata.name).toBe("tok1");
    expect((await d.api("GET", `/1.0/operations/${op.id}`)).body.metadata.status).toBe("Cancelled");
    const c2 = makeCert("tokclient2", "/CN=tokclient2");
    expect((await tls("POST", "/1.0/certificates", { password: token }, c2)).status).toBe(403);
    await d.api("DELETE", `/1.0/certificates/${c.fingerprint}`);
  });

  it("needs the network listener", async () => {
    await d.api("PATCH", "/1.0", { config: { "core.https_address": "" } });
    const r = await d.api("POST", "/1.0/certificates", { type: "client", token: true, name: "t" });
    expect(r.body.error).toBe("Can't issue token when server isn't listening on network");
    await d.api("PATCH", "/1.0", { config: { "core.https_address": `127.0.0.1:${port}` } });
  });
});

describe("restricted clients and token expiry", () => {
  it("a restricted client may not add, rename or remove certificates, even its own (LXD 5.0.2: DELETE is admin-only)", async () => {
    const me = makeCert("restricted", "/CN=restricted");
    const other = makeCert("other", "/CN=other");
    await d.api("POST", "/1.0/certificates", { type: "client", certificate: me.der.toString("base64"), restricted: true, projects: ["default"] });
    await d.api("POST", "/1.0/certificates", { type: "client", certificate: other.der.toString("base64") });
    expect((await tls("GET", "/1.0", undefined, me)).body.metadata.auth).toBe("trusted");
    const add = await tls("POST", "/1.0/certificates", { type: "client", certificate: makeCert("x", "/CN=x").der.toString("base64") }, me);
    expect(add.status).toBe(403);
    const rename = await tls("PUT", `/1.0/certificates/${me.fingerprint}`, { name: "renamed", type: "client", restricted: true, projects: ["default"] }, me);
    expect([rename.status, rename.body.error]).toEqual([403, "Only the certificate can be changed"]);
    expect((await tls("DELETE", `/1.0/certificates/${other.fingerprint}`, undefined, me)).status).toBe(403);
    expect((await tls("DELETE", `/1.0/certificates/${me.fingerprint}`, undefined, me)).status).toBe(403);
    expect((await tls("GET", "/1.0", undefined, me)).body.metadata.auth).toBe("trusted");
    await d.api("DELETE", `/1.0/certificates/${me.fingerprint}`);
    expect((await tls("GET", "/1.0", undefined, me)).body.metadata.auth).toBe("untrusted");
    await d.api("DELETE", `/1.0/certificates/${other.fingerprint}`);
  });

  it("core.remote_token_expiry bounds a token's life", async () => {
    await d.api("PATCH", "/1.0", { config: { "core.remote_token_expiry": "1S" } });
    const op = (await d.api("POST", "/1.0/certificates", { type: "client", token: true, name: "short" })).body.metadata;
    expect(Date.parse(op.metadata.expiresAt) - Date.now()).toBeLessThanOrEqual(1000);
    await new Promise((r) => setTimeout(r, 1200));
    const token = Buffer.from(JSON.stringify({ client_name: "short", fingerprint: "", addresses: [], secret: op.metadata.secret, expires_at: op.metadata.expiresAt })).toString("base64");
    const r = await tls("POST", "/1.0/certificates", { password: token }, makeCert("late", "/CN=late"));
    expect([r.status, r.body.error]).toEqual([403, "Token has expired"]);
    expect((await d.api("GET", "/1.0/certificates")).body.metadata).toEqual([]);
    await d.api("PATCH", "/1.0", { config: { "core.remote_token_expiry": "" } });
  });

  it("changes are lifecycle events", async () => {
    const ws = new WebSocket("ws+unix://" + d.socket + ":/1.0/events?type=lifecycle");
    const events: any[] = [];
    ws.on("message", (m) => events.push(JSON.parse(String(m))));
    await new Promise((r) => ws.on("open", r));
    const c = makeCert("evented", "/CN=evented");
    await d.api("POST", "/1.0/certificates", { type: "client", certificate: c.der.toString("base64") });
    await d.api("PATCH", `/1.0/certificates/${c.fingerprint}`, { name: "ev2" });
    await d.api("DELETE", `/1.0/certificates/${c.fingerprint}`);
    await new Promise((r) => setTimeout(r, 200));
    ws.close();
    expect(events.map((e) => [e.metadata.action, e.metadata.source])).toEqual([
      ["certificate-created", `/1.0/certificates/${c.fingerprint}`],
      ["certificate-updated", `/1.0/certificates/${c.fingerprint}`],
      ["certificate-deleted", `/1.0/certificates/${c.fingerprint}`],
    ]);
    expect(events[0].metadata.requestor).toEqual({ username: "root", protocol: "unix", address: "@" });
  });
});

describe("the stock lxc client", () => {
  it("remote add with a password, then info, config show and query", () => {
    expect(lxc("a", "remote", "add", "x", `https://127.0.0.1:${port}`, "--password", "wrong", "--accept-certificate").stderr).toContain("not authorized");
    const add = lxc("a", "remote", "add", "x", `https://127.0.0.1:${port}`, "--password", "pw-Secret1", "--accept-certificate");
    expect(add.code).toBe(0);
    const info = lxc("a", "info", "x:");
    expect(info.code).toBe(0);
    expect(info.stdout).toContain("auth: trusted");
    expect(lxc("a", "config", "show", "x:").stdout).toContain("core.trust_password: true");
    const q = lxc("a", "query", "x:/1.0/certificates");
    expect(JSON.parse(q.stdout)).toHaveLength(1);
  });

  it("trust add makes a token another client redeems with remote add", () => {
    expect(lxc("a", "remote", "switch", "x").code).toBe(0);
    const t = lxc("a", "config", "trust", "add", "--name", "viatoken");
    expect(t.code).toBe(0);
    const token = t.stdout.trim().split("\n").pop()!;
    expect(lxc("a", "config", "trust", "list-tokens").stdout).toContain("viatoken");
    expect(lxc("b", "remote", "add", "y", token).code).toBe(0);
    expect(lxc("b", "info", "y:").stdout).toContain("auth: trusted");
    expect(lxc("a", "config", "trust", "list").stdout).toContain("viatoken");
    expect(lxc("c", "remote", "add", "z", token).stderr).toContain("No matching certificate add operation found");
  });
});
