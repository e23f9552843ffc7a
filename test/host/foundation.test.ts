// The daemon foundation driven as users drive it: raw HTTP over the unix socket,
// the stock `lxc` client, and the daemon's own CLI.
import { spawn } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";

let d: TestDaemon;
beforeAll(async () => {
  d = await startDaemon();
});
afterAll(async () => {
  await d?.stop();
});

const ENVELOPE_KEYS = ["type", "status", "status_code", "operation", "error_code", "error", "metadata"].sort();

describe("response contract", () => {
  it("GET / lists the API versions", async () => {
    const r = await d.api("GET", "/");
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ type: "sync", status: "Success", status_code: 200, operation: "", error_code: 0, error: "", metadata: ["/1.0"] });
    expect(r.headers["content-type"]).toBe("application/json");
    expect(r.text.endsWith("}\n")).toBe(true);
  });

  it("GET /1.0 describes the server", async () => {
    const r = await d.api("GET", "/1.0");
    expect(Object.keys(r.body).sort()).toEqual(ENVELOPE_KEYS);
    const m = r.body.metadata;
    expect(m.api_version).toBe("1.0");
    expect(m.auth).toBe("trusted");
    expect(m.environment.server).toBe("lxd");
    expect(m.environment.server_version).toBe("5.0.2");
    expect(m.environment.server_pid).toBe(d.proc.pid);
    expect(m.environment.kernel).toBe("Linux");
    expect(m.environment.certificate).toContain("BEGIN CERTIFICATE");
    expect(m.environment.certificate_fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(r.headers.etag).toMatch(/^"[0-9a-f]{64}"$/);
  });

  it("unknown paths are 404 not found, unimplemented methods 501", async () => {
    for (const path of ["/1.0/no-such-endpoint", "/2.0"]) {
      const r = await d.api("GET", path);
      expect(r.status).toBe(404);
      expect(r.body).toEqual({ type: "error", status: "", status_code: 0, operation: "", error_code: 404, error: "not found", metadata: null });
    }
    const r = await d.api("DELETE", "/1.0");
    expect(r.status).toBe(501);
    expect(r.body.error).toBe("not implemented");
  });

  it("bad JSON is 400 with Go's message", async () => {
    const r = await d.api("PUT", "/1.0", "{bad", { "content-type": "application/json" });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe("invalid character 'b' looking for beginning of object key string");
  });

  it("refuses an oversized body without reading it", async () => {
    const r = await d.api("PUT", "/1.0", undefined, { "content-type": "application/json", "content-length": String(1024 ** 3) });
    expect(r.status).toBe(413);
    expect(r.body.type).toBe("error");
  });

  it("If-Match with a stale ETag is 412 and changes nothing", async () => {
    const r = await d.api("PATCH", "/1.0", { config: { "core.proxy_http": "http://127.0.0.1:9" } }, { "if-match": '"abc"' });
    expect(r.status).toBe(412);
    expect(r.body.error).toMatch(/^ETag doesn't match: [0-9a-f]{64} vs abc$/);
    expect((await d.api("GET", "/1.0")).body.metadata.config).toEqual({});
  });

  it("a matching ETag lets the change through", async () => {
    const etag = (await d.api("GET", "/1.0")).headers.etag as string;
    const r = await d.api("PATCH", "/1.0", { config: { "core.proxy_http": "http://127.0.0.1:9" } }, { "if-match": etag });
    expect(r.status).toBe(200);
    expect((await d.api("GET", "/1.0")).body.metadata.config).toEqual({ "core.proxy_http": "http://127.0.0.1:9" });
    expect((await d.api("PUT", "/1.0", { config: {} })).status).toBe(200);
    expect((await d.api("GET", "/1.0")).body.metadata.config).toEqual({});
  });

  it("invalid server config is rejected with LXD's message and changes nothing", async () => {
    const r = await d.api("PATCH", "/1.0", { config: { foo: "bar" } });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe("cannot set 'foo' to 'bar': unknown key");
    const r2 = await d.api("PATCH", "/1.0", { config: { "core.https_address": "nope" } });
    expect(r2.status).toBe(400);
    expect((await d.api("GET", "/1.0")).body.metadata.config).toEqual({});
  });

  it("hides core.trust_password", async () => {
    await d.api("PATCH", "/1.0", { config: { "core.trust_password": "sekrit" } });
    expect((await d.api("GET", "/1.0")).body.metadata.config).toEqual({ "core.trust_password": true });
    await d.api("PATCH", "/1.0", { config: { "core.trust_password": "" } });
    expect((await d.api("GET", "/1.0")).body.metadata.config).toEqual({});
  });
});

describe("operations and warnings", () => {
  it("lists operations and 404s unknown ones", async () => {
    const list = await d.api("GET", "/1.0/operations");
    expect(list.status).toBe(200);
    expect(typeof list.body.metadata).toBe("object");
    const missing = await d.api("GET", "/1.0/operations/6b0f2a8e-0000-4000-8000-000000000000");
    expect(missing.status).toBe(404);
    expect(missing.body.error).toBe("Operation not found");
    expect((await d.api("GET", "/1.0/operations/6b0f2a8e-0000-4000-8000-000000000000/wait?timeout=1")).status).toBe(404);
  });

  it("lists warnings", async () => {
    const r = await d.api("GET", "/1.0/warnings?recursion=1");
    expect(r.status).toBe(200);
    expect(Array.isArray(r.body.metadata)).toBe(true);
  });
});

