// Profiles over the API and with the stock lxc client.
import { spawnSync } from "node:child_process";
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

const ok = (...args: string[]) => {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r.stdout;
};

describe("profiles API", () => {
  it("has an empty default profile from the first start", async () => {
    const r = await d.api("GET", "/1.0/profiles?recursion=1");
    expect(r.body.metadata).toEqual([{ config: {}, description: "Default LXD profile", devices: {}, name: "default", used_by: [] }]);
    expect((await d.api("GET", "/1.0/profiles")).body.metadata).toEqual(["/1.0/profiles/default"]);
    const g = await d.api("GET", "/1.0/profiles/default");
    expect(g.headers.etag).toMatch(/^"[0-9a-f]{64}"$/);
  });

  it("create, get, patch, put, rename, delete with lifecycle events", async () => {
    const ws = new WebSocket("ws+unix://" + d.socket + ":/1.0/events?type=lifecycle");
    const events: any[] = [];
    ws.on("message", (m) => events.push(JSON.parse(String(m))));
    await new Promise((r) => ws.on("open", r));
    try {
      const c = await d.api("POST", "/1.0/profiles", { name: "p1", description: "d", config: { "limits.cpu": "2" }, devices: { r: { type: "disk", path: "/x", source: "/tmp" } } });
      expect([c.status, c.headers.location, c.body.metadata]).toEqual([201, "/1.0/profiles/p1", null]);
      const g = await d.api("GET", "/1.0/profiles/p1");
      expect(g.body.metadata).toEqual({ config: { "limits.cpu": "2" }, description: "d", devices: { r: { path: "/x", source: "/tmp", type: "disk" } }, name: "p1", used_by: [] });
      expect((await d.api("PATCH", "/1.0/profiles/p1", { config: { "limits.memory": "1GB" } })).status).toBe(200);
      const p = await d.api("GET", "/1.0/profiles/p1");
      expect(p.body.metadata.config).toEqual({ "limits.cpu": "2", "limits.memory": "1GB" });
      expect(p.body.metadata.description).toBe("d");
      expect((await d.api("PUT", "/1.0/profiles/p1", { config: { "limits.memory": "1GB" } })).status).toBe(200);
      expect((await d.api("GET", "/1.0/profiles/p1")).body.metadata).toEqual({ config: { "limits.memory": "1GB" }, description: "", devices: {}, name: "p1", used_by: [] });
      const stale = await d.api("PUT", "/1.0/profiles/p1", { config: {} }, { "if-match": '"abc"' });
      expect(stale.status).toBe(412);
      const etag = (await d.api("GET", "/1.0/profiles/p1")).headers.etag as string;
      expect((await d.api("PUT", "/1.0/profiles/p1", { config: {} }, { "if-match": etag })).status).toBe(200);
      const rn = await d.api("POST", "/1.0/profiles/p1", { name: "p2" });
      expect([rn.status, rn.headers.location]).toEqual([201, "/1.0/profiles/p2"]);
      expect((await d.api("GET", "/1.0/profiles/p1")).status).toBe(404);
      expect((await d.api("DELETE", "/1.0/profiles/p2")).status).toBe(200);
      await new Promise((r) => setTimeout(r, 200));
      const actions = events.map((e) => [e.metadata.action, e.metadata.source]);
      expect(actions).toEqual([
        ["profile-created", "/1.0/profiles/p1"],
        ["profile-updated", "/1.0/profiles/p1"],
        ["profile-updated", "/1.0/profiles/p1"],
        ["profile-updated", "/1.0/profiles/p1"],
        ["profile-renamed", "/1.0/profiles/p2"],
        ["profile-deleted", "/1.0/profiles/p2"],
      ]);
      expect(events[4].metadata.context).toEqual({ old_name: "p1" });
    } finally {
      ws.close();
    }
  });

  it("errors read like LXD's and change nothing", async () => {
    await d.api("POST", "/1.0/profiles", { name: "e1" });
    const cases: [string, string, unknown, number, string][] = [
      ["POST", "/1.0/profiles", { name: "e1" }, 500, 'Error inserting "e1" into database: The profile already exists'],
      ["POST", "/1.0/profiles", { name: "" }, 400, "No name provided"],
      ["POST", "/1.0/profiles", { name: "a/b" }, 400, "Profile names may not contain slashes"],
      ["POST", "/1.0/profiles", { name: ".." }, 400, 'Invalid profile name ".."'],
      ["POST", "/1.0/profiles", { name: "e2", config: { "limits.cpu": 2 } }, 400, "json: cannot unmarshal number into Go struct field ProfilesPost.config.limits.cpu of type string"],
      ["POST", "/1.0/profiles", { name: "e2", devices: { x: { path: "/x" } } }, 400, 'Device validation failed for "x": Failed loading device "x": Missing device type in config'],
      ["DELETE", "/1.0/profiles/default", undefined, 403, 'The "default" profile cannot be deleted'],
      ["POST", "/1.0/profiles/default", { name: "zz" }, 403, 'The "default" profile cannot be renamed'],
      ["POST", "/1.0/profiles/e1", { name: "default" }, 500, 'Name "default" already in use'],
      ["POST", "/1.0/profiles/e1", { name: "" }, 400, "No name provided"],
      ["GET", "/1.0/profiles/nope", undefined, 404, "Fetch profile: Profile not found"],
      ["DELETE", "/1.0/profiles/nope", undefined, 404, "Profile not found"],
      ["PUT", "/1.0/profiles/nope", {}, 404, 'Failed to retrieve profile "nope": Profile not found'],
      ["PATCH", "/1.0/profiles/nope", {}, 404, 'Failed to retrieve profile="nope": Profile not found'],
    ];
    for (const [method, path, body, status, error] of cases) {
      const r = await d.api(method, path, body);
      expect([r.status, r.body.error], `${method} ${path} ${JSON.stringify(body)}`).toEqual([status, error]);
    }
    expect((await d.api("GET", "/1.0/profiles")).body.metadata).toEqual(["/1.0/profiles/default", "/1.0/profiles/e1"]);
    await d.api("DELETE", "/1.0/profiles/e1");
  });

  it("a project without profiles of its own uses the default project's", async () => {
    const r = await d.api("GET", "/1.0/profiles?project=noprofiles&recursion=1");
    expect(r.body.metadata.map((p: any) => p.name)).toEqual(["default"]);
    expect((await d.api("GET", "/1.0/profiles/default?project=noprofiles")).body.metadata.description).toBe("Default LXD profile");
  });

  it("profiles survive a kill -9 and the default profile is not recreated over changes", async () => {
    await d.api("PATCH", "/1.0/profiles/default", { config: { "user.k": "v" } });
    await d.api("POST", "/1.0/profiles", { name: "keep" });
    await d.kill9();
    await d.restart();
    expect((await d.api("GET", "/1.0/profiles/default")).body.metadata.config).toEqual({ "user.k": "v" });
    expect((await d.api("GET", "/1.0/profiles/keep")).status).toBe(200);
    await d.api("PUT", "/1.0/profiles/default", { config: {}, description: "Default LXD profile" });
    await d.api("DELETE", "/1.0/profiles/keep");
  });
});

