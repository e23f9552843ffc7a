// Restricted certificates and operation websockets, driven as users drive them: the stock `lxc`
// with a certificate added by `lxc config trust add --restricted --projects p1` and a remote
// added with it, raw HTTPS and websocket clients with real certificates, real containers in
// projects p1 and p2.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectResponse, type Res } from "../helpers/daemon.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
let tmp: string;
let port: number;
const tag = `az${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;
const c1 = `${tag}-c1`;
const c2 = `${tag}-c2`;
interface Client {
  crt: string;
  key: string;
  cert: string;
  keyPem: string;
  fingerprint: string;
}
const certs = {} as Record<"restricted" | "admin" | "untrusted" | "rdefault" | "rrename", Client>;

function makeCert(name: string): Client {
  const crt = join(tmp, `${name}.crt`);
  const key = join(tmp, `${name}.key`);
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj", `/CN=${name}`], {
    stdio: "ignore",
  });
  const der = execFileSync("openssl", ["x509", "-in", crt, "-outform", "der"]);
  return { crt, key, cert: readFileSync(crt, "utf8"), keyPem: readFileSync(key, "utf8"), fingerprint: execFileSync("sha256sum", { input: der }).toString().slice(0, 64) };
}

/** The stock client as the holder of the restricted certificate. */
function rlxc(...args: string[]) {
  const r = spawnSync("lxc", args, { env: { ...process.env, LXD_CONF: join(tmp, "conf-restricted") }, encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

function tls(who: keyof typeof certs, method: string, path: string, body?: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    const c = certs[who];
    const req = request({ host: "127.0.0.1", port, method, path, cert: c.cert, key: c.keyPem, rejectUnauthorized: false, agent: false }, (res) =>
      collectResponse(res).then(resolve, reject),
    );
    req.on("error", reject);
    if (body !== undefined) req.write(typeof body === "string" ? body : JSON.stringify(body));
    req.end();
  });
}

/** An upgrade attempt: 101, or the status and body of the refusal. */
function upgrade(who: keyof typeof certs, path: string): Promise<{ status: number; text: string; ws?: WebSocket }> {
  return new Promise((resolve) => {
    const c = certs[who];
    const ws = new WebSocket(`wss://127.0.0.1:${port}${path}`, { cert: c.cert, key: c.keyPem, rejectUnauthorized: false });
    ws.on("open", () => resolve({ status: 101, text: "", ws }));
    ws.on("unexpected-response", (_req, res) => collectResponse(res).then((r) => resolve({ status: r.status, text: r.text })));
    ws.on("error", () => {});
  });
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-authz-clients-");
  d = await startInitialisedDaemon();
  port = 20000 + Math.floor(Math.random() * 20000);
  ok(d.lxc("config", "set", "core.https_address", `127.0.0.1:${port}`), "https");
  for (const p of ["p1", "p2"]) ok(d.lxc("project", "create", p, "-c", "features.images=false", "-c", "features.profiles=false"), `project ${p}`);
  for (const n of ["restricted", "admin", "untrusted", "rdefault", "rrename"] as const) certs[n] = makeCert(n);
  ok(d.lxc("config", "trust", "add", certs.restricted.crt, "--restricted", "--projects", "p1"), "trust add restricted");
  ok(d.lxc("config", "trust", "add", certs.rdefault.crt, "--restricted", "--projects", "default"), "trust add rdefault");
  ok(d.lxc("config", "trust", "add", certs.admin.crt), "trust add admin");
  const conf = join(tmp, "conf-restricted");
  mkdirSync(conf);
  copyFileSync(certs.restricted.crt, join(conf, "client.crt"));
  copyFileSync(certs.restricted.key, join(conf, "client.key"));
  ok(rlxc("remote", "add", "r", `127.0.0.1:${port}`, "--accept-certificate"), "remote add");
  ok(d.lxc("launch", "busybox", c2, "--project", "p2", "-q"), "launch c2");
});

