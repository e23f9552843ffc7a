// A profile changed under the instances that use it, as LXD's storage_profiles suite drives it:
// the root disk an instance takes from a profile stays, devices are checked over the expanded
// set (one root disk, one disk per path), failures of the users are reported with the profile
// saved, and running users take the change live.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}
const fails = (...args: string[]) => {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")} should fail`).not.toBe(0);
  return r.stderr;
};

beforeAll(async () => {
  d = await startInitialisedDaemon();
  ok("storage", "create", "pool2", "dir");
}, 120_000);

afterAll(async () => {
  if (d) await d.teardown();
});

describe("a profile's root disk under its instances", () => {
  it("cannot move or go while an instance relies on it, and can once each has its own", () => {
    ok("profile", "create", "rootp");
    ok("profile", "device", "add", "rootp", "rootfs", "disk", "path=/", "pool=default");
    const n = d.instanceName("rely");
    ok("init", "busybox", n, "-q", "--profile", "rootp");
    expect(fails("profile", "device", "remove", "rootp", "rootfs")).toContain("At least one instance relies on this profile's root disk device");
    expect(fails("profile", "device", "set", "rootp", "rootfs", "pool", "pool2")).toContain("At least one instance relies on this profile's root disk device");
    // Same pool: no change for the instance.
    ok("profile", "device", "set", "rootp", "rootfs", "pool", "default");
    // A second root disk on the instance is refused; one under the same name overrides.
    expect(fails("config", "device", "add", n, "root", "disk", "path=/", "pool=default")).toContain("More than one root device found");
    ok("config", "device", "add", n, "rootfs", "disk", "path=/", "pool=default");
    ok("profile", "device", "set", "rootp", "rootfs", "pool", "pool2");
    ok("profile", "device", "remove", "rootp", "rootfs");
    ok("delete", n);
    ok("profile", "delete", "rootp");
  }, 60_000);

  it("refuses two disks on one path in a profile, and reports the users a change breaks", async () => {
    ok("profile", "create", "dupp");
    ok("profile", "device", "add", "dupp", "d1", "disk", "path=/mnt", "source=/tmp");
    expect(fails("profile", "device", "add", "dupp", "d2", "disk", "path=/mnt", "source=/srv")).toContain('More than one disk device uses the same path "/mnt"');
    const n = d.launch("dupuser", { init: true });
    ok("profile", "add", n, "dupp");
    // Its own root disk (a copy of the default profile's), so the profile's can go again.
    ok("config", "device", "override", n, "root");
    // The profile gains a root disk of its own: saved, but the instance now has two.
    const err = fails("profile", "device", "add", "dupp", "r2", "disk", "path=/", "pool=default");
    expect(err).toContain("The following instances failed to update (profile change still saved):");
    expect(err).toContain(`- Project: default, Instance: ${n}: Invalid devices: Failed detecting root disk device: More than one root device found`);
    expect(JSON.parse(ok("query", "/1.0/profiles/dupp")).devices.r2).toEqual({ path: "/", pool: "default", type: "disk" });
    ok("profile", "device", "remove", "dupp", "r2");
    ok("delete", n);
    ok("profile", "delete", "dupp");
  }, 60_000);
});

describe("running users", () => {
  it("take a profile's limits change live", () => {
    ok("profile", "create", "livep");
    const n = d.launch("live", { init: true });
    ok("profile", "add", n, "livep");
    ok("start", n);
    const pid = Number(JSON.parse(ok("query", `/1.0/instances/${n}/state`)).pid);
    const pidsMax = () => {
      const cg = readFileSync(`/proc/${pid}/cgroup`, "utf8");
      const v1 = /^\d+:pids:(.*)$/m.exec(cg);
      const path = v1 ? `/sys/fs/cgroup/pids${v1[1]}/pids.max` : `/sys/fs/cgroup${/^0::(.*)$/m.exec(cg)![1]}/pids.max`;
      return readFileSync(path, "utf8").trim();
    };
    ok("profile", "set", "livep", "limits.processes", "77");
    expect(pidsMax()).toBe("77");
    ok("profile", "unset", "livep", "limits.processes");
    expect(pidsMax()).toBe("max");
    ok("delete", "-f", n);
    ok("profile", "delete", "livep");
  }, 60_000);
});

describe("used_by across projects", () => {
  it("lists the instances of projects that use the default project's profiles", () => {
    const proj = d.instanceName("noprof");
    ok("project", "create", proj, "-c", "features.profiles=false", "-c", "features.images=false");
    const n = d.instanceName("inproj");
    try {
      ok("init", "busybox", n, "-q", "--project", proj);
      const usedBy: string[] = JSON.parse(ok("query", "/1.0/profiles/default")).used_by;
      expect(usedBy).toContain(`/1.0/instances/${n}?project=${proj}`);
      // It counts for the guards too: the profile is in use.
      ok("profile", "create", "xproj");
      ok("profile", "add", n, "xproj", "--project", proj);
      expect(fails("profile", "delete", "xproj")).toContain("Profile is currently in use");
    } finally {
      d.lxc("delete", "-f", n, "--project", proj);
      d.lxc("profile", "delete", "xproj");
      d.lxc("project", "delete", proj);
    }
  }, 60_000);
});

describe("unsetting with the stock client (LXD's config_profiles steps)", () => {
  it("`device unset` removes the key (the client sends \"\"), and `profile assign c \"\"` leaves no profile", () => {
    ok("profile", "create", "unsetp");
    ok("profile", "device", "add", "unsetp", "eth9", "nic", "nictype=p2p", "limits.egress=100Mbit");
    ok("profile", "device", "unset", "unsetp", "eth9", "limits.egress");
    expect(ok("profile", "show", "unsetp")).not.toContain("limits.egress");
    const n = d.launch("unset", { init: true });
    ok("config", "device", "add", n, "root", "disk", "path=/", "pool=default", "size=1GiB");
    ok("config", "device", "unset", n, "root", "size");
    expect(ok("config", "device", "show", n)).not.toContain("size");
    ok("profile", "assign", n, "unsetp");
    expect(JSON.parse(ok("list", "-f", "json", n))[0].profiles).toEqual(["unsetp"]);
    ok("profile", "assign", n, "");
    expect(JSON.parse(ok("list", "-f", "json", n))[0].profiles).toEqual([]);
    ok("delete", n);
    ok("profile", "delete", "unsetp");
  });
});
