// The guest API (/dev/lxd/sock) seen from inside real busybox containers, through a tiny static
// HTTP-over-unix client the test builds (busybox has none): each container sees its own config,
// devices and events only; non-root callers, host processes and security.devlxd=false are refused.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../helpers/daemon.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
let tmp: string;
let client: string;
beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-devlxd-");
  client = join(tmp, "devlxd-client");
  execFileSync("gcc", ["-static", "-O2", "-o", client, join(ROOT, "test/fixtures/devlxd-client.c")]);
  d = await startInitialisedDaemon();
});
afterAll(async () => {
  await d?.teardown();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const ok = (r: { code: number; stderr: string }) => expect(r.code, r.stderr).toBe(0);

function guest(name: string, path: string, opts: string[] = []): { code: number; body: string } {
  const r = d.lxc("exec", name, ...opts, "--", "/bin/devlxd-client", path);
  expect(r.code, r.stderr).toBe(0);
  const nl = r.stdout.indexOf("\n");
  return { code: Number(r.stdout.slice(0, nl)), body: r.stdout.slice(nl + 1) };
}

function launchWithClient(what: string, config: Record<string, string> = {}): string {
  const n = d.launch(what, { config });
  ok(d.lxc("file", "push", client, `${n}/bin/devlxd-client`, "--mode", "0755"));
  return n;
}

describe("/dev/lxd/sock", () => {
  it("answers each container about itself only", () => {
    const a = launchWithClient("a", { "user.foo": "from-a", "user.meta-data": "extra: 1", "cloud-init.user-data": "#cloud-config" });
    const b = launchWithClient("b", { "user.foo": "from-b" });
    expect(guest(a, "/")).toEqual({ code: 200, body: '["/1.0"]\n' });
    expect(JSON.parse(guest(a, "/1.0").body)).toEqual({ state: "Started", api_version: "1.0", instance_type: "container", location: "none" });
    expect(guest(a, "/1.0/config/user.foo")).toEqual({ code: 200, body: "from-a" });
    expect(guest(b, "/1.0/config/user.foo")).toEqual({ code: 200, body: "from-b" });
    expect(JSON.parse(guest(a, "/1.0/config").body).sort()).toEqual(["/1.0/config/cloud-init.user-data", "/1.0/config/user.foo", "/1.0/config/user.meta-data"]);
    expect(JSON.parse(guest(b, "/1.0/config").body)).toEqual(["/1.0/config/user.foo"]);
    // only user.* and cloud-init.* keys
    expect(guest(a, "/1.0/config/volatile.idmap.current")).toEqual({ code: 403, body: "not authorized\n" });
    expect(guest(a, "/1.0/config/security.devlxd")).toEqual({ code: 403, body: "not authorized\n" });
    expect(guest(a, "/1.0/config/user.missing")).toEqual({ code: 404, body: "not found\n" });
    const meta = guest(a, "/1.0/meta-data").body;
    expect(meta).toMatch(new RegExp(`^#cloud-config\ninstance-id: [0-9a-f-]{36}\nlocal-hostname: ${a}\nextra: 1$`));
    const devices = JSON.parse(guest(a, "/1.0/devices").body);
    expect(devices.root).toMatchObject({ type: "disk", path: "/", pool: "default" });
    // the caller's credentials decide: another user in the container is refused
    expect(guest(a, "/1.0/config/user.foo", ["--user", "1000"])).toEqual({ code: 401, body: "Access denied for non-root user\n" });
  });

  it("sends config and device events to the container they concern", async () => {
    const a = launchWithClient("ev");
    const b = launchWithClient("other");
    ok(d.lxc("exec", a, "--", "sh", "-c", "/bin/devlxd-client /1.0/events 20 > /tmp/events 2>&1 &"));
    ok(d.lxc("exec", b, "--", "sh", "-c", "/bin/devlxd-client /1.0/events 20 > /tmp/events 2>&1 &"));
    await new Promise((r) => setTimeout(r, 500));
    ok(d.lxc("config", "set", a, "user.colour", "blue"));
    ok(d.lxc("config", "device", "add", a, "extra", "none"));
    let text = "";
    for (let i = 0; i < 40 && !text.includes('"device"'); i++) {
      await new Promise((r) => setTimeout(r, 250));
      text = d.lxc("exec", a, "--", "cat", "/tmp/events").stdout;
    }
    const events = text.split("\n").slice(1).filter(Boolean).map((l) => JSON.parse(l));
    expect(events.map((e) => [e.type, e.metadata])).toEqual([
      ["config", { key: "user.colour", old_value: "", value: "blue" }],
      ["device", { action: "added", name: "extra", config: { type: "none" } }],
    ]);
    expect(d.lxc("exec", b, "--", "cat", "/tmp/events").stdout.trim()).toBe("200");
  });

  it("is absent with security.devlxd=false and refuses callers outside containers", async () => {
    const c = d.launch("nodevlxd", { config: { "security.devlxd": "false" } });
    expect(d.lxc("exec", c, "--", "test", "-e", "/dev/lxd/sock").code).toBe(1);
    const sock = join(d.dir, "devlxd", "sock");
    expect(existsSync(sock)).toBe(true);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ socketPath: sock, path: "/1.0" }, (r) => {
        let body = "";
        r.on("data", (c) => (body += c));
        r.on("end", () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end();
    });
    expect(res).toEqual({ status: 500, body: "pid not in container?\n" });
    expect(spawnSync("stat", ["-c", "%a", sock], { encoding: "utf8" }).stdout.trim()).toBe("666");
  });

  it("exports public and cached images with security.devlxd.images=true (devlxd_images), nothing else", async () => {
    const fp = JSON.parse(d.lxc("query", "/1.0/images/aliases/busybox").stdout).target as string;
    const off = launchWithClient("noimages");
    expect(guest(off, `/1.0/images/${fp}/export`)).toEqual({ code: 403, body: "not authorized\n" });
    const c = launchWithClient("images", { "security.devlxd.images": "true" });
    // A private image that is not a cached copy: LXD's 404 envelope.
    const hidden = guest(c, `/1.0/images/${fp}/export`);
    expect(hidden.code).toBe(404);
    expect(JSON.parse(hidden.body)).toEqual({ type: "error", status: "", status_code: 0, operation: "", error_code: 404, error: `Image "${fp}" not found`, metadata: null });
    expect(guest(c, `/1.0/images/${"0".repeat(64)}/export`).code).toBe(404);
    ok(d.lxc("query", "-X", "PATCH", "/1.0/images/" + fp, "-d", JSON.stringify({ public: true })));
    try {
      // The whole unified tarball, byte for byte: its sha256 is the fingerprint (by a 12-digit prefix too).
      const sum = d.lxc("exec", c, "--", "sh", "-c", `/bin/devlxd-client /1.0/images/${fp.slice(0, 12)}/export | tail -c +5 | sha256sum`);
      expect(sum.code, sum.stderr).toBe(0);
      expect(sum.stdout.split(" ")[0]).toBe(fp);
      // Another project's view: the default project unless ?project= names one.
      expect(guest(c, `/1.0/images/${fp}/export?project=nope`).code).toBe(404);
    } finally {
      ok(d.lxc("query", "-X", "PATCH", "/1.0/images/" + fp, "-d", JSON.stringify({ public: false })));
    }
  });
});
