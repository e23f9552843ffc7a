// storage.backups_volume / storage.images_volume driven with the stock client through the steps
// of LXD's test_server_config_storage (dir pool): refused targets, the directories moved onto the
// volumes (same content, symlinked), the volumes refusing delete/rename/snapshot while in use,
// publish and init with images on a volume, a move between volumes, a daemon restart with the
// volumes set, a move a crash interrupted finished at the next start, and unsetting moving
// everything back into plain directories.
import { existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}
function fails(...args: string[]): string {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")} should fail`).not.toBe(0);
  return r.stderr;
}
/** What `find DIR/` lists, relative to DIR (the top symlink followed, as find does with the slash). */
function listing(dir: string): string[] {
  return (readdirSync(`${dir}/`, { recursive: true }) as string[]).sort();
}
const volumePath = (name: string) => join(d.dir, "storage-pools", "default", "custom", `default_${name}`);

beforeAll(async () => {
  d = await startInitialisedDaemon();
}, 120_000);

afterAll(async () => {
  if (!d) return;
  d.lxc("config", "unset", "storage.backups_volume");
  d.lxc("config", "unset", "storage.images_volume");
  for (const v of ["backups", "images", "images2", "full"]) d.lxc("storage", "volume", "delete", "default", v);
  await d.teardown();
}, 120_000);

