// Candid (macaroon) external authentication against a real bakery on the other side: our own
// small identity service (test/fixtures/candid-identity, Go, on Debian's macaroon-bakery v3
// library), driven with the stock `lxc remote add --auth-type candid` as LXD's external_auth.sh does.
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectResponse, ROOT, startDaemon, type Res, type TestDaemon } from "../helpers/daemon.js";

const HOST = "127.0.71.11";
const ID_HOST = "127.0.71.10";

let d: TestDaemon;
let port: number;
let tmp: string;
let identity: ChildProcess | undefined;
let identityUrl: string;
let identityKey: string;

function https(method: string, path: string, headers: Record<string, string> = {}): Promise<Res & { headers: Record<string, string | string[] | undefined>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, method, path, rejectUnauthorized: false, agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers, text } as Res & { headers: Record<string, string | string[] | undefined>; text: string });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}
void collectResponse;

/** The stock lxc with its own config dir (a client machine of its own). */
function lxc(input: string | undefined, ...args: string[]) {
  const r = spawnSync("lxc", args, { env: { ...process.env, HOME: join(tmp, "home"), LXD_CONF: join(tmp, "lxdconf") }, input, encoding: "utf8", timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/** The macaroon slice (primary + bound discharge) lxc keeps for a remote, as JSON. */
function slice(remote: string): { i?: string; s64?: string; c?: unknown[] }[] {
  const jar = JSON.parse(readFileSync(join(tmp, "lxdconf", "jars", remote), "utf8")) as { Name: string; Value: string }[];
  const cookie = (jar ?? []).find((c) => c.Name.startsWith("macaroon-"));
  if (!cookie) throw new Error(`no macaroon cookie for ${remote}`);
  return JSON.parse(Buffer.from(cookie.Value, "base64url").toString("utf8"));
}

function macaroonsHeader(ms: unknown[]): Record<string, string> {
  return { "Bakery-Protocol-Version": "3", Macaroons: Buffer.from(JSON.stringify(ms)).toString("base64") };
}

async function setConfig(config: Record<string, string>): Promise<void> {
  const r = await d.api("PATCH", "/1.0", { config });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
}

async function buildIdentityService(): Promise<string> {
  // GOPATH mode (no module downloads): the package must sit in a GOPATH tree with a go.mod for
  // Go to resolve bakery's /v3 import paths against Debian's /usr/share/gocode.
  const pkg = join(tmp, "gopath", "src", "candididentity");
  mkdirSync(pkg, { recursive: true });
  for (const f of ["main.go", "go.mod"]) copyFileSync(join(ROOT, "test/fixtures/candid-identity", f), join(pkg, f));
  const bin = join(tmp, "candid-identity");
  execFileSync("go", ["build", "-o", bin, "."], {
    cwd: pkg,
    env: { ...process.env, GO111MODULE: "off", GOPATH: `${join(tmp, "gopath")}:/usr/share/gocode`, GOCACHE: join(tmp, "gocache"), GOFLAGS: "" },
    stdio: "pipe",
    timeout: 300_000,
  });
  return bin;
}

async function startIdentityService(bin: string): Promise<string> {
  const creds = join(tmp, "creds.csv");
  writeFileSync(creds, "user1,pass1\nuser2@other,pass2\nuser3@good,pass3\n");
  const p = spawn(bin, ["-listen", `${ID_HOST}:0`, "-creds", creds], { stdio: ["ignore", "pipe", "pipe"] });
  identity = p;
  return await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`identity service did not start: ${out}`)), 20_000);
    p.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /ready (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    p.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    p.once("exit", (code) => reject(new Error(`identity service exited (${code}): ${out}`)));
  });
}

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-candid-");
  mkdirSync(join(tmp, "home"));
  identityUrl = await startIdentityService(await buildIdentityService());
  const info = (await (await fetch(`${identityUrl}/discharge/info`)).json()) as { PublicKey: string; Version: number };
  identityKey = info.PublicKey;
  d = await startDaemon();
  port = 20000 + Math.floor(Math.random() * 20000);
  await setConfig({ "core.https_address": `${HOST}:${port}` });
}, 360_000);

