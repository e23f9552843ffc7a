// Pure pieces of exec and file transfer: environment, attach helper arguments, exit statuses,
// file headers, path splitting and id maps.
import { describe, expect, test } from "vitest";
import { attachHelperArgs } from "../../src/instances/lxc/driver.js";
import { DEFAULT_PATH, execCwd, execEnvironment, execPostSchema } from "../../src/exec/exec-request.js";
import { exitStatus } from "../../src/exec/exec-session.js";
import { pushOptions } from "../../src/api/routes/instance-files.js";
import { splitPath } from "../../src/files/in-root.js";
import { identityIdMap, rangeIdMap } from "../../src/instances/runtime-port.js";
import type { ApiRequest } from "../../src/api/route.js";

const attachArgs = (_rt: unknown, spec: Parameters<typeof attachHelperArgs>[2], gate?: number) => attachHelperArgs("p_c1", "/var/lib/lxd/containers", spec, gate);
const rt = {};

describe("exec environment", () => {
  test("LXD's defaults for root, request and instance values win", () => {
    expect(execEnvironment({}, {}, 0)).toEqual({ PATH: DEFAULT_PATH, LANG: "C.UTF-8", HOME: "/root", USER: "root" });
    expect(execEnvironment({ A: "inst", B: "inst" }, { B: "req", PATH: "/bin" }, 0)).toEqual({ A: "inst", B: "req", PATH: "/bin", LANG: "C.UTF-8", HOME: "/root", USER: "root" });
    // Other users get no HOME/USER from LXD.
    expect(execEnvironment({}, {}, 1000)).toEqual({ PATH: DEFAULT_PATH, LANG: "C.UTF-8" });
  });

  test("cwd: requested, else $HOME, else /", () => {
    const post = execPostSchema.parse({ command: ["true"] });
    expect(execCwd(post, { HOME: "/root" })).toBe("/root");
    expect(execCwd(post, {})).toBe("/");
    expect(execCwd({ ...post, cwd: "/tmp" }, { HOME: "/root" })).toBe("/tmp");
  });

  test("request defaults", () => {
    expect(execPostSchema.parse({ command: ["ls"] })).toMatchObject({ interactive: false, "wait-for-websocket": false, "record-output": false, user: 0, group: 0, cwd: "" });
    expect(execPostSchema.safeParse({ command: "ls" }).success).toBe(false);
  });
});

describe("attach helper arguments", () => {
  const spec = { command: ["sh", "-c", "echo $A"], env: { A: "a b", PATH: "/bin" }, cwd: "/tmp", user: 1000, group: 1001 };
  test("liblxc name and path, user, group, cwd, the counted environment, the command after --", () => {
    expect(attachArgs(rt, spec)).toEqual(["p_c1", "/var/lib/lxd/containers", "1000", "1001", "/tmp", "2", "A=a b", "PATH=/bin", "--", "sh", "-c", "echo $A"]);
  });
  test("a command that looks like an option or the separator stays the command", () => {
    expect(attachArgs(rt, { ...spec, env: {}, command: ["--", "-x"] })).toEqual(["p_c1", "/var/lib/lxd/containers", "1000", "1001", "/tmp", "0", "--", "--", "-x"]);
  });
  test("a gate descriptor comes first", () => {
    expect(attachArgs(rt, { ...spec, env: {}, command: ["true"] }, 3)).toEqual(["--gate", "3", "p_c1", "/var/lib/lxd/containers", "1000", "1001", "/tmp", "0", "--", "true"]);
  });
});

test("exit status: code, or 128 + signal", () => {
  expect(exitStatus(3, null)).toBe(3);
  expect(exitStatus(null, "SIGKILL")).toBe(137);
  expect(exitStatus(null, 15)).toBe(143);
  expect(exitStatus(0, 9)).toBe(137);
});

describe("file headers", () => {
  const req = (headers: Record<string, string>) => ({ headers }) as unknown as ApiRequest;
  test("defaults and parsing", () => {
    expect(pushOptions(req({}))).toEqual({ type: "file", write: "overwrite", uid: undefined, gid: undefined, mode: undefined });
    expect(pushOptions(req({ "x-lxd-uid": "5", "x-lxd-gid": "6", "x-lxd-mode": "0640", "x-lxd-type": "directory", "x-lxd-write": "append" }))).toEqual({
      type: "directory",
      write: "append",
      uid: 5,
      gid: 6,
      mode: 0o640,
    });
    // Unparsable ids and modes are refused (issue 19), not silently "not given" as LXD 5.0.2 did.
    expect(() => pushOptions(req({ "x-lxd-uid": "abc" }))).toThrow("Invalid UID");
    expect(() => pushOptions(req({ "x-lxd-mode": "999" }))).toThrow("Invalid Mode");
  });
  test("bad type and write mode", () => {
    expect(() => pushOptions(req({ "x-lxd-type": "bogus" }))).toThrow("Bad file type: bogus");
    expect(() => pushOptions(req({ "x-lxd-write": "bogus" }))).toThrow("Bad file write mode: bogus");
  });
});

test("splitPath normalises inside the root", () => {
  expect(splitPath("/root/a")).toEqual({ parent: "/root", base: "a" });
  expect(splitPath("root/a/")).toEqual({ parent: "/root", base: "a" });
  expect(splitPath("/../../etc/x")).toEqual({ parent: "/etc", base: "x" });
  expect(splitPath("/")).toEqual({ parent: "/", base: "" });
});

test("range id map", () => {
  const m = rangeIdMap(1_000_000, 2_000_000, 65536);
  expect([m.uid(0), m.gid(0), m.uid(1000)]).toEqual([1_000_000, 2_000_000, 1_001_000]);
  expect([m.reverseUid(1_001_000), m.reverseGid(2_000_005), m.reverseUid(5)]).toEqual([1000, 5, -1]);
  expect(m.uid(65536)).toBe(-1);
});

test("routes of one path from several features are joined; a method twice is refused", async () => {
  const { mergeRoutes } = await import("../../src/api/server.js");
  const { route, sync } = await import("../../src/api/route.js");
  const h = () => sync(null);
  const merged = mergeRoutes([route("/a", { GET: h }, "project"), route("/b", { GET: h }), route("/a", { POST: h }, { POST: "untrusted" })]);
  expect(merged.map((r) => [r.path, Object.keys(r.handlers).sort(), r.access.GET, r.access.POST])).toEqual([
    ["/a", ["GET", "POST"], "project", "untrusted"],
    ["/b", ["GET"], "admin", "admin"],
  ]);
  expect(() => mergeRoutes([route("/a", { GET: h }), route("/a", { GET: h })])).toThrow("Method 'GET' declared twice for route '/a'");
});