describe("lxc profile with the stock client", () => {
  it("create, show, edit, set, unset, device add, rename, delete", () => {
    ok("profile", "create", "cli1");
    expect(ok("profile", "show", "cli1")).toContain("name: cli1");
    ok("profile", "set", "cli1", "limits.cpu", "2");
    expect(ok("profile", "get", "cli1", "limits.cpu").trim()).toBe("2");
    ok("profile", "device", "add", "cli1", "data", "disk", "source=/tmp", "path=/mnt");
    const shown = ok("profile", "show", "cli1");
    expect(shown).toContain("limits.cpu: \"2\"");
    expect(shown).toMatch(/data:\n\s+path: \/mnt\n\s+source: \/tmp\n\s+type: disk/);
    ok("profile", "unset", "cli1", "limits.cpu");
    expect(ok("profile", "show", "cli1")).not.toContain("limits.cpu");
    const edit = lxcWithInput("lxc", ["profile", "edit", "cli1"], "config:\n  user.a: b\ndescription: edited\ndevices: {}\n");
    expect(edit.status, edit.stderr).toBe(0);
    const after = ok("profile", "show", "cli1");
    expect(after).toContain("description: edited");
    expect(after).toContain("user.a: b");
    expect(after).not.toContain("data:");
    ok("profile", "rename", "cli1", "cli2");
    expect(ok("profile", "list", "-f", "csv")).toContain("cli2");
    ok("profile", "delete", "cli2");
    expect(d.lxc("profile", "delete", "default").stderr).toContain('The "default" profile cannot be deleted');
    expect(d.lxc("profile", "rename", "default", "x").stderr).toContain('The "default" profile cannot be renamed');
  });
});

function lxcWithInput(cmd: string, args: string[], input: string) {
  return spawnSync(cmd, args, { input, encoding: "utf8", env: { ...process.env, LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf" } });
}
