// The authorization point, walked over the WHOLE route table as the daemon serves it: every
// path and method, as four kinds of client — the unix socket, a trusted certificate, a
// restricted certificate (project p1) and a certificate not in the trust store — over the real
// unix socket and the real HTTPS listener with real client certificates. Each answer is checked
// against LXD 5.0.2's rules (test/helpers/lxd-access.ts), and the route table's declarations
// against the same rules, so a route added without the right declaration fails here.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Daemon } from "../../src/daemon/daemon.js";
import { type Route } from "../../src/api/route.js";
import { METHODS, type Method } from "../../src/api/access.js";
import { collectResponse, rawRequest, unmountUnder, type Res } from "../helpers/daemon.js";
import { LXD_ACCESS, PROJECT_SCOPED, SHARED_FEATURE, normalise, type LxdAccess } from "../helpers/lxd-access.js";

type Kind = "unix" | "admin" | "restricted" | "untrusted";
interface Client {
  cert: string;
  key: string;
  fingerprint: string;
}

let dir: string;
let daemon: Daemon;
let port: number;
const clients = {} as Record<"admin" | "restricted" | "untrusted", Client>;
const agents = {} as Record<string, Agent>;

function makeCert(name: string): Client {
  const crt = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj", `/CN=${name}`], {
    stdio: "ignore",
  });
  const der = execFileSync("openssl", ["x509", "-in", crt, "-outform", "der"]);
  return { cert: readFileSync(crt, "utf8"), key: readFileSync(key, "utf8"), fingerprint: execFileSync("sha256sum", { input: der }).toString().slice(0, 64) };
}

const unix = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => rawRequest(join(dir, "unix.socket"), method, path, body, headers);