afterAll(async () => {
  for (const [n, p] of [
    [c1, "p1"],
    [c2, "p2"],
  ]) {
    if (d?.lxc("delete", "-f", n, "--project", p).code !== 0) spawnSync("lxc-stop", ["-k", "-n", `${p}_${n}`, "-P", join(d.dir, "containers")]);
  }
  await d?.teardown();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("a restricted certificate with the stock lxc", () => {
  it("is refused outside its project with LXD's messages", () => {
    const list = rlxc("list", "r:", "--project", "p2");
    expect(list.code).not.toBe(0);
    expect(list.stderr.trim()).toBe("Error: not authorized");
    const exec = rlxc("exec", `r:${c2}`, "--project", "p2", "--", "true");
    expect(exec.code).not.toBe(0);
    expect(exec.stderr.trim()).toBe("Error: not authorized");
    const all = rlxc("list", "r:", "--all-projects");
    expect(all.code).not.toBe(0);
    expect(all.stderr.trim()).toBe("Error: not authorized");
  });

  it("gets 403 on server-wide writes, and changes nothing", () => {
    for (const args of [
      ["project", "create", "r:p3"],
      ["storage", "create", `r:${tag}sp`, "dir"],
      ["network", "create", `r:${tag}nb`, "--project", "p1"],
      ["query", "-X", "PATCH", "r:/1.0", "--data", JSON.stringify({ config: { "core.https_address": "127.0.0.1:1" } })],
      ["query", "-X", "PUT", "r:/1.0", "--data", JSON.stringify({ config: { "core.trust_password": "x" } })],
      ["query", "-X", "POST", "r:/internal/sql", "--data", JSON.stringify({ database: "local", query: "SELECT 1" })],
      ["warning", "list", "r:"],
    ]) {
      const r = rlxc(...args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr.trim(), args.join(" ")).toBe("Error: not authorized");
    }
    // The stock client cannot even try `lxc config set`: it gets LXD's config: null (the real LXD 5.0.2 client panics there too).
    expect(rlxc("config", "set", "r:", "core.https_address", "127.0.0.1:1").code).not.toBe(0);
    expect(d.lxc("config", "get", "core.https_address").stdout.trim()).toBe(`127.0.0.1:${port}`);
    expect(d.lxc("project", "list", "--format", "csv").stdout).not.toContain("p3");
    expect(d.lxc("storage", "list", "--format", "csv").stdout).not.toContain(`${tag}sp`);
    expect(spawnSync("ip", ["link", "show", `${tag}nb`]).status).not.toBe(0);
  });

  it("sees only its own certificate and cannot change its restrictions", async () => {
    const list = ok(rlxc("config", "trust", "list", "r:", "--format", "csv"), "trust list");
    expect(list).toContain(certs.restricted.fingerprint.slice(0, 12));
    expect(list).not.toContain(certs.admin.fingerprint.slice(0, 12));
    expect((await tls("restricted", "GET", `/1.0/certificates/${certs.admin.fingerprint}`)).status).toBe(403);
    for (const method of ["PATCH", "PUT"]) {
      const current = (await tls("restricted", "GET", `/1.0/certificates/${certs.restricted.fingerprint}`)).body.metadata;
      const body = method === "PATCH" ? { projects: ["p1", "p2"] } : { ...current, restricted: false };
      const r = await tls("restricted", method, `/1.0/certificates/${certs.restricted.fingerprint}`, body);
      expect(r.status, method).toBe(403);
      expect(r.body.error).toBe("Only the certificate can be changed");
    }
    const r = await tls("restricted", "DELETE", `/1.0/certificates/${certs.admin.fingerprint}`);
    expect(r.status).toBe(403);
    const stored = JSON.parse(ok(d.lxc("query", `/1.0/certificates/${certs.restricted.fingerprint}`), "show"));
    expect(stored.restricted).toBe(true);
    expect(stored.projects).toEqual(["p1"]);
    expect(ok(d.lxc("config", "trust", "list", "--format", "csv"), "list")).toContain(certs.admin.fingerprint.slice(0, 12));
  });

  it("works inside its project: launch, list, exec, files, stop, delete", () => {
    ok(rlxc("launch", "r:busybox", `r:${c1}`, "--project", "p1", "-q"), "launch in p1");
    expect(ok(rlxc("list", "r:", "--project", "p1", "--format", "csv", "-c", "ns"), "list")).toContain(`${c1},RUNNING`);
    expect(ok(rlxc("exec", `r:${c1}`, "--project", "p1", "--", "echo", "inside"), "exec").trim()).toBe("inside");
    expect(ok(rlxc("file", "pull", `r:${c1}/etc/hostname`, "-", "--project", "p1"), "pull").trim()).toBe(c1);
    expect(ok(rlxc("project", "list", "r:", "--format", "csv"), "projects").trim().split("\n").map((l) => l.split(",")[0])).toEqual(["p1 (current)"]);
    ok(rlxc("stop", "-f", `r:${c1}`, "--project", "p1"), "stop");
    ok(rlxc("delete", `r:${c1}`, "--project", "p1"), "delete");
  });
});

describe("server-wide objects as a restricted client sees them", () => {
  it("storage pools without config, used_by narrowed to its projects (LXD's FilterUsedBy)", async () => {
    const admin = (await tls("admin", "GET", "/1.0/storage-pools/default")).body.metadata;
    expect(admin.config).not.toBeNull();
    expect(admin.used_by).toContain(`/1.0/instances/${c2}?project=p2`);
    for (const path of ["/1.0/storage-pools/default", "/1.0/storage-pools?recursion=1"]) {
      const r = await tls("restricted", "GET", path);
      expect(r.status).toBe(200);
      const pool = Array.isArray(r.body.metadata) ? r.body.metadata[0] : r.body.metadata;
      expect(pool.config).toBeNull();
      expect(pool.used_by.filter((u: string) => !u.includes("project=p1"))).toEqual([]);
    }
  });
});

describe("events and operations of other projects", () => {
  it("events: another project is refused, all-projects carries only the certificate's projects", async () => {
    const refused = await upgrade("restricted", "/1.0/events?project=p2");
    expect(refused.status).toBe(403);
    const sub = await upgrade("restricted", "/1.0/events?all-projects=true&type=lifecycle");
    expect(sub.status).toBe(101);
    const seen: { project?: string; metadata: { source: string } }[] = [];
    sub.ws!.on("message", (m) => seen.push(JSON.parse(m.toString())));
    ok(d.lxc("config", "set", c2, "user.authz=p2", "--project", "p2"), "p2 event");
    ok(d.lxc("init", "busybox", c1, "--project", "p1", "-q"), "p1 event");
    const deadline = Date.now() + 10_000;
    while (!seen.some((e) => e.project === "p1") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    sub.ws!.close();
    expect(seen.some((e) => e.project === "p1" && e.metadata.source.includes(c1))).toBe(true);
    expect(seen.filter((e) => e.project !== "p1")).toEqual([]);
    ok(d.lxc("delete", c1, "--project", "p1"), "cleanup c1");
    const logging = await upgrade("restricted", "/1.0/events?project=p1&type=logging");
    expect([logging.status, JSON.parse(logging.text).error]).toEqual([500, "Forbidden"]);
  });

  it("operations of another project are hidden, with their websocket secrets", async () => {
    const exec = JSON.parse(ok(d.lxc("query", "-X", "POST", `/1.0/instances/${c2}/exec?project=p2`, "--data", JSON.stringify({ command: ["sleep", "3"], "wait-for-websocket": true })), "exec"));
    const id: string = exec.id;
    expect(Object.keys(exec.metadata.fds)).toContain("0");
    const listed = (await tls("restricted", "GET", "/1.0/operations?all-projects=true&recursion=1")).body.metadata;
    expect(JSON.stringify(listed)).not.toContain(id);
    expect((await tls("restricted", "GET", `/1.0/operations/${id}`)).status).toBe(403);
    expect((await tls("restricted", "GET", `/1.0/operations/${id}/wait?timeout=0`)).status).toBe(403);
    expect((await tls("restricted", "DELETE", `/1.0/operations/${id}`)).status).toBe(403);
    expect((await tls("restricted", "GET", "/1.0/operations?project=p2")).status).toBe(403);
    expect((await tls("admin", "GET", `/1.0/operations/${id}`)).body.metadata.metadata.fds["0"]).toBe(exec.metadata.fds["0"]);
    expect((await tls("untrusted", "GET", `/1.0/operations/${id}`)).status).toBe(403);
  });

  it("certificate add tokens are shown to unrestricted clients only", async () => {
    const token = JSON.parse(ok(d.lxc("query", "-X", "POST", "/1.0/certificates", "--data", JSON.stringify({ name: "tok", type: "client", token: true })), "token"));
    const listed = await tls("rdefault", "GET", "/1.0/operations?recursion=1");
    expect(listed.status).toBe(200);
    expect(JSON.stringify(listed.body.metadata)).not.toContain(token.id);
    expect((await tls("rdefault", "GET", `/1.0/operations/${token.id}`)).status).toBe(403);
    expect((await tls("admin", "GET", `/1.0/operations/${token.id}`)).body.metadata.metadata.secret).toBe(token.metadata.secret);
    ok(d.lxc("query", "-X", "DELETE", `/1.0/operations/${token.id}`), "revoke");
  });
});

describe("operation websockets", () => {
  it("refuse wrong, reused and stale secrets with 403 before upgrading; each fd's secret works once", async () => {
    const exec = JSON.parse(ok(d.lxc("query", "-X", "POST", `/1.0/instances/${c2}/exec?project=p2`, "--data", JSON.stringify({ command: ["true"], "wait-for-websocket": true })), "exec"));
    const fds = exec.metadata.fds as Record<string, string>;
    const url = (secret: string) => `/1.0/operations/${exec.id}/websocket?secret=${secret}`;
    for (const who of ["untrusted", "restricted", "admin"] as const) {
      const wrong = await upgrade(who, url("0".repeat(64)));
      expect(wrong.status, who).toBe(403);
      expect(JSON.parse(wrong.text).error_code).toBe(403);
      expect((await upgrade(who, url(""))).status).toBe(403);
      expect((await upgrade(who, url(fds["0"].slice(0, 63)))).status).toBe(403);
    }
    // The secret is the credential, as in LXD: an untrusted client holding it may connect, once.
    const first = await upgrade("untrusted", url(fds["0"]));
    expect(first.status).toBe(101);
    const again = await upgrade("untrusted", url(fds["0"]));
    expect(again.status).toBe(403);
    const sockets = [first.ws!];
    // control before the last data fd: the command starts once 0, 1 and 2 are connected.
    for (const fd of ["control", "1", "2"]) {
      const s = await upgrade("admin", url(fds[fd]));
      expect(s.status, fd).toBe(101);
      sockets.push(s.ws!);
    }
    sockets[0].send("", { binary: false });
    const done = JSON.parse(ok(d.lxc("query", `/1.0/operations/${exec.id}/wait?timeout=30`), "wait"));
    expect(done.status).toBe("Success");
    for (const s of sockets) s.close();
    // The operation has ended: its secrets are stale.
    expect((await upgrade("admin", url(fds.control))).status).toBe(403);
    expect((await upgrade("admin", `/1.0/operations/00000000-0000-0000-0000-000000000000/websocket?secret=${fds.control}`)).status).toBe(404);
  });
});

describe("GET /1.0/events without an upgrade", () => {
  it("answers as LXD 5.0.2: 400 Bad Request in plain text after the same checks", async () => {
    const plain = await tls("admin", "GET", "/1.0/events");
    expect(plain.status).toBe(400);
    expect(plain.text).toBe("Bad Request\n");
    expect(plain.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(plain.headers["sec-websocket-version"]).toBe("13");
    const bad = await tls("admin", "GET", "/1.0/events?type=foo");
    expect([bad.status, bad.body.error]).toEqual([500, '"foo" isn\'t a supported event type']);
    const both = await tls("admin", "GET", "/1.0/events?project=p1&all-projects=true");
    expect([both.status, both.body.error]).toEqual([500, "Cannot specify a project when requesting all projects"]);
    const missing = await tls("admin", "GET", "/1.0/events?project=nope");
    expect([missing.status, missing.body.error]).toEqual([500, "Project not found"]);
    expect((await tls("untrusted", "GET", "/1.0/events")).status).toBe(403);
    expect((await tls("restricted", "GET", "/1.0/events?project=p2")).status).toBe(403);
    expect((await tls("restricted", "GET", "/1.0/events?project=p1")).status).toBe(400);
  });
});

describe("a restricted certificate whose project is renamed", () => {
  it("follows the project to its new name at once, and loses the old one", async () => {
    ok(d.lxc("project", "create", `${tag}-old`), "project create");
    ok(d.lxc("config", "trust", "add", certs.rrename.crt, "--restricted", "--projects", `${tag}-old`), "trust add rrename");
    expect((await tls("rrename", "GET", `/1.0/instances?project=${tag}-old`)).status).toBe(200);
    ok(d.lxc("project", "rename", `${tag}-old`, `${tag}-new`), "project rename");
    try {
      expect((await tls("rrename", "GET", `/1.0/instances?project=${tag}-new`)).status).toBe(200);
      expect((await tls("rrename", "GET", `/1.0/instances?project=${tag}-old`)).status).toBe(403);
      const cert = JSON.parse(ok(d.lxc("query", `/1.0/certificates/${certs.rrename.fingerprint}`), "show cert"));
      expect(cert.projects).toEqual([`${tag}-new`]);
    } finally {
      d.lxc("config", "trust", "remove", certs.rrename.fingerprint);
      d.lxc("project", "delete", `${tag}-new`);
    }
  });
});
