// Custom storage volumes attached to containers as disk devices, with the stock client.
import { existsSync, readdirSync, statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
beforeAll(async () => {
  d = await startInitialisedDaemon();
});
afterAll(async () => {
  await d?.teardown();
});

describe("custom volumes on disk devices", () => {
  it("attach to a running container, shift to its id map, refuse deletion while in use, move to another", async () => {
    const vol = d.instanceName("vol");
    const a = d.launch("a");
    const b = d.launch("b");
    expect(d.lxc("storage", "volume", "create", "default", vol).code).toBe(0);
    try {
      const att = d.lxc("storage", "volume", "attach", "default", vol, a, "/data");
      expect(att.code, att.stderr).toBe(0);
      const w = d.lxc("exec", a, "--", "sh", "-c", "echo on-volume > /data/f && stat -c %u /data/f");
      expect(w.code, w.stderr).toBe(0);
      expect(w.stdout.trim()).toBe("0");
      // on disk the file belongs to the container's mapped root, not to host root
      const hostPath = `${d.dir}/storage-pools/default/custom/default_${vol}/f`;
      expect(statSync(hostPath).uid).toBe(d.hostRoot(a).uid);
      const used = await d.api("GET", `/1.0/storage-pools/default/volumes/custom/${vol}`);
      expect(used.body.metadata.used_by).toEqual([`/1.0/instances/${a}`]);
      expect(d.lxc("storage", "volume", "delete", "default", vol).code).not.toBe(0);
      expect(d.lxc("storage", "volume", "detach", "default", vol, a).code).toBe(0);
      expect(d.lxc("exec", a, "--", "test", "-e", "/data/f").code).toBe(1);
      expect(d.lxc("storage", "volume", "attach", "default", vol, b, "/srv/vol").code).toBe(0);
      expect(d.lxc("exec", b, "--", "cat", "/srv/vol/f").stdout).toBe("on-volume\n");
      expect(d.lxc("storage", "volume", "detach", "default", vol, b).code).toBe(0);
    } finally {
      d.lxc("storage", "volume", "detach", "default", vol, a);
      d.lxc("storage", "volume", "detach", "default", vol, b);
      d.lxc("storage", "volume", "delete", "default", vol);
    }
  });

  it("mount when the container starts, through devices/ as LXD (the pool's custom/ stays private), and go on stop", async () => {
    const vol = d.instanceName("coldvol");
    const c = d.launch("cold", { init: true });
    expect(d.lxc("storage", "volume", "create", "default", vol).code).toBe(0);
    try {
      expect(d.lxc("storage", "volume", "attach", "default", vol, c, "/data").code).toBe(0);
      expect(statSync(`${d.dir}/storage-pools/default/custom`).mode & 0o777).toBe(0o700);
      const start = d.lxc("start", c);
      expect(start.code, start.stderr).toBe(0);
      expect(d.lxc("exec", c, "--", "sh", "-c", "echo cold > /data/f").code).toBe(0);
      const devices = `${d.dir}/devices/${c}`;
      // The device takes the volume's name; the path is encoded as LXD encodes it ("-" doubled, "/" as "-").
      const entry = `disk.${vol.replace(/-/g, "--")}.data`;
      expect(readdirSync(devices)).toContain(entry);
      expect(d.lxc("restart", c, "--force").code).toBe(0);
      expect(d.lxc("exec", c, "--", "cat", "/data/f").stdout).toBe("cold\n");
      expect(d.lxc("stop", c, "--force").code).toBe(0);
      expect(existsSync(`${devices}/${entry}`)).toBe(false);
    } finally {
      d.lxc("delete", "-f", c);
      d.lxc("storage", "volume", "delete", "default", vol);
    }
  });

  it("refuses a disk naming a custom volume that does not exist, with LXD's words, and adds nothing", () => {
    const c = d.launch("novol", { init: true });
    const r = d.lxc("config", "device", "add", c, "d", "disk", "pool=default", "source=no-such-volume", "path=/mnt");
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toBe('Error: Failed add validation for device "d": Failed loading custom volume: Storage volume not found');
    expect(d.lxc("config", "device", "list", c).stdout.trim()).toBe("");
  });

  it("takes a relative path as relative to the container's root, and never above it", () => {
    const vol = d.instanceName("relvol");
    const c = d.launch("rel");
    expect(d.lxc("storage", "volume", "create", "default", vol).code).toBe(0);
    try {
      // `lxc storage volume attach POOL VOL INST PATH` with a bare name, as LXD's suite does.
      const att = d.lxc("storage", "volume", "attach", "default", vol, c, "relvol");
      expect(att.code, att.stderr).toBe(0);
      expect(d.lxc("exec", c, "--", "sh", "-c", "echo rel > /relvol/f").code).toBe(0);
      expect(d.lxc("storage", "volume", "detach", "default", vol, c).code).toBe(0);
      expect(d.lxc("config", "device", "add", c, "up", "disk", "pool=default", `source=${vol}`, "path=../../up").code).toBe(0);
      expect(d.lxc("exec", c, "--", "cat", "/up/f").stdout).toBe("rel\n");
      expect(d.lxc("config", "device", "remove", c, "up").code).toBe(0);
    } finally {
      d.lxc("delete", "-f", c);
      d.lxc("storage", "volume", "delete", "default", vol);
    }
  });

  it("refuses to shift a shared volume to a map another container does not have", () => {
    const vol = d.instanceName("sharedvol");
    const a = d.launch("sha");
    const iso = d.launch("shiso", { config: { "security.idmap.isolated": "true" } });
    expect(d.lxc("storage", "volume", "create", "default", vol).code).toBe(0);
    try {
      expect(d.lxc("storage", "volume", "attach", "default", vol, iso, "/v").code).toBe(0);
      const path = `${d.dir}/storage-pools/default/custom/default_${vol}`;
      expect(statSync(path).uid).toBe(d.hostRoot(iso).uid);
      const r = d.lxc("storage", "volume", "attach", "default", vol, a, "/v");
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("Idmaps of container and storage volume are not identical");
      // Nothing changed: still on the isolated container's map, and not attached to the other.
      expect(statSync(path).uid).toBe(d.hostRoot(iso).uid);
      expect(JSON.parse(d.lxc("query", `/1.0/instances/${a}`).stdout).devices).toEqual({});
    } finally {
      d.lxc("delete", "-f", a, iso);
      d.lxc("storage", "volume", "delete", "default", vol);
    }
  });

  it("refuses a volume name with a slash", () => {
    const c = d.launch("c", { init: true });
    const r = d.lxc("config", "device", "add", c, "v", "disk", "pool=default", "source=../x", "path=/x");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Snapshots of custom volumes can't be attached");
  });
});
