// `nodelxd init` as a client of the REST API: --dump, --preseed (with revert), --auto.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { MAIN, startDaemon, type TestDaemon } from "../helpers/daemon.js";

let d: TestDaemon;
let storageApi = false;
beforeAll(async () => {
  d = await startDaemon();
  const probe = await d.api("POST", "/1.0/storage-pools", {});
  storageApi = probe.status !== 404 && probe.status !== 501;
});
afterAll(async () => {
  await d?.stop();
});

function init(input: string | undefined, ...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, "init", ...args], { env: { ...process.env, LXD_DIR: d.dir }, input, encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

describe("nodelxd init", () => {
  it("--dump prints the server config as preseed YAML", () => {
    const r = init(undefined, "--dump");
    expect(r.code).toBe(0);
    expect(YAML.parse(r.stdout).config).toEqual({});
    expect(r.stdout.startsWith("config: {}\n")).toBe(true);
  });

  it("--preseed applies server config (YAML 1.1 scalars become strings)", async () => {
    const r = init("config:\n  images.auto_update_interval: 12\n  images.auto_update_cached: no\n", "--preseed");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const cfg = (await d.api("GET", "/1.0")).body.metadata.config;
    expect(cfg).toMatchObject({ "images.auto_update_interval": "12", "images.auto_update_cached": "false" });
    const dump = init(undefined, "--dump");
    expect(dump.stdout).toContain('images.auto_update_interval: "12"\n');
    await d.api("PUT", "/1.0", { config: {} });
  });

  it("--preseed reverts the server config when a later step fails", async () => {
    await d.api("PUT", "/1.0", { config: { "images.auto_update_interval": "7" } });
    const doc = "config:\n  images.auto_update_interval: 3\nnetworks:\n- name: nodelxdtst0\n  type: bridge\n  config:\n    ipv4.address: bogus\n";
    const r = init(doc, "--preseed");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: Failed to create network "nodelxdtst0": /);
    expect((await d.api("GET", "/1.0")).body.metadata.config).toEqual({ "images.auto_update_interval": "7" });
    await d.api("PUT", "/1.0", { config: {} });
  });

  it("--preseed refuses what it cannot do, changing nothing", async () => {
    const bad = init("config:\n  core.bogus: 1\n", "--preseed");
    expect(bad.stderr).toBe("Error: Failed to update server configuration: cannot set 'core.bogus' to '1': unknown key\n");
    expect(init("cluster:\n  enabled: true\n", "--preseed").stderr).toMatch(/^Error: Failed to enable clustering: Invalid server name/);
    expect(init("projects:\n- name: p1\n", "--preseed").stderr).toMatch(/^Error: Projects in a preseed are not supported/);
    expect(init("config: [\n", "--preseed").stderr).toMatch(/^Error: Failed to parse the preseed: /);
    expect((await d.api("GET", "/1.0")).body.metadata.config).toEqual({});
  });

  it("flag combinations as upstream", () => {
    expect(init(undefined, "--auto", "--preseed").stderr).toBe("Error: Can't use --auto and --preseed together\n");
    expect(init(undefined, "--storage-backend", "dir").stderr).toBe("Error: Configuration flags require --auto\n");
    expect(init(undefined, "--dump", "--auto").stderr).toBe("Error: Can't use --dump with other flags\n");
    expect(init(undefined, "--auto", "--trust-password", "x").stderr).toBe("Error: --trust-password can't be used without --network-address\n");
    expect(init(undefined, "--auto", "--storage-backend", "dir", "--storage-pool", "x").stderr).toBe(
      "Error: None of --storage-pool, --storage-create-device or --storage-create-loop may be used with the 'dir' backend\n",
    );
    expect(init(undefined, "--auto", "--storage-backend", "nope").stderr).toBe("Error: The requested backend 'nope' isn't supported by lxd init\n");
  });

  // Storage pools and profiles come from another feature: these run once it is merged.
  it("--preseed creates a storage pool and a profile, and --dump shows them", async (ctx) => {
    if (!storageApi) ctx.skip();
    const dir = `${d.dir}-pool`;
    // a dir pool's source must exist, as with LXD
    mkdirSync(dir);
    mkdirSync(`${dir}-2`);
    ctx.onTestFinished(async () => {
      await d.api("DELETE", "/1.0/profiles/extra");
      await d.api("PUT", "/1.0/profiles/default", { config: {}, description: "Default LXD profile", devices: {} });
      await d.api("DELETE", "/1.0/storage-pools/p1");
      rmSync(dir, { recursive: true, force: true });
      rmSync(`${dir}-2`, { recursive: true, force: true });
    });
    const doc = `storage_pools:\n- name: p1\n  driver: dir\n  config:\n    source: ${dir}\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: p1\n      type: disk\n- name: extra\n  config:\n    limits.cpu: 1\n`;
    const r = init(doc, "--preseed");
    expect(r.stderr).toBe("");
    expect((await d.api("GET", "/1.0/storage-pools/p1")).body.metadata.driver).toBe("dir");
    expect((await d.api("GET", "/1.0/profiles/default")).body.metadata.devices.root).toEqual({ path: "/", pool: "p1", type: "disk" });
    expect((await d.api("GET", "/1.0/profiles/extra")).body.metadata.config).toEqual({ "limits.cpu": "1" });
    const dump = YAML.parse(init(undefined, "--dump").stdout);
    expect(dump.storage_pools.map((p: any) => p.name)).toContain("p1");
    expect(dump.profiles.map((p: any) => p.name)).toEqual(expect.arrayContaining(["default", "extra"]));
    // A failing later step reverts the pool and profile it created.
    const failing = `storage_pools:\n- name: p2\n  driver: dir\n  config:\n    source: ${dir}-2\nprofiles:\n- name: p2prof\n  config:\n    bogus.key: 1\n`;
    expect(init(failing, "--preseed").code).toBe(1);
    expect((await d.api("GET", "/1.0/storage-pools/p2")).status).toBe(404);
  });

  it("--auto creates the default pool and the default profile's root disk", async (ctx) => {
    if (!storageApi) ctx.skip();
    // With a managed network present --auto creates no bridge: give it one with no addresses.
    const bridge = `nlt${process.pid % 100000}`;
    const networks = await d.api("GET", "/1.0/networks");
    const withNetworks = networks.status === 200;
    if (withNetworks) {
      const made = await d.api("POST", "/1.0/networks", { name: bridge, type: "bridge", config: { "ipv4.address": "none", "ipv6.address": "none" } });
      expect(made.status).toBe(201);
    }
    const r = init(undefined, "--auto");
    if (withNetworks) await d.api("DELETE", `/1.0/networks/${bridge}`);
    else expect(r.stderr).toContain("skipping the default bridge");
    expect(r.code, r.stderr).toBe(0);
    const pool = await d.api("GET", "/1.0/storage-pools/default");
    expect(pool.body.metadata?.driver, pool.text + r.stderr).toBe("dir");
    expect((await d.api("GET", "/1.0/profiles/default")).body.metadata.devices.root).toEqual({ path: "/", pool: "default", type: "disk" });
  });
});