describe("daemon storage volumes", () => {
  it("moves backups and images onto custom volumes and back, as LXD", async () => {
    const foo = d.launch("foo", { init: true });
    ok("query", "--wait", `/1.0/instances/${foo}/backups`, "-X", "POST", "-d", '{"expires_at": "2100-01-01T10:00:00-05:00"}');
    const backupsBefore = listing(join(d.dir, "backups"));
    const imagesBefore = listing(join(d.dir, "images"));
    expect(backupsBefore.some((f) => f.startsWith(`instances/${foo}/`))).toBe(true);
    expect(imagesBefore.length).toBeGreaterThan(0);

    ok("storage", "volume", "create", "default", "backups");
    ok("storage", "volume", "create", "default", "images");

    expect(fails("config", "set", "storage.backups_volume", "foo/bar")).toContain('Unable to load storage pool "foo"');
    expect(fails("config", "set", "storage.images_volume", "foo/bar")).toContain('Unable to load storage pool "foo"');
    expect(fails("config", "set", "storage.backups_volume", "default/bar")).toContain('Failed loading storage volume "default/bar"');
    expect(fails("config", "set", "storage.images_volume", "default")).toContain("Invalid syntax for volume, must be <pool>/<volume>");
    // LXD's statuses: a missing pool or volume is 404, the rest 500, with the key named.
    const missing = await d.api("PATCH", "/1.0", { config: { "storage.images_volume": "default/bar" } });
    expect([missing.status, missing.body.error]).toEqual([
      404,
      'Failed validation of "storage.images_volume": Failed loading storage volume "default/bar" in "default" project: Storage volume not found',
    ]);
    const syntax = await d.api("PATCH", "/1.0", { config: { "storage.backups_volume": "a/b/c" } });
    expect([syntax.status, syntax.body.error]).toEqual([500, 'Failed validation of "storage.backups_volume": Invalid syntax for volume, must be <pool>/<volume>']);

    ok("storage", "volume", "snapshot", "default", "backups");
    ok("storage", "volume", "snapshot", "default", "images");
    expect(fails("config", "set", "storage.backups_volume", "default/backups")).toContain("Storage volumes for use by LXD itself cannot have snapshots");
    expect(fails("config", "set", "storage.images_volume", "default/images")).toContain("Storage volumes for use by LXD itself cannot have snapshots");
    ok("storage", "volume", "delete", "default", "backups/snap0");
    ok("storage", "volume", "delete", "default", "images/snap0");

    // A volume with content is refused.
    ok("storage", "volume", "create", "default", "full");
    writeFileSync(join(volumePath("full"), "something"), "x");
    expect(fails("config", "set", "storage.images_volume", "default/full")).toContain('Storage volume "default/full" isn\'t empty');
    expect(lstatSync(join(d.dir, "images")).isSymbolicLink()).toBe(false);

    ok("config", "set", "storage.backups_volume", "default/backups");
    ok("config", "set", "storage.images_volume", "default/images");
    expect(ok("config", "get", "storage.images_volume").trim()).toBe("default/images");

    for (const [type, before] of [["backups", backupsBefore], ["images", imagesBefore]] as const) {
      const link = join(d.dir, type);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readlinkSync(link)).toBe(volumePath(type));
      expect(statSync(volumePath(type)).mode & 0o777).toBe(0o700);
      expect(listing(link)).toEqual(before);
      expect(existsSync(`${link}.temp`)).toBe(false);
    }

    // In use by the daemon: shown in used_by, and not deleted, renamed or snapshotted.
    expect(JSON.parse(ok("query", "/1.0/storage-pools/default/volumes/custom/images")).used_by).toEqual(["/1.0"]);
    for (const v of ["backups", "images"]) {
      expect(fails("storage", "volume", "delete", "default", v)).toContain("The storage volume is still in use");
      expect(fails("storage", "volume", "rename", "default", v, `${v}1`)).toContain("Volume is used by LXD itself and cannot be renamed");
      expect(fails("storage", "volume", "snapshot", "default", v)).toContain("Volumes used by LXD itself cannot have snapshots");
    }

    // Publish onto the images volume and create an instance from it.
    ok("start", foo);
    ok("exec", foo, "--", "touch", "/root/foo");
    ok("stop", "-f", foo);
    ok("publish", foo, "--alias", "fooimage");
    const fingerprint = JSON.parse(ok("query", "/1.0/images/aliases/fooimage")).target as string;
    expect(existsSync(join(volumePath("images"), fingerprint))).toBe(true);
    const foo2 = d.instanceName("foo2");
    ok("init", "fooimage", foo2);
    ok("delete", "-f", foo2);
    ok("image", "delete", "fooimage");
    expect(existsSync(join(volumePath("images"), fingerprint))).toBe(false);

    // From one volume to another: the content follows, the old volume is left empty.
    ok("storage", "volume", "create", "default", "images2");
    ok("config", "set", "storage.images_volume", "default/images2");
    expect(readlinkSync(join(d.dir, "images"))).toBe(volumePath("images2"));
    expect(listing(join(d.dir, "images"))).toEqual(imagesBefore);
    expect(readdirSync(volumePath("images"))).toEqual([]);
    ok("storage", "volume", "delete", "default", "images");

    // After a restart the volumes are in use again: images listed and launchable, backups kept.
    await d.restart();
    expect(JSON.parse(ok("query", "/1.0/images/aliases/busybox")).target).toBeTruthy();
    const foo3 = d.launch("foo3", { init: true });
    ok("delete", "-f", foo3);
    expect(JSON.parse(ok("query", `/1.0/instances/${foo}/backups`))).toHaveLength(1);
    expect(listing(join(d.dir, "backups"))).toEqual(backupsBefore);

    // A crash in the middle of a move (content still in images.temp): the next start finishes it.
    await d.kill9();
    const temp = join(d.dir, "images.temp");
    mkdirSync(temp, { mode: 0o700 }); // as the renamed directory was
    for (const e of readdirSync(volumePath("images2"))) renameSync(join(volumePath("images2"), e), join(temp, e));
    expect(listing(join(d.dir, "images"))).toEqual([]);
    await d.restart();
    expect(existsSync(temp)).toBe(false);
    expect(listing(join(d.dir, "images"))).toEqual(imagesBefore);
    expect(JSON.parse(ok("query", "/1.0/images/aliases/busybox")).target).toBeTruthy();

    // Unsetting moves everything back into plain directories.
    ok("config", "unset", "storage.backups_volume");
    ok("config", "unset", "storage.images_volume");
    for (const [type, before] of [["backups", backupsBefore], ["images", imagesBefore]] as const) {
      const dir = join(d.dir, type);
      expect(lstatSync(dir).isDirectory()).toBe(true);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(listing(dir)).toEqual(before);
    }
    ok("storage", "volume", "delete", "default", "backups");
    ok("storage", "volume", "delete", "default", "images2");
    ok("delete", "-f", foo);
  }, 300_000);
});
