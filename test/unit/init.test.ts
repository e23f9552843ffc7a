// The preseed logic of `nodelxd init`, against a recording fake of the API.
import { describe, expect, it } from "vitest";
import { applyPreseed, autoPreseed, parsePreseed, type InitApi } from "../../src/cli/init.js";
import { formatTable } from "../../src/cli/sql.js";

type Handler = (method: string, path: string, body?: unknown) => { status: number; body: any };

function fakeApi(handler: Handler) {
  const calls: string[] = [];
  const api = {
    async call(method: string, path: string, body?: unknown) {
      calls.push(`${method} ${path}`);
      return handler(method, path, body);
    },
    async ok(method: string, path: string, body?: unknown) {
      const r = await api.call(method, path, body);
      if (r.status >= 400) throw new Error(r.body?.error ?? `HTTP ${r.status}`);
      return r.body?.metadata;
    },
  };
  return { api: api as unknown as InitApi, calls };
}

const sync = (metadata: unknown) => ({ status: 200, body: { type: "sync", metadata } });
const err = (status: number, error: string) => ({ status, body: { type: "error", error, error_code: status } });

describe("parsePreseed", () => {
  it("YAML 1.1 scalars, empty documents", () => {
    expect(parsePreseed("config:\n  a: yes\n  b: 010\n")).toEqual({ config: { a: true, b: 8 } });
    expect(parsePreseed("")).toEqual({});
  });
  it("refuses clustering, projects and nameless entries", () => {
    expect(() => parsePreseed("cluster: [1]\n")).toThrow(/cluster must be a mapping/);
    expect(() => parsePreseed("projects:\n- name: p\n")).toThrow(/Projects in a preseed/);
    expect(() => parsePreseed("profiles:\n- config: {}\n")).toThrow(/every entry of profiles needs a name/);
    expect(() => parsePreseed("- a\n")).toThrow(/not a mapping/);
  });
});

describe("applyPreseed", () => {
  it("merges into existing objects and creates missing ones, in order", async () => {
    const puts: Record<string, unknown> = {};
    const { api, calls } = fakeApi((method, path, body) => {
      if (method === "GET" && path === "/1.0") return sync({ config: { "core.https_address": ":8443" } });
      if (method === "GET" && path === "/1.0/profiles/default") return sync({ config: {}, description: "Default LXD profile", devices: { eth0: { type: "nic", name: "eth0", network: "br0" } } });
      if (method === "GET") return err(404, "not found");
      if (method === "PUT") puts[path] = body;
      return sync({});
    });
    await applyPreseed(api, parsePreseed("config:\n  images.auto_update_interval: 6\nstorage_pools:\n- name: p\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root: {type: disk, path: /, pool: p}\n"));
    expect(calls).toEqual(["GET /1.0", "PUT /1.0", "GET /1.0/storage-pools/p", "POST /1.0/storage-pools", "GET /1.0/profiles/default", "PUT /1.0/profiles/default"]);
    expect(puts["/1.0"]).toEqual({ config: { "core.https_address": ":8443", "images.auto_update_interval": "6" } });
    expect(puts["/1.0/profiles/default"]).toEqual({
      config: {},
      description: "Default LXD profile",
      devices: { eth0: { type: "nic", name: "eth0", network: "br0" }, root: { type: "disk", path: "/", pool: "p" } },
    });
  });

  it("reverts in reverse order when a step fails", async () => {
    const { api, calls } = fakeApi((method, path) => {
      if (method === "GET" && path === "/1.0") return sync({ config: {} });
      if (method === "GET") return err(404, "not found");
      if (method === "POST" && path === "/1.0/profiles") return err(400, "bad profile");
      return sync({});
    });
    await expect(applyPreseed(api, parsePreseed("config:\n  a.b: 1\nstorage_pools:\n- name: p\n  driver: dir\nprofiles:\n- name: x\n"))).rejects.toThrow('Failed to create profile "x": bad profile');
    expect(calls.slice(-2)).toEqual(["DELETE /1.0/storage-pools/p", "PUT /1.0"]);
  });
});