afterAll(async () => {
  if (identity?.pid && identity.exitCode === null) identity.kill("SIGTERM");
  await d?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("candid authentication", () => {
  it("advertises candid in auth_methods only while candid.api.url is set", async () => {
    expect((await d.api("GET", "/1.0")).body.metadata.auth_methods).toEqual(["tls"]);
    expect(((await https("GET", "/1.0")).body as { metadata: { auth_methods: string[] } }).metadata.auth_methods).toEqual(["tls"]);
    await setConfig({ "candid.api.url": identityUrl });
    expect((await d.api("GET", "/1.0")).body.metadata.auth_methods).toEqual(["tls", "candid"]);
    const untrusted = (await https("GET", "/1.0")).body as { metadata: { auth: string; auth_methods: string[] } };
    expect(untrusted.metadata).toMatchObject({ auth: "untrusted", auth_methods: ["tls", "candid"] });
    await setConfig({ "candid.api.url": "" });
    expect((await d.api("GET", "/1.0")).body.metadata.auth_methods).toEqual(["tls"]);
  });

  it("refuses a candid.api.key that is not a bakery key", async () => {
    const r = await d.api("PATCH", "/1.0", { config: { "candid.api.url": identityUrl, "candid.api.key": "not-a-key" } });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.body.error).toContain("key");
    expect((await d.api("GET", "/1.0")).body.metadata.config["candid.api.url"]).toBeUndefined();
    const both = await d.api("PATCH", "/1.0", { config: { "candid.api.url": identityUrl, "rbac.api.url": "https://rbac.invalid" } });
    expect(both.status).toBe(400);
    expect(both.body.error).toBe("RBAC and Candid are mutually exclusive");
  });

  it("answers a bakery client without macaroons with the discharge-required error", async () => {
    await setConfig({ "candid.api.url": identityUrl, "candid.api.key": identityKey });
    // Without the bakery header: LXD's plain 403.
    const plain = await https("GET", "/1.0/instances");
    expect(plain.status).toBe(403);
    expect(plain.body).toMatchObject({ type: "error", error_code: 403 });

    const r = await https("GET", "/1.0/instances", { "Bakery-Protocol-Version": "3" });
    expect(r.status).toBe(401);
    expect(r.headers["www-authenticate"]).toBe("Macaroon");
    expect(r.headers["content-type"]).toBe("application/json");
    const body = r.body as { Code: string; Message: string; Info: { Macaroon: { m: { l: string; c: { i?: string; i64?: string; l?: string }[] }; v: number; cdata: Record<string, string>; ns: string }; MacaroonPath: string; CookieNameSuffix: string } };
    expect(body).toMatchObject({ Code: "macaroon discharge required", Message: "authentication required", Info: { MacaroonPath: "../", CookieNameSuffix: "auth" } });
    expect(body.Info.Macaroon.v).toBe(3);
    expect(body.Info.Macaroon.ns).toBe("http:http std:");
    expect(body.Info.Macaroon.m.l).toBe(identityUrl);
    const third = body.Info.Macaroon.m.c.find((c) => c.l === identityUrl);
    expect(third).toBeDefined();
    expect(Object.keys(body.Info.Macaroon.cdata)).toHaveLength(1);
    expect(body.Info.Macaroon.m.c.some((c) => (c.i ?? "").startsWith("time-before "))).toBe(true);

    // The third party really can read the caveat: it asks for a login (interaction).
    const id64 = Object.keys(body.Info.Macaroon.cdata)[0];
    const form = new URLSearchParams({ id64, caveat64: body.Info.Macaroon.cdata[id64], location: identityUrl });
    const discharge = await fetch(`${identityUrl}/discharge`, { method: "POST", body: form, headers: { "Bakery-Protocol-Version": "3" } });
    expect(discharge.status).toBe(401);
    expect(((await discharge.json()) as { Code: string }).Code).toBe("interaction required");

    // GET /1.0 lets untrusted bakery clients through unless they insist on being trusted.
    expect((await https("GET", "/1.0", { "Bakery-Protocol-Version": "3" })).status).toBe(200);
    expect((await https("GET", "/1.0", { "Bakery-Protocol-Version": "3", "X-LXD-authenticated": "true" })).status).toBe(401);
    // An old bakery client (protocol 1) gets a v1 macaroon; a malformed version is the 407 of protocol 0.
    const v1 = await https("GET", "/1.0/instances", { "Bakery-Protocol-Version": "1" });
    expect(v1.status).toBe(401);
    expect((v1.body as { Info: { Macaroon: { signature?: string } } }).Info.Macaroon.signature).toMatch(/^[0-9a-f]{64}$/);
    const v0 = await https("GET", "/1.0/instances", { "Bakery-Protocol-Version": "x" });
    expect(v0.status).toBe(407);
    expect(v0.headers["www-authenticate"]).toBeUndefined();
  });

  it("adds a remote with lxc --auth-type candid only with the right credentials", async () => {
    const addr = `https://${HOST}:${port}`;
    const bad = lxc("wrong-user\nwrong-pass\n", "remote", "add", "macaroon-remote", addr, "--auth-type", "candid", "--accept-certificate");
    expect(bad.code).not.toBe(0);
    const good = lxc("user1\npass1\n", "remote", "add", "macaroon-remote", addr, "--auth-type", "candid", "--accept-certificate");
    expect(good.code, good.stderr).toBe(0);
    const show = lxc(undefined, "config", "show", "macaroon-remote:");
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain("candid.api.url");
    const server = JSON.parse(lxc(undefined, "query", "macaroon-remote:/1.0").stdout) as { auth: string; auth_methods: string[]; config: Record<string, string> };
    expect(server.auth).toBe("trusted");
    expect(server.config["candid.api.url"]).toBe(identityUrl);
    // The client certificate lxc showed was never added to the trust store: the macaroon did it.
    expect(JSON.parse(lxc(undefined, "query", "macaroon-remote:/1.0/certificates").stdout)).toEqual([]);
  });

  it("trusts a valid macaroon slice without any client certificate, and refuses forged ones", async () => {
    const ms = slice("macaroon-remote");
    expect(ms).toHaveLength(2);
    const ok = await https("GET", "/1.0/instances", macaroonsHeader(ms));
    expect(ok.status, ok.text).toBe(200);
    const asCookie = await https("GET", "/1.0", { "Bakery-Protocol-Version": "3", "X-LXD-authenticated": "true", Cookie: `macaroon-auth=${Buffer.from(JSON.stringify(ms)).toString("base64")}` });
    expect((asCookie.body as { metadata: { auth: string } }).metadata.auth).toBe("trusted");

    // Forged signature.
    const forged = structuredClone(ms);
    forged[0].s64 = Buffer.alloc(32, 7).toString("base64url");
    expect((await https("GET", "/1.0/instances", macaroonsHeader(forged))).status).toBe(401);
    // The primary without its discharge.
    expect((await https("GET", "/1.0/instances", macaroonsHeader([ms[0]]))).status).toBe(401);
    // A discharge bound to another primary (a second login of the same user).
    const second = lxc("user1\npass1\n", "remote", "add", "second", `https://${HOST}:${port}`, "--auth-type", "candid", "--accept-certificate");
    expect(second.code, second.stderr).toBe(0);
    const other = slice("second");
    expect(other[0].i).not.toBe(ms[0].i);
    expect((await https("GET", "/1.0/instances", macaroonsHeader(other))).status).toBe(200);
    expect((await https("GET", "/1.0/instances", macaroonsHeader([ms[0], other[1]]))).status).toBe(401);
    // A discharge declaring another user than it was issued for.
    const renamed = structuredClone(ms);
    (renamed[1].c as { i: string }[])[0].i = "declared username admin";
    expect((await https("GET", "/1.0/instances", macaroonsHeader(renamed))).status).toBe(401);
    // /internal stays refused to remote clients, as LXD's 403.
    expect((await https("GET", "/internal/ready", macaroonsHeader(ms))).status).toBe(403);
  });

  it("mints macaroons that expire candid.expiry seconds after minting", async () => {
    // (Refusal past the time-before is in test/unit/candid-bakery.test.ts with a clock of its own:
    // bakery clients keep macaroons expiring within a minute only in memory, out of this test's reach.)
    await setConfig({ "candid.expiry": "120" });
    try {
      const before = Date.now();
      const r = await https("GET", "/1.0/instances", { "Bakery-Protocol-Version": "3" });
      const caveats = (r.body as { Info: { Macaroon: { m: { c: { i?: string }[] } } } }).Info.Macaroon.m.c;
      const expiry = caveats.map((c) => c.i ?? "").find((i) => i.startsWith("time-before "));
      const at = Date.parse(expiry!.slice("time-before ".length));
      expect(at - before).toBeGreaterThanOrEqual(119_000);
      expect(at - before).toBeLessThanOrEqual(121_000);
    } finally {
      await setConfig({ "candid.expiry": "" });
    }
  });

  it("limits users to candid.domains", async () => {
    const addr = `https://${HOST}:${port}`;
    const user1 = slice("macaroon-remote");
    await setConfig({ "candid.domains": "good, example.com" });
    try {
    // A user without a domain, or of another domain: LXD's Authenticate error (500) on every request.
    const none = await https("GET", "/1.0/instances", macaroonsHeader(user1));
    expect(none.status).toBe(500);
    expect(none.body).toMatchObject({ type: "error", error_code: 500, error: "could not determine identity: Missing domain in candid reply" });
    const other = lxc("user2@other\npass2\n", "remote", "add", "other", addr, "--auth-type", "candid", "--accept-certificate");
    expect(other.code).not.toBe(0);
    expect(other.stderr).toContain("Untrusted candid domain");
    const good = lxc("user3@good\npass3\n", "remote", "add", "good", addr, "--auth-type", "candid", "--accept-certificate");
    expect(good.code, good.stderr).toBe(0);
    expect(lxc(undefined, "config", "show", "good:").stdout).toContain("candid.domains: good, example.com");
    } finally {
      await setConfig({ "candid.domains": "" });
    }
    expect((await https("GET", "/1.0/instances", macaroonsHeader(user1))).status).toBe(200);
  });

  it("keeps its root keys across a restart, and forgets candid when candid.api.url is unset", async () => {
    const ms = slice("macaroon-remote");
    await d.restart();
    expect((await https("GET", "/1.0/instances", macaroonsHeader(ms))).status).toBe(200);
    await setConfig({ "candid.api.url": "", "candid.api.key": "" });
    // Candid off: the bakery header means nothing any more; a client without a trusted certificate is refused.
    expect((await https("GET", "/1.0/instances", macaroonsHeader(ms))).status).toBe(403);
    expect((await d.api("GET", "/1.0")).body.metadata.auth_methods).toEqual(["tls"]);
  });
});