function tls(kind: "admin" | "restricted" | "untrusted", method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const c = clients[kind];
    agents[kind] ??= new Agent({ keepAlive: true, maxSockets: 4, cert: c.cert, key: c.key, rejectUnauthorized: false });
    const req = request({ host: "127.0.0.1", port, method, path, agent: agents[kind], headers }, (res) => collectResponse(res).then(resolve, reject));
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function send(kind: Kind, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Res> {
  return kind === "unix" ? unix(method, path, body, headers) : tls(kind, method, path, body, headers);
}

beforeAll(async () => {
  dir = mkdtempSync("/tmp/nodelxd-test-authz-");
  daemon = new Daemon({ lxdDir: dir, logfile: join(dir, "daemon.log") });
  await daemon.start();
  port = 20000 + Math.floor(Math.random() * 20000);
  expect((await unix("PATCH", "/1.0", { config: { "core.https_address": `127.0.0.1:${port}` } })).status).toBe(200);
  const features = { "features.images": "true", "features.profiles": "true", "features.storage.volumes": "true", "features.networks": "false" };
  for (const p of ["p1", "p2"]) expect((await unix("POST", "/1.0/projects", { name: p, config: features })).status).toBe(201);
  clients.admin = makeCert("admin");
  clients.restricted = makeCert("restricted");
  clients.untrusted = makeCert("untrusted");
  expect((await unix("POST", "/1.0/certificates", { type: "client", name: "admin", certificate: Buffer.from(clients.admin.cert.replace(/-----[^-]+-----|\s/g, ""), "base64").toString("base64") })).status).toBe(201);
  const restrictedDer = Buffer.from(clients.restricted.cert.replace(/-----[^-]+-----|\s/g, ""), "base64").toString("base64");
  expect((await unix("POST", "/1.0/certificates", { type: "client", name: "restricted", certificate: restrictedDer, restricted: true, projects: ["p1"] })).status).toBe(201);
});

afterAll(async () => {
  for (const a of Object.values(agents)) a.destroy();
  await daemon?.stop({ stopInstances: false });
  if (dir) {
    unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  }
});

/** LXD's rule for one path and method (methods LXD does not declare: a trusted client gets 501). */
const lxdRule = (path: string, method: Method): LxdAccess | undefined => LXD_ACCESS[normalise(path)]?.[method];

const methodsOf = (r: Route): Method[] => [...METHODS, ...(r.handlers.HEAD ? (["HEAD"] as Method[]) : [])];

describe("the route table's declarations", () => {
  it("covers every route, and every declared method's access is LXD 5.0.2's", () => {
    expect(daemon.routes.length).toBeGreaterThan(50);
    const mismatches: string[] = [];
    for (const r of daemon.routes) {
      if (!LXD_ACCESS[normalise(r.path)]) {
        mismatches.push(`${r.path}: not in LXD's table`);
        continue;
      }
      for (const m of methodsOf(r)) {
        if (!r.handlers[m]) continue;
        const want = lxdRule(r.path, m);
        if (want !== r.access[m]) mismatches.push(`${m} ${r.path}: declared ${r.access[m]}, LXD ${want ?? "(no such method)"}`);
      }
    }
    expect(mismatches).toEqual([]);
  });
});

type Outcome = "allow" | "deny" | "501";

/** What LXD 5.0.2 (with nodelxd's documented narrowing for restricted clients) answers. */
function expected(kind: Kind, path: string, method: Method, implemented: boolean, project: string): Outcome {
  const rule = lxdRule(path, method) ?? "admin";
  const norm = normalise(path);
  if (rule === "open") return "allow";
  if (rule === "local") return kind !== "unix" ? "deny" : implemented ? "allow" : "501";
  if (kind === "untrusted") {
    if (!((rule === "untrusted" || rule === "public") && (method === "GET" || method === "POST"))) return "deny";
    // Handlers that refuse untrusted callers themselves, as LXD's: no image secret, no operation secret.
    if (method === "POST" && norm === "/1.0/images") return "deny";
    if (norm === "/1.0/operations/{}/wait") return "deny";
    // allowMetrics: without core.metrics_authentication=false, only metrics certificates.
    if (norm === "/1.0/metrics") return "deny";
    return implemented ? "allow" : "deny";
  }
  if (!implemented) return "501";
  if (kind !== "restricted") return "allow";
  // allowMetrics → allowProjectPermission("containers", "view"): the restricted client's own projects only.
  if (norm === "/1.0/metrics") return project === "p1" ? "allow" : "deny";
  switch (rule) {
    case "untrusted":
      return "allow";
    case "public":
      // Outside its projects a restricted client is served as an untrusted one: no image upload.
      return project !== "p1" && method === "POST" && norm === "/1.0/images" ? "deny" : "allow";
    case "authenticated":
      return PROJECT_SCOPED.has(norm) && project !== "p1" ? "deny" : "allow";
    case "admin":
      return "deny";
    case "project": {
      if (project !== "p1") return "deny";
      const shared = SHARED_FEATURE.find(([re]) => re.test(norm))?.[1];
      // p1 keeps its own images, profiles and volumes, but its networks are the default project's.
      if (shared === "networks" && method !== "GET" && method !== "HEAD") return "deny";
      return "allow";
    }
  }
}

function concretePath(r: Route, method: Method): string {
  return r.path.replace(/:([^/]+)/g, (_m, name: string) => (r.path.startsWith("/1.0/projects/") && method === "GET" ? "p1" : "authz-none"));
}

describe("walking every path and method as each kind of client", () => {
  it("answers as LXD's rules say, before any handler runs", async () => {
    const problems: string[] = [];
    let checked = 0;
    for (const r of daemon.routes) {
      for (const method of methodsOf(r)) {
        for (const kind of ["unix", "admin", "restricted", "untrusted"] as Kind[]) {
          // It would stop the daemon under test; its refusal to TLS clients is walked below.
          if (kind === "unix" && r.path === "/internal/shutdown") continue;
          const projects = kind === "restricted" ? ["p1", "p2"] : ["p2"];
          for (const project of projects) {
            const path = `${concretePath(r, method)}?project=${project}`;
            const withBody = method !== "GET" && method !== "HEAD" && method !== "DELETE";
            // Bodies that no handler accepts: an allowed call changes nothing.
            const res = await send(kind, method, path, withBody ? "{" : undefined, withBody ? { "content-type": "application/json" } : {});
            const want = expected(kind, r.path, method, !!r.handlers[method], project);
            const refused = res.status === 403 && (method === "HEAD" || res.body?.error === "not authorized");
            const ok = want === "deny" ? refused : want === "501" ? res.status === 501 : !refused && res.status !== 501;
            checked++;
            if (!ok) problems.push(`${kind} ${method} ${path}: want ${want}, got ${res.status} ${res.text.slice(0, 120)}`);
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(1000);
    expect(problems).toEqual([]);
  });

  it("refuses /internal to every TLS client, trusted or not, and X-LXD-authenticated from untrusted ones", async () => {
    for (const kind of ["admin", "restricted", "untrusted"] as const) {
      for (const [method, path] of [
        ["PUT", "/internal/shutdown"],
        ["GET", "/internal/sql"],
        ["POST", "/internal/sql"],
        ["GET", "/internal/ready"],
      ]) {
        const res = await tls(kind, method, path, method === "GET" ? undefined : "{}");
        expect(res.status, `${kind} ${method} ${path}`).toBe(403);
        expect(res.body.error).toBe("not authorized");
      }
    }
    // The daemon is still up: nothing above reached the shutdown handler.
    expect((await unix("GET", "/internal/ready")).status).toBe(200);
    expect((await tls("untrusted", "GET", "/1.0")).body.metadata.auth).toBe("untrusted");
    expect((await tls("untrusted", "GET", "/1.0", undefined, { "X-LXD-authenticated": "true" })).status).toBe(403);
    expect((await tls("admin", "GET", "/1.0", undefined, { "X-LXD-authenticated": "true" })).body.metadata.auth).toBe("trusted");
  });

  it("shows a restricted client /1.0 without the server config, as LXD's config: null", async () => {
    const res = await tls("restricted", "GET", "/1.0");
    expect(res.status).toBe(200);
    expect(res.body.metadata.auth).toBe("trusted");
    expect(res.body.metadata.config).toBeNull();
    expect(res.headers.etag).toBe('"38e0b9de817f645c4bec37c0d4a3e58baecccb040f5718dc069a72c7385a0bed"'); // sha256("null\n")
    expect((await tls("admin", "GET", "/1.0")).body.metadata.config["core.https_address"]).toBe(`127.0.0.1:${port}`);
  });
});