describe("autoPreseed", () => {
  const server = sync({ config: {}, environment: { storage_supported_drivers: [{ Name: "dir" }, { Name: "btrfs" }] } });
  it("pool, root disk and a bridge when nothing exists", async () => {
    const { api } = fakeApi((_m, path) => (path === "/1.0" ? server : sync([])));
    const flags = { storageBackend: "", storageDevice: "", storageLoopSize: -1, storagePool: "", networkAddress: "::", networkPort: -1, trustPassword: "pw" };
    const p = await autoPreseed(api, flags, () => {}, (n) => n === "lxdbr0");
    expect(p).toEqual({
      config: { "core.https_address": "[::]:8443", "core.trust_password": "pw" },
      storage_pools: [{ name: "default", driver: "dir", config: {} }],
      profiles: [{ name: "default", devices: { root: { type: "disk", path: "/", pool: "default" }, eth0: { type: "nic", network: "lxdbr1", name: "eth0" } } }],
      networks: [{ name: "lxdbr1", project: "default", config: {} }],
    });
  });
  it("skips the bridge (saying so) when the server has no networks API", async () => {
    const { api } = fakeApi((_m, path) => (path === "/1.0" ? server : path.startsWith("/1.0/networks") ? err(404, "not found") : sync(["default"])));
    const said: string[] = [];
    const flags = { storageBackend: "btrfs", storageDevice: "", storageLoopSize: 5, storagePool: "", networkAddress: "", networkPort: -1, trustPassword: "" };
    expect(await autoPreseed(api, flags, (m) => said.push(m), () => false)).toEqual({ config: {} });
    expect(said[0]).toMatch(/skipping the default bridge/);
  });
  it("no bridge when the default profile has a NIC already (as LXD)", async () => {
    const profile = sync({ name: "default", config: {}, devices: { eth0: { type: "nic", nictype: "p2p" } } });
    const { api } = fakeApi((_m, path) => (path === "/1.0" ? server : path === "/1.0/profiles/default" ? profile : sync(["default"])));
    const flags = { storageBackend: "", storageDevice: "", storageLoopSize: -1, storagePool: "", networkAddress: "", networkPort: -1, trustPassword: "" };
    expect(await autoPreseed(api, flags, () => {}, () => false)).toEqual({ config: {} });
  });
  it("backends the server lacks", async () => {
    const { api } = fakeApi((_m, path) => (path === "/1.0" ? server : sync([])));
    const flags = { storageBackend: "zfs", storageDevice: "", storageLoopSize: -1, storagePool: "", networkAddress: "", networkPort: -1, trustPassword: "" };
    await expect(autoPreseed(api, flags, () => {}, () => false)).rejects.toThrow("The requested backend 'zfs' isn't available on your system (missing tools)");
  });
});

describe("sql table output", () => {
  it("pads cells left and centres headers like upstream (tablewriter)", () => {
    expect(formatTable(["id", "name"], [[1, "alpha"], [22, null]])).toBe(
      "+----+-------+\n| id | name  |\n+----+-------+\n| 1  | alpha |\n| 22 | <nil> |\n+----+-------+\n",
    );
    // As LXD 5.0.2 printed `SELECT 1 AS one, NULL AS missing, 'héllo' AS s, 1.5 AS f, x'41' AS b` here.
    expect(formatTable(["one", "missing", "s", "f", "b"], [[1, null, "héllo", 1.5, "A"]])).toBe(
      "+-----+---------+-------+-----+---+\n| one | missing |   s   |  f  | b |\n+-----+---------+-------+-----+---+\n| 1   | <nil>   | héllo | 1.5 | A |\n+-----+---------+-------+-----+---+\n",
    );
    expect(formatTable(["key"], [])).toBe("+-----+\n| key |\n+-----+\n+-----+\n");
  });
});
