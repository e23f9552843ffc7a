// unix-char/unix-block devices as LXD 5.0.2 makes them: a host node under devices/<instance>/,
// mode/major/minor from the config, one mount per path, and required=false devices following
// their source into and out of a running container (also after a daemon restart).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
let tmp: string;
beforeAll(async () => {
  d = await startInitialisedDaemon();
  tmp = mkdtempSync("/tmp/nodelxd-unixdev-");
});
afterAll(async () => {
  await d?.teardown();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const ok = (r: { code: number; stderr: string }) => expect(r.code, r.stderr).toBe(0);
const hostStat = (p: string) => spawnSync("stat", ["-c", "%F %a %t %T", p], { encoding: "utf8" }).stdout.trim();
const mknod = (p: string) => expect(spawnSync("mknod", [p, "c", "0", "0"]).status).toBe(0);

async function until(f: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("unix-char devices", () => {
  it("makes host nodes with LXD's names, modes and numbers, one mount per path", async () => {
    const c = d.launch("u");
    const src = join(tmp, "testdev");
    mknod(src);
    const inside = (p: string) => d.lxc("exec", c, "--", "stat", "-c", "%F %a %t %T", p).stdout.trim();
    const node = (dev: string, path: string) => join(d.dir, "devices", c, `unix.${dev.replace(/-/g, "--")}.${path.slice(1).replace(/-/g, "--").replace(/\//g, "-")}`);
    expect(d.lxc("config", "device", "add", c, "bad", "unix-char").stderr).toContain(`Unix device entry is missing the required "source" or "path" property`);
    expect(d.lxc("config", "device", "add", c, "bad", "unix-char", "path=/tmp/missing").stderr).toContain("The required device path doesn't exist and the major and minor settings are not specified");

    ok(d.lxc("config", "device", "add", c, "test-dev1", "unix-char", `source=${src}`, "path=/tmp/testdev"));
    expect(inside("/tmp/testdev")).toBe("character special file 660 0 0");
    expect(hostStat(node("test-dev1", "/tmp/testdev"))).toBe("character special file 660 0 0");
    // same path again: its own node, no second mount
    ok(d.lxc("config", "device", "add", c, "test-dev2", "unix-char", `source=${src}`, "path=/tmp/testdev", "major=1", "minor=1", "mode=600"));
    expect(inside("/tmp/testdev")).toBe("character special file 660 0 0");
    expect(hostStat(node("test-dev2", "/tmp/testdev"))).toBe("character special file 600 1 1");
    ok(d.lxc("config", "device", "remove", c, "test-dev2"));
    expect(inside("/tmp/testdev")).toBe("character special file 660 0 0");
    expect(existsSync(node("test-dev2", "/tmp/testdev"))).toBe(false);
    // no source: major/minor/mode from the config
    ok(d.lxc("config", "device", "add", c, "test-dev4", "unix-char", "path=/tmp/testdev4", "major=0", "minor=2", "mode=777"));
    expect(inside("/tmp/testdev4")).toBe("character special file 777 0 2");
    ok(d.lxc("config", "device", "remove", c, "test-dev4"));
    expect(d.lxc("exec", c, "--", "ls", "/tmp/testdev4").code).not.toBe(0);
    // at start (not under /tmp: this image's init mounts a tmpfs there)
    ok(d.lxc("stop", "-f", c));
    ok(d.lxc("config", "device", "add", c, "test-dev3", "unix-char", `source=${src}`, "path=/opt/testdev3", "major=1", "minor=1", "mode=600"));
    ok(d.lxc("start", c));
    expect(inside("/opt/testdev3")).toBe("character special file 600 1 1");
    expect(hostStat(node("test-dev3", "/opt/testdev3"))).toBe("character special file 600 1 1");
    ok(d.lxc("delete", "-f", c));
    expect(existsSync(join(d.dir, "devices", c))).toBe(false);
    rmSync(src);
  });

  it("required=false follows the source in and out of the running container, after a restart too", async () => {
    const c = d.launch("dyn");
    const src = join(tmp, "dyn");
    const node = join(d.dir, "devices", c, "unix.test--dev--dynamic.tmp-testdev");
    const mounted = () => d.lxc("exec", c, "--", "mount").stdout.includes("/tmp/testdev");
    ok(d.lxc("config", "device", "add", c, "test-dev-dynamic", "unix-char", "required=false", `source=${src}`, "path=/tmp/testdev"));
    expect(existsSync(node)).toBe(false);
    mknod(src);
    await until(() => existsSync(node) && mounted());
    expect(d.lxc("exec", c, "--", "stat", "-c", "%F %a %t %T", "/tmp/testdev").stdout.trim()).toBe("character special file 660 0 0");
    rmSync(src);
    await until(() => !existsSync(node) && !mounted());
    expect(d.lxc("exec", c, "--", "ls", "/tmp/testdev").code).not.toBe(0);
    // the daemon restarts: the watch is taken up again
    await d.kill9();
    await d.restart();
    mknod(src);
    await until(() => existsSync(node) && mounted());
    // a source below a directory that does not exist yet
    rmSync(src);
    await until(() => !existsSync(node));
    const sub = join(tmp, "dir", "subdev");
    ok(d.lxc("config", "device", "set", c, "test-dev-dynamic", `source=${sub}`));
    mkdirSync(join(tmp, "dir"));
    mknod(sub);
    await until(() => existsSync(node) && mounted());
    rmSync(join(tmp, "dir"), { recursive: true });
    await until(() => !existsSync(node) && !mounted());
  });
});