describe("events", () => {
  it("streams lifecycle events to a websocket client", async () => {
    const ws = new WebSocket("ws+unix://" + d.socket + ":/1.0/events?type=lifecycle");
    const got = new Promise<any>((resolve, reject) => {
      ws.on("message", (m) => resolve(JSON.parse(String(m))));
      ws.on("error", reject);
    });
    await new Promise((r) => ws.on("open", r));
    await d.api("PATCH", "/1.0", { config: { "core.proxy_https": "http://127.0.0.1:9" } });
    const event = await got;
    ws.close();
    expect(event.type).toBe("lifecycle");
    expect(event.metadata.action).toBe("config-updated");
    expect(event.metadata.source).toBe("/1.0");
    expect(event.metadata.requestor).toEqual({ username: "root", protocol: "unix", address: "@" });
    expect(event.metadata).not.toHaveProperty("context");
    expect(event.timestamp).toMatch(/^\d{4}-\d\d-\d\dT/);
    await d.api("PUT", "/1.0", { config: {} });
  });

  it("rejects unknown event types (with LXD 5.0.2's 500: its check surfaces from the response's Render)", async () => {
    const ws = new WebSocket("ws+unix://" + d.socket + ":/1.0/events?type=bogus");
    const status = await new Promise<number>((resolve) => ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(500);
  });

  it("lxc monitor stays connected and prints events", async () => {
    const mon = spawn("lxc", ["monitor", "--type=lifecycle", "--format=json"], { env: { ...process.env, LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf" } });
    let out = "";
    mon.stdout.on("data", (c) => (out += c));
    try {
      for (let i = 0; i < 40 && !out.includes("config-updated"); i++) {
        await d.api("PATCH", "/1.0", { config: { "core.proxy_ignore_hosts": `h${i}` } });
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(out).toMatch(/"action": ?"config-updated"/);
      expect(mon.exitCode).toBeNull();
    } finally {
      mon.kill();
      await d.api("PUT", "/1.0", { config: {} });
    }
  });
});

describe("stock lxc client", () => {
  it("lxc info and lxc version", () => {
    const info = d.lxc("info");
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toContain('api_version: "1.0"');
    expect(info.stdout).toContain("auth: trusted");
    expect(info.stdout).toContain("server_version: 5.0.2");
    const v = d.lxc("version");
    expect(v.stdout).toContain("Server version: 5.0.2");
  });

  it("lxc config set/show/unset core.https_address binds and releases a TLS listener", async () => {
    // An address of this test's own (a random port on 127.0.0.1 could be another connection's
    // ephemeral port).
    const host = "127.0.91.1";
    const port = 8443;
    const set = d.lxc("config", "set", "core.https_address", `${host}:${port}`);
    expect(set.code, set.stderr).toBe(0);
    expect(d.lxc("config", "show").stdout).toContain(`core.https_address: ${host}:${port}`);
    const { connect } = await import("node:tls");
    const peer = await new Promise<string>((resolve, reject) => {
      const s = connect({ host, port, rejectUnauthorized: false }, () => {
        resolve(s.getPeerCertificate().subject.O as string);
        s.end();
      });
      s.on("error", reject);
    });
    expect(peer).toBe("linuxcontainers.org");
    expect(d.lxc("config", "unset", "core.https_address").code).toBe(0);
    expect(d.lxc("config", "show").stdout).not.toContain("core.https_address");
  });

  it("lxc operation list, lxc query, lxc warning list", () => {
    expect(d.lxc("operation", "list").code).toBe(0);
    const q = d.lxc("query", "/1.0");
    expect(JSON.parse(q.stdout).api_version).toBe("1.0");
    const del = d.lxc("query", "-X", "DELETE", "/1.0");
    expect(del.code).not.toBe(0);
    expect(del.stderr).toContain("Error: not implemented");
    const nf = d.lxc("query", "/1.0/no-such-thing");
    expect(nf.stderr.trim()).toBe("Error: not found");
    const w = d.lxc("warning", "list", "-f", "json");
    expect(w.code, w.stderr).toBe(0);
    expect(Array.isArray(JSON.parse(w.stdout))).toBe(true);
  });
});

describe("state directory and daemon CLI", () => {
  it("uses upstream's layout and permissions", () => {
    const mode = (p: string) => statSync(join(d.dir, p)).mode & 0o777;
    expect(mode(".")).toBe(0o711);
    expect(mode("database")).toBe(0o700);
    expect(mode("server.key")).toBe(0o600);
    expect(mode("unix.socket")).toBe(0o660);
  });

  it("nodelxd version and waitready", () => {
    expect(d.cli("version").stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(d.cli("waitready", "--timeout", "5").code).toBe(0);
  });

  it("survives kill -9 and comes back with a clean database", async () => {
    await d.api("PATCH", "/1.0", { config: { "user.x": "1" } }).catch(() => {});
    await d.api("PATCH", "/1.0", { config: { "core.proxy_http": "http://127.0.0.1:9" } });
    await d.kill9();
    await d.restart();
    expect((await d.api("GET", "/1.0")).body.metadata.config).toEqual({ "core.proxy_http": "http://127.0.0.1:9" });
    const ops = (await d.api("GET", "/1.0/operations?recursion=1")).body.metadata;
    expect(ops.running ?? []).toEqual([]);
    await d.api("PUT", "/1.0", { config: {} });
  });

  it("nodelxd shutdown stops the daemon", async () => {
    const r = d.cli("shutdown", "--timeout", "30");
    expect(r.code, r.stderr).toBe(0);
    await new Promise((res) => (d.proc.exitCode !== null ? res(null) : d.proc.once("exit", res)));
    expect(d.proc.exitCode).toBe(0);
    await d.restart();
  });
});
