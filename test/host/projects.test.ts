// Projects with the stock client: CRUD, features.* and isolation of instances, profiles and images.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

let d: TestDaemon;
const tag = Math.random().toString(36).slice(2, 7);

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  const image = busyboxImage();
  d = await startDaemon();
  ok("storage", "create", "default", "dir");
  ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
  ok("image", "import", image, "--alias", "busybox");
});

afterAll(async () => {
  if (!d) return;
  for (const p of ["shared", "own"]) spawnSync("lxc-stop", ["-k", "-n", `pj${tag}-${p}_pj${tag}-c`, "-P", join(d.dir, "containers")]);
  await d.stop().catch(() => {});
});

describe("projects", () => {
  it("shows the default project with every feature", async () => {
    const list = JSON.parse(ok("project", "list", "-f", "json"));
    const def = list.find((p: any) => p.name === "default");
    expect(def.config).toEqual({ "features.images": "true", "features.networks": "true", "features.profiles": "true", "features.storage.volumes": "true" });
    const g = await d.api("GET", "/1.0/projects/default");
    expect(g.body.metadata.used_by).toContain("/1.0/profiles/default");
    const del = await d.api("DELETE", "/1.0/projects/default");
    expect([del.status, del.body.error]).toEqual([403, "The 'default' project cannot be deleted"]);
  });

  it("validates names and config as LXD", async () => {
    const cases: [unknown, string][] = [
      [{ name: "a/b" }, "Project names may not contain slashes"],
      [{ name: "a_b" }, "Project names may not contain underscores"],
      [{ name: "" }, "No name provided"],
      [{ name: `pj${tag}-x`, config: { foo: "1" } }, 'Invalid project configuration key "foo"'],
      [{ name: `pj${tag}-x`, config: { "features.images": "x" } }, 'Invalid project configuration key "features.images" value: Invalid value for a boolean "x"'],
    ];
    for (const [body, error] of cases) {
      const r = await d.api("POST", "/1.0/projects", body);
      expect([r.status, r.body.error]).toEqual([400, error]);
    }
    expect((await d.api("GET", `/1.0/projects/pj${tag}-x`)).status).toBe(404);
  });

  it("isolates instances; a project without images/profiles features uses the default project's", async () => {
    const p = `pj${tag}-shared`;
    const c = `pj${tag}-c`;
    ok("project", "create", p, "-c", "features.images=false", "-c", "features.profiles=false");
    const g = (await d.api("GET", `/1.0/projects/${p}`)).body.metadata;
    expect(g.config).toEqual({ "features.images": "false", "features.profiles": "false", "features.storage.volumes": "true" });
    ok("launch", "busybox", c, "-q", "--project", p);
    expect(ok("list", "-f", "csv", "-c", "n")).not.toContain(c);
    expect(ok("list", "-f", "csv", "-c", "n", "--project", p).trim()).toBe(c);
    expect((await d.api("GET", `/1.0/instances?project=${p}`)).body.metadata).toEqual([`/1.0/instances/${c}?project=${p}`]);
    expect((await d.api("GET", `/1.0/instances/${c}`)).status).toBe(404);
    expect((await d.api("GET", `/1.0/projects/${p}`)).body.metadata.used_by).toEqual([`/1.0/instances/${c}?project=${p}`]);
    const busy = d.lxc("project", "delete", p);
    expect(busy.stderr).toContain("Only empty projects can be removed");
    const feat = await d.api("PATCH", `/1.0/projects/${p}`, { config: { "features.images": "true" } });
    expect([feat.status, feat.body.error]).toEqual([400, 'Project feature "features.images" cannot be enabled on non-empty projects']);
    ok("delete", "-f", "--project", p, c);
    ok("project", "delete", p);
    expect((await d.api("GET", `/1.0/projects/${p}`)).status).toBe(404);
  });

  it("gives a project with features.profiles its own empty default profile and its own images", async () => {
    const p = `pj${tag}-own`;
    ok("project", "create", p);
    expect((await d.api("GET", `/1.0/projects/${p}`)).body.metadata.used_by).toEqual([`/1.0/profiles/default?project=${p}`]);
    expect((await d.api("GET", `/1.0/profiles/default?project=${p}`)).body.metadata.devices).toEqual({});
    expect(ok("image", "list", "-f", "csv", "--project", p).trim()).toBe("");
    expect(d.lxc("launch", "busybox", `pj${tag}-c`, "--project", p).code).not.toBe(0);
    ok("project", "set", p, "user.note", "x");
    expect((await d.api("GET", `/1.0/projects/${p}`)).body.metadata.config["user.note"]).toBe("x");
    // A custom volume is named with its pool (its snapshots are not listed), as LXD's GetStorageVolumeURIs.
    ok("storage", "volume", "create", "default", "vol1", "--project", p);
    ok("storage", "volume", "snapshot", "default", "vol1", "snap0", "--project", p);
    expect((await d.api("GET", `/1.0/projects/${p}`)).body.metadata.used_by).toEqual([`/1.0/profiles/default?project=${p}`, `/1.0/storage-pools/default/volumes/custom/vol1?project=${p}`]);
    ok("storage", "volume", "delete", "default", "vol1", "--project", p);
    ok("project", "delete", p);
  });
});
