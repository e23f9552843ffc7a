// Restricted and limited projects, with the stock client and raw API calls: every restricted.*
// key of LXD 5.0.2 with an allowed and a refused case, checks run after profile expansion (and
// on profiles themselves), restore/copy/backup import, limits.* accounting, /state and rename.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";

let d: TestDaemon;
const tag = Math.random().toString(36).slice(2, 7);
const P = `pr${tag}`;
const NET = `nr${tag}`;
let scratch: string;

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** The error `lxc` prints (the command must fail). */
function refused(...args: string[]): string {
  const r = d.lxc(...args);
  expect(r.code, `lxc ${args.join(" ")} should fail`).not.toBe(0);
  return r.stderr.trim();
}

const q = (project: string) => `?project=${project}`;

/** POST /1.0/instances with source none: [status, error] of the request or of its operation. */
async function create(project: string, name: string, body: Record<string, unknown> = {}): Promise<[number, string]> {
  const r = await d.api("POST", `/1.0/instances${q(project)}`, { name, source: { type: "none" }, ...body });
  if (r.status !== 202) return [r.status, r.body.error];
  const op = (await d.api("GET", `${r.body.operation}/wait?timeout=60`)).body.metadata;
  return [op.status_code, op.err];
}

async function remove(project: string, name: string): Promise<void> {
  const r = await d.api("DELETE", `/1.0/instances/${name}${q(project)}`);
  if (r.status === 202) await d.api("GET", `${r.body.operation}/wait?timeout=60`);
}

async function setProject(project: string, config: Record<string, string>): Promise<[number, string]> {
  const cur = (await d.api("GET", `/1.0/projects/${project}`)).body.metadata;
  const r = await d.api("PUT", `/1.0/projects/${project}`, { description: cur.description, config: { ...cur.config, ...config } });
  return [r.status, r.body.error];
}

/** Unset project keys (PUT without them). */
async function unsetProject(project: string, keys: string[]): Promise<void> {
  const cur = (await d.api("GET", `/1.0/projects/${project}`)).body.metadata;
  const config = { ...cur.config };
  for (const k of keys) delete config[k];
  expect((await d.api("PUT", `/1.0/projects/${project}`, { description: cur.description, config })).status).toBe(200);
}

let seq = 0;
/**
 * Creating an instance in P with `body` is refused with LXD's message (`%s` stands for
 * `on container "NAME" of project "P"`) and creates nothing; with `relax` set on the project
 * the same request works. The relaxed keys are unset again afterwards.
 */
async function refusedThenAllowed(body: Record<string, unknown>, message: string, relax: Record<string, string>): Promise<void> {
  const name = `c${tag}${seq++}`;
  const [status, error] = await create(P, name, body);
  expect([status, error]).toEqual([500, forbidden(name, message)]);
  expect((await d.api("GET", `/1.0/instances/${name}${q(P)}`)).status).toBe(404);
  expect(await setProject(P, relax)).toEqual([200, ""]);
  expect(await create(P, name, body)).toEqual([200, ""]);
  // The key cannot go back while an instance needs it relaxed.
  const back = await d.api("PUT", `/1.0/projects/${P}`, { description: "", config: Object.fromEntries(Object.entries((await d.api("GET", `/1.0/projects/${P}`)).body.metadata.config as Record<string, string>).filter(([k]) => !(k in relax))) });
  expect(back.status).toBe(500);
  expect(back.body.error).toMatch(new RegExp(`^Conflict detected when changing "restricted\\.[^"]+" in project "${P}": `));
  await remove(P, name);
  await unsetProject(P, Object.keys(relax));
}

const forbidden = (name: string, what: string) => `Failed checking if instance creation allowed: ${what.replace("%s", `on container "${name}" of project "${P}"`)}`;

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "nodelxd-restrict-"));
  d = await startDaemon();
  ok("storage", "create", "default", "dir");
  ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
  ok("image", "import", busyboxImage(), "--alias", "busybox");
  // A managed bridge with no addresses: no dnsmasq, no routes, nothing on the host's networks.
  ok("network", "create", NET, "ipv4.address=none", "ipv6.address=none");
  ok("project", "create", P, "-c", "restricted=true");
  ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default", "--project", P);
  ok("image", "import", busyboxImage(), "--alias", "busybox", "--project", P);
});

afterAll(async () => {
  if (d) {
    for (const p of [P, "default"]) {
      const list = (await d.api("GET", `/1.0/instances${q(p)}`)).body.metadata ?? [];
      for (const url of list) await remove(p, String(url).split("/").pop()!.split("?")[0]);
    }
    d.lxc("network", "delete", NET);
    await d.stop().catch(() => {});
  }
  rmSync(scratch, { recursive: true, force: true });
});

describe("restricted projects with the stock client", () => {
  it("refuses a privileged container, also when the key comes from a profile", async () => {
    const c = `c${tag}`;
    const msg = refused("launch", "busybox", c, "--project", P, "-c", "security.privileged=true");
    expect(msg).toBe(`Error: ${forbidden(c, 'Invalid value "true" for config "security.privileged" %s: Privileged containers are forbidden')}`);
    expect(ok("list", "--project", P, "-f", "csv")).toBe("");
    // Through a profile: the profile itself is checked (with the instances that use it) ...
    ok("profile", "create", "priv", "--project", P);
    expect(refused("profile", "set", "priv", "security.privileged=true", "--project", P)).toBe(
      `Error: Failed checking if profile update allowed: Invalid value "true" for config "security.privileged" on  "priv" of project "${P}": Privileged containers are forbidden`,
    );
    // ... and a profile set while the project was unrestricted keeps it from being restricted again.
    ok("project", "set", P, "restricted=false");
    ok("profile", "set", "priv", "security.privileged=true", "--project", P);
    expect(refused("project", "set", P, "restricted=true")).toBe(
      `Error: Conflict detected when changing "restricted" in project "${P}": Invalid value "true" for config "security.privileged" on  "priv" of project "${P}": Privileged containers are forbidden`,
    );
    ok("profile", "delete", "priv", "--project", P);
    ok("project", "set", P, "restricted=true");
  });

  it("checks the expanded config: under privilege=isolated a profile can make containers isolated", async () => {
    ok("project", "set", P, "restricted.containers.privilege=isolated");
    // Not setting the key at all is non-isolated (LXD 5.0.2 lets this through).
    expect(await create(P, "iso1")).toEqual([500, forbidden("iso1", 'Invalid value "" for config "security.idmap.isolated" %s: Non-isolated containers are forbidden')]);
    ok("profile", "create", "iso", "--project", P);
    ok("profile", "set", "iso", "security.idmap.isolated=true", "--project", P);
    expect(await create(P, "iso1", { profiles: ["default", "iso"] })).toEqual([200, ""]);
    // An instance key overriding the profile is refused, and so is turning the profile off under it.
    expect(await create(P, "iso2", { profiles: ["default", "iso"], config: { "security.idmap.isolated": "false" } })).toEqual([500, forbidden("iso2", 'Invalid value "false" for config "security.idmap.isolated" %s: Non-isolated containers are forbidden')]);
    expect(refused("profile", "set", "iso", "security.idmap.isolated=false", "--project", P)).toBe(
      `Error: Failed checking if profile update allowed: Invalid value "false" for config "security.idmap.isolated" on container "iso1" of project "${P}": Non-isolated containers are forbidden`,
    );
    await remove(P, "iso1");
    ok("profile", "delete", "iso", "--project", P);
    ok("project", "unset", P, "restricted.containers.privilege");
  });

  it("checks updates after expansion: a container cannot take a privileged profile or key", async () => {
    expect(await create(P, "u1")).toEqual([200, ""]);
    expect(refused("config", "set", "u1", "security.privileged=true", "--project", P)).toBe(
      `Error: Failed checking if instance update allowed: Invalid value "true" for config "security.privileged" on container "u1" of project "${P}": Privileged containers are forbidden`,
    );
    expect(refused("config", "set", "u1", "volatile.uuid=foo", "--project", P)).toBe(`Error: Changing "volatile.uuid" on container "u1" in project "${P}" is forbidden`);
    // A copy with a config override is a creation like any other.
    expect(refused("copy", "u1", "u2", "--project", P, "-c", "security.nesting=true")).toContain("Container nesting is forbidden");
    ok("copy", "u1", "u2", "--project", P);
    expect(JSON.parse(ok("list", "--project", P, "-f", "json")).map((i: { name: string }) => i.name)).toEqual(["u1", "u2"]);
    await remove(P, "u1");
    await remove(P, "u2");
  });

  it("a snapshot taken before a restriction cannot be restored past it; an imported backup is checked", async () => {
    ok("project", "set", P, "restricted.containers.nesting=allow", "restricted.snapshots=allow", "restricted.backups=allow");
    expect(await create(P, "r1", { config: { "security.nesting": "true" } })).toEqual([200, ""]);
    ok("snapshot", "r1", "s0", "--project", P);
    ok("config", "unset", "r1", "security.nesting", "--project", P);
    ok("project", "unset", P, "restricted.containers.nesting");
    expect(refused("restore", "r1", "s0", "--project", P)).toContain(`Failed checking if instance update allowed: Invalid value "true" for config "security.nesting" on container "r1" of project "${P}": Container nesting is forbidden`);
    expect((await d.api("GET", `/1.0/instances/r1${q(P)}`)).body.metadata.config["security.nesting"]).toBeUndefined();
    // A backup of a nesting container from the default project does not import into P.
    expect(await create("default", `b${tag}`, { config: { "security.nesting": "true" } })).toEqual([200, ""]);
    const file = join(scratch, "b.tar.gz");
    ok("export", `b${tag}`, file, "--instance-only");
    expect(refused("import", file, "--project", P)).toContain(`Invalid value "true" for config "security.nesting" on container "b${tag}" of project "${P}": Container nesting is forbidden`);
    expect((await d.api("GET", `/1.0/instances/b${tag}${q(P)}`)).status).toBe(404);
    ok("project", "set", P, "restricted.containers.nesting=allow");
    ok("import", file, "--project", P);
    await remove(P, `b${tag}`);
    await remove("default", `b${tag}`);
    await remove(P, "r1");
    await unsetProject(P, ["restricted.containers.nesting", "restricted.snapshots", "restricted.backups"]);
  });
});

describe("every restricted.* key: refused, then allowed", () => {
  it("restricted.containers.nesting", () => refusedThenAllowed({ config: { "security.nesting": "true" } }, 'Invalid value "true" for config "security.nesting" %s: Container nesting is forbidden', { "restricted.containers.nesting": "allow" }));

  it("restricted.containers.privilege", () => refusedThenAllowed({ config: { "security.privileged": "true" } }, 'Invalid value "true" for config "security.privileged" %s: Privileged containers are forbidden', { "restricted.containers.privilege": "allow" }));

  it("restricted.containers.lowlevel", () => refusedThenAllowed({ config: { "raw.lxc": "lxc.apparmor.profile = unconfined" } }, 'Use of low-level config "raw.lxc" %s is forbidden', { "restricted.containers.lowlevel": "allow" }));

  it("restricted.containers.interception", () =>
    refusedThenAllowed({ config: { "security.syscalls.intercept.mknod": "true" } }, 'Invalid value "true" for config "security.syscalls.intercept.mknod" %s: Container syscall interception is forbidden', { "restricted.containers.interception": "allow" }));

  it("restricted.virtual-machines.lowlevel (profiles need both low-level keys)", async () => {
    ok("project", "set", P, "restricted.containers.lowlevel=allow");
    expect(refused("profile", "set", "default", "raw.lxc=lxc.apparmor.profile = unconfined", "--project", P)).toBe(`Error: Failed checking if profile update allowed: Use of low-level config "raw.lxc" on profile "default" of project "${P}" is forbidden`);
    ok("project", "set", P, "restricted.virtual-machines.lowlevel=allow");
    ok("profile", "set", "default", "raw.lxc=lxc.apparmor.profile = unconfined", "--project", P);
    ok("profile", "unset", "default", "raw.lxc", "--project", P);
    await unsetProject(P, ["restricted.containers.lowlevel", "restricted.virtual-machines.lowlevel"]);
  });

  it("restricted.idmap.uid and restricted.idmap.gid", async () => {
    const body = { config: { "raw.idmap": "both 1000 1000" } };
    const [s1, e1] = await create(P, "m1", body);
    expect([s1, e1]).toEqual([500, forbidden("m1", 'Use of low-level "raw.idmap" element 0 %s is forbidden')]);
    ok("project", "set", P, "restricted.idmap.uid=1000");
    expect((await create(P, "m1", body))[1]).toBe(forbidden("m1", 'Use of low-level "raw.idmap" element 0 %s is forbidden'));
    ok("project", "set", P, "restricted.idmap.gid=1000-1001");
    const [s2, e2] = await create(P, "m1", body);
    // Past the restriction, the host ids must also be delegated to root (/etc/subuid) to start;
    // creation itself goes through.
    expect([s2, e2]).toEqual([200, ""]);
    expect(refused("project", "unset", P, "restricted.idmap.gid")).toContain(`Conflict detected when changing "restricted.idmap.gid" in project "${P}"`);
    await remove(P, "m1");
    await unsetProject(P, ["restricted.idmap.uid", "restricted.idmap.gid"]);
  });

  const devices: [string, Record<string, string>, string][] = [
    ["unix-char", { path: "/dev/ttyS0" }, "Unix character devices are forbidden"],
    ["unix-block", { path: "/dev/loop0" }, "Unix block devices are forbidden"],
    ["unix-hotplug", { vendorid: "1234" }, "Unix hotplug devices are forbidden"],
    ["usb", { vendorid: "1234" }, "USB devices are forbidden"],
    ["gpu", {}, "GPU devices are forbidden"],
    ["infiniband", { nictype: "physical", parent: "ib0" }, "Infiniband devices are forbidden"],
    ["pci", { address: "0000:00:01.0" }, "PCI devices are forbidden"],
    ["proxy", { listen: "tcp:127.0.0.1:1", connect: "tcp:127.0.0.1:2" }, "Proxy devices are forbidden"],
  ];
  for (const [type, config, message] of devices) {
    it(`restricted.devices.${type}`, async () => {
      const dev = { d: { type, ...config } };
      const [status, error] = await create(P, `d${tag}`, { devices: dev });
      expect([status, error]).toEqual([500, `Failed checking if instance creation allowed: Invalid device "d" on container "d${tag}" of project "${P}": ${message}`]);
      expect(refused("profile", "device", "add", "default", "d", type, ...Object.entries(config).map(([k, v]) => `${k}=${v}`), "--project", P)).toContain(`Invalid device "d" on profile "default" of project "${P}": ${message}`);
      ok("project", "set", P, `restricted.devices.${type}=allow`);
      // Allowed by the project: what remains is the device's own validation (which passes, or
      // refuses hardware this host lacks with a 400 of its own).
      try {
        const [s2, e2] = await create(P, `d${tag}`, { devices: dev });
        expect(e2).not.toContain("forbidden");
        if (type === "unix-char" || type === "unix-block" || type === "proxy") expect([s2, e2]).toEqual([200, ""]);
        else expect([200, 400]).toContain(s2);
      } finally {
        await remove(P, `d${tag}`);
        await unsetProject(P, [`restricted.devices.${type}`]);
      }
    });
  }

  it("restricted.devices.nic (managed by default, allow, block) and restricted.networks.access", async () => {
    await refusedThenAllowed({ devices: { e: { type: "nic", nictype: "p2p" } } }, 'Invalid device "e" %s: Only managed network devices are allowed', { "restricted.devices.nic": "allow" });
    const managed = { devices: { e: { type: "nic", network: NET } } };
    expect(await create(P, "n1", managed)).toEqual([200, ""]);
    expect(refused("project", "set", P, "restricted.devices.nic=block")).toBe(
      `Error: Conflict detected when changing "restricted.devices.nic" in project "${P}": Invalid device "e" on container "n1" of project "${P}": Network devices are forbidden`,
    );
    await remove(P, "n1");
    ok("project", "set", P, "restricted.devices.nic=block");
    expect((await create(P, "n1", managed))[1]).toBe(forbidden("n1", 'Invalid device "e" %s: Network devices are forbidden'));
    ok("project", "unset", P, "restricted.devices.nic");
    // networks.access: only the listed networks are usable, listed and shown.
    ok("project", "set", P, "restricted.networks.access=other");
    expect((await create(P, "n1", managed))[1]).toBe(forbidden("n1", 'Invalid device "e" %s: Network not allowed in project'));
    expect(ok("network", "list", "--project", P, "-f", "csv")).not.toContain(NET);
    expect(refused("network", "show", NET, "--project", P)).toBe("Error: Network not found");
    expect(refused("network", "set", NET, "user.x=1", "--project", P)).toBe("Error: Network not found");
    expect(refused("network", "delete", NET, "--project", P)).toBe("Error: Network not found");
    expect((await d.api("POST", `/1.0/networks${q(P)}`, { name: `x${tag}`, config: {} })).body).toMatchObject({ error_code: 403, error: "Network not allowed in project" });
    ok("project", "set", P, `restricted.networks.access=other,${NET}`);
    expect(ok("network", "list", "--project", P, "-f", "csv")).toContain(NET);
    expect(await create(P, "n1", managed)).toEqual([200, ""]);
    await remove(P, "n1");
    ok("project", "unset", P, "restricted.networks.access");
    // Unmanaged host interfaces are hidden from a restricted project unless nic=allow.
    const unmanaged = (await d.api("GET", "/1.0/networks?recursion=1")).body.metadata.filter((n: { managed: boolean }) => !n.managed).map((n: { name: string }) => n.name);
    expect(unmanaged.length).toBeGreaterThan(0);
    const inP = (await d.api("GET", `/1.0/networks${q(P)}&recursion=1`)).body.metadata.map((n: { name: string }) => n.name);
    expect(inP).toContain(NET);
    for (const n of unmanaged) expect(inP).not.toContain(n);
    expect((await d.api("GET", `/1.0/networks/${unmanaged[0]}${q(P)}`)).status).toBe(404);
  });

  it("restricted.devices.disk (managed by default, block, allow) and restricted.devices.disk.paths", async () => {
    const hostDisk = { devices: { h: { type: "disk", source: scratch, path: "/mnt" } } };
    await refusedThenAllowed(hostDisk, 'Invalid device "h" %s: Attaching disks not backed by a pool is forbidden', { "restricted.devices.disk": "allow" });
    ok("storage", "volume", "create", "default", `v${tag}`, "--project", P);
    const volDisk = { devices: { v: { type: "disk", pool: "default", source: `v${tag}`, path: "/data" } } };
    expect(await create(P, "k1", volDisk)).toEqual([200, ""]);
    await remove(P, "k1");
    ok("project", "set", P, "restricted.devices.disk=block");
    expect((await create(P, "k1", volDisk))[1]).toBe(forbidden("k1", 'Invalid device "v" %s: Disk devices are forbidden'));
    // The root disk is always allowed.
    expect(await create(P, "k1")).toEqual([200, ""]);
    await remove(P, "k1");
    ok("storage", "volume", "delete", "default", `v${tag}`, "--project", P);
    // disk.paths: only sources under the listed paths, compared after cleaning the path.
    const inside = join(scratch, "ok");
    const { mkdirSync, symlinkSync } = await import("node:fs");
    mkdirSync(join(inside, "sub"), { recursive: true });
    ok("project", "set", P, "restricted.devices.disk=allow", `restricted.devices.disk.paths=${inside}`);
    const at = (source: string) => ({ devices: { h: { type: "disk", source, path: "/mnt" } } });
    expect((await create(P, "k2", at(scratch)))[1]).toBe(forbidden("k2", `Invalid device "h" %s: Disk source path "${scratch}" not allowed`));
    expect((await create(P, "k2", at(`${inside}/../`)))[1]).toContain("not allowed");
    expect((await create(P, "k2", at(`${inside}x`)))[1]).toContain("not allowed");
    expect(await create(P, "k2", at(join(inside, "sub")))).toEqual([200, ""]);
    await remove(P, "k2");
    // shift cannot be combined with a restricted path (LXD's rule).
    expect((await create(P, "k2", { devices: { h: { type: "disk", source: join(inside, "sub"), path: "/mnt", shift: "true" } } }))[1]).toContain('The "shift" property cannot be used with a restricted source path');
    // A symlink inside the allowed path that leads out of it is refused when the device starts.
    symlinkSync(scratch, join(inside, "out"));
    expect(await create(P, "k3", at(join(inside, "out")))).toEqual([200, ""]);
    const start = refused("start", "k3", "--project", P);
    expect(start).toContain(`Disk source path "${join(inside, "out")}" not allowed by project for disk "h"`);
    await remove(P, "k3");
    await unsetProject(P, ["restricted.devices.disk", "restricted.devices.disk.paths"]);
  });

  it("restricted.snapshots and restricted.backups", async () => {
    expect(await create(P, "s1")).toEqual([200, ""]);
    expect(refused("snapshot", "s1", "--project", P)).toBe(`Error: Project "${P}" doesn't allow for snapshot creation`);
    expect(refused("export", "s1", join(scratch, "s1.tar.gz"), "--project", P)).toBe(`Error: Create instance backup: Project "${P}" doesn't allow for backup creation`);
    ok("project", "set", P, "restricted.snapshots=allow", "restricted.backups=allow");
    ok("snapshot", "s1", "snap0", "--project", P);
    ok("export", "s1", join(scratch, "s1.tar.gz"), "--project", P);
    await remove(P, "s1");
    await unsetProject(P, ["restricted.snapshots", "restricted.backups"]);
  });

  it("restricted.cluster.target and restricted.cluster.groups (a standalone server: targeting is refused either way)", async () => {
    for (const value of ["block", "allow"]) {
      ok("project", "set", P, `restricted.cluster.target=${value}`);
      const r = await d.api("POST", `/1.0/instances${q(P)}&target=node1`, { name: "t1", source: { type: "none" } });
      expect([r.status, r.body.error]).toEqual([400, "Target only allowed when clustered"]);
    }
    ok("project", "set", P, "restricted.cluster.groups=g1, g2");
    expect(refused("project", "set", P, "restricted.cluster.target=maybe")).toBe(`Error: Invalid project configuration key "restricted.cluster.target" value: Invalid value "maybe" (not one of [block allow])`);
    await unsetProject(P, ["restricted.cluster.target", "restricted.cluster.groups"]);
  });

  it("restricted.networks.uplinks and restricted.networks.subnets are validated (uplinks serve OVN networks, not available here)", async () => {
    ok("project", "set", P, `restricted.networks.uplinks=${NET}`);
    expect(refused("project", "set", P, "restricted.networks.subnets=10.0.0.0/24")).toBe(
      `Error: Invalid project configuration key "restricted.networks.subnets" value: Subnet "10.0.0.0/24" invalid, must be in the format of "<uplink network>:<subnet>"`,
    );
    expect(refused("project", "set", P, `restricted.networks.subnets=nosuch${tag}:10.0.0.0/24`)).toBe(`Error: Invalid project configuration key "restricted.networks.subnets" value: Invalid uplink network "nosuch${tag}": Network not found`);
    expect(refused("project", "set", P, `restricted.networks.subnets=${NET}:10.0.0.1/24`)).toBe(`Error: Invalid project configuration key "restricted.networks.subnets" value: Not an IP network address "10.0.0.1/24"`);
    expect(refused("project", "set", P, `restricted.networks.subnets=${NET}:10.0.0.0/24`)).toBe(`Error: Invalid project configuration key "restricted.networks.subnets" value: Uplink network "${NET}" doesn't contain "10.0.0.0/24" in its routes`);
    await unsetProject(P, ["restricted.networks.uplinks"]);
  });
});

describe("limits", () => {
  const L = `pl${tag}`;

  beforeAll(() => {
    ok("project", "create", L, "-c", "limits.containers=2", "-c", "limits.instances=3", "-c", "limits.cpu=4", "-c", "limits.memory=1GiB", "-c", "limits.processes=100", "-c", "limits.disk=5GiB", "-c", "limits.networks=2");
    ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default", "--project", L);
  });

  it("instances must set the limited keys, and the totals are enforced", async () => {
    expect((await create(L, "l1"))[1]).toBe(`Failed checking if instance creation allowed: Failed getting usage of project entities: Instance "l1" in project "${L}" has no "limits.cpu" config, either directly or via a profile`);
    ok("profile", "set", "default", "limits.cpu=2", "limits.memory=512MiB", "limits.processes=40", "--project", L);
    expect((await create(L, "l1"))[1]).toBe(`Failed checking if instance creation allowed: Failed getting usage of project entities: Instance "l1" in project "${L}" has no "size" config set on the root device either directly or via a profile`);
    ok("profile", "device", "set", "default", "root", "size=2GiB", "--project", L);
    expect(await create(L, "l1")).toEqual([200, ""]);
    expect(await create(L, "l2")).toEqual([200, ""]);
    // Both figures at the top: a third does not fit either count or cpu.
    expect((await create(L, "l3"))[1]).toBe(`Reached maximum number of instances of type "container" in project "${L}"`);
    ok("project", "set", L, "limits.containers=3");
    expect((await create(L, "l3"))[1]).toBe(`Failed checking if instance creation allowed: Reached maximum aggregate value "4" for "limits.cpu" in project "${L}"`);
    // Updates count too: more memory than is left is refused.
    expect(refused("config", "set", "l1", "limits.memory=768MiB", "--project", L)).toBe(`Error: Failed checking if instance update allowed: Reached maximum aggregate value "1GiB" for "limits.memory" in project "${L}"`);
    ok("config", "set", "l1", "limits.memory=256MiB", "--project", L);
    // A profile change that would push the total over is refused.
    expect(refused("profile", "set", "default", "limits.processes=60", "--project", L)).toBe(`Error: Failed checking if profile update allowed: Reached maximum aggregate value "100" for "limits.processes" in project "${L}"`);
    // Lowering a limit below the usage is refused.
    expect(refused("project", "set", L, "limits.memory=512MiB")).toBe(`Error: "limits.memory" is too low: current total is "768.0MiB"`);
    expect(refused("project", "set", L, "limits.instances=1")).toBe(`Error: Can't change limits.instances in project "${L}": "limits.instances" is too low: there currently are 2 total instances in project "${L}"`);
    expect(refused("project", "set", L, "limits.containers=1")).toBe(`Error: Can't change "limits.containers" in project "${L}": "limits.containers" is too low: there currently are 2 instances of type container in project "${L}"`);
    expect(refused("project", "set", L, "limits.cpu=0-1")).toBe(`Error: Invalid project configuration key "limits.cpu" value: Invalid value for uint32 "0-1": strconv.ParseUint: parsing "0-1": invalid syntax`);
  });

  it("GET /1.0/projects/{name}/state and lxc project info report usage and limits", async () => {
    const r = await d.api("GET", `/1.0/projects/${L}/state`);
    expect(r.status).toBe(200);
    expect(r.body.metadata).toEqual({
      resources: {
        containers: { Limit: 3, Usage: 2 },
        cpu: { Limit: 4, Usage: 4 },
        disk: { Limit: 5 * 2 ** 30, Usage: 4 * 2 ** 30 },
        instances: { Limit: 3, Usage: 2 },
        memory: { Limit: 2 ** 30, Usage: 768 * 2 ** 20 },
        networks: { Limit: 2, Usage: 0 },
        processes: { Limit: 100, Usage: 80 },
        "virtual-machines": { Limit: -1, Usage: 0 },
      },
    });
    const csv = ok("project", "info", L, "--format", "csv");
    for (const line of ["CONTAINERS,3,2", "CPU,4,4", "DISK,5.00GiB,4.00GiB", "INSTANCES,3,2", "MEMORY,1.00GiB,768.00MiB", "NETWORKS,2,0", "PROCESSES,100,80", "VIRTUAL-MACHINES,UNLIMITED,0"]) expect(csv).toContain(line);
    expect((await d.api("GET", "/1.0/projects/nosuch/state")).status).toBe(404);
    await remove(L, "l1");
    await remove(L, "l2");
  });

  it("limits.disk counts custom volumes, which must then have a size", () => {
    expect(refused("storage", "volume", "create", "default", `v${tag}`, "--project", L)).toBe(
      `Error: Failed checking if volume creation allowed: Failed getting usage of project entities: Custom volume "v${tag}" in project "${L}" has no "size" config set`,
    );
    expect(refused("storage", "volume", "create", "default", `v${tag}`, "size=6GiB", "--project", L)).toBe(`Error: Failed checking if volume creation allowed: Reached maximum aggregate value "5GiB" for "limits.disk" in project "${L}"`);
    ok("storage", "volume", "create", "default", `v${tag}`, "size=2GiB", "--project", L);
    expect(refused("storage", "volume", "set", "default", `v${tag}`, "size=8GiB", "--project", L)).toBe(`Error: Failed checking if volume update allowed: Reached maximum aggregate value "5GiB" for "limits.disk" in project "${L}"`);
    expect(JSON.parse(ok("query", `/1.0/projects/${L}/state`)).resources.disk).toEqual({ Limit: 5 * 2 ** 30, Usage: 2 * 2 ** 30 });
    ok("storage", "volume", "delete", "default", `v${tag}`, "--project", L);
  });
});

describe("rename", () => {
  it("renames an empty project as LXD does, refuses the rest", async () => {
    const a = `pa${tag}`;
    const b = `pb${tag}`;
    ok("project", "create", a);
    ok("project", "create", b);
    expect(refused("project", "rename", a, "bad_name")).toBe("Error: Project names may not contain underscores");
    expect(refused("project", "rename", a, b)).toBe(`Error: A project named "${b}" already exists`);
    expect(refused("project", "rename", "default", "x")).toBe("Error: The 'default' project cannot be renamed");
    ok("project", "delete", b);
    ok("project", "rename", a, b);
    expect((await d.api("GET", `/1.0/projects/${a}`)).status).toBe(404);
    const g = (await d.api("GET", `/1.0/projects/${b}`)).body.metadata;
    expect(g.used_by).toEqual([`/1.0/profiles/default?project=${b}`]);
    // Its profiles went along; a project with an instance cannot be renamed.
    ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default", "--project", b);
    expect(await create(b, "e1")).toEqual([200, ""]);
    expect(refused("project", "rename", b, a)).toBe("Error: Only empty projects can be renamed");
    await remove(b, "e1");
    ok("project", "rename", b, a);
    ok("project", "delete", a);
  });
});

describe("limits.disk and images", () => {
  it("an image upload may not exceed what is left of limits.disk", async () => {
    const { statSync } = await import("node:fs");
    const size = statSync(busyboxImage()).size;
    const I = `pi${tag}`;
    ok("project", "create", I, `-c`, `limits.disk=${size - 1}B`);
    expect(refused("image", "import", busyboxImage(), "--project", I)).toMatch(new RegExp(`^Error: reached \\d+ bytes, exceeding quota of ${size - 1}$`));
    expect(ok("image", "list", "--project", I, "-f", "csv")).toBe("");
    ok("project", "set", I, `limits.disk=${size}B`);
    ok("image", "import", busyboxImage(), "--project", I, "--alias", "b");
    // Publishing writes an image too: what is left after the instances' root disks bounds it.
    ok("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default", "size=1MiB", "--project", I);
    ok("project", "set", I, `limits.disk=${2 ** 20 + 10000}B`);
    ok("init", "b", "pub1", "--project", I);
    expect(refused("publish", "pub1", "--project", I, "--alias", "pubimg")).toMatch(/^Error: reached \d+ bytes, exceeding quota of 10000$/);
    ok("project", "set", I, "limits.disk=100MiB");
    ok("publish", "pub1", "--project", I, "--alias", "pubimg");
    ok("delete", "pub1", "--project", I);
    ok("image", "delete", "pubimg", "--project", I);
    ok("image", "delete", "b", "--project", I);
    ok("project", "delete", I);
  });
});

describe("features.storage.volumes=false", () => {
  it("puts a project's custom volumes in the default project, so the project stays empty", () => {
    const v = `pv${tag}`;
    ok("project", "create", v, "-c", "features.storage.volumes=false");
    ok("storage", "volume", "create", "default", `vol${tag}`, "--project", v);
    expect(ok("storage", "volume", "list", "default", "-f", "csv", "-c", "n")).toContain(`vol${tag}`);
    expect(ok("storage", "volume", "show", "default", `vol${tag}`, "--project", v)).toContain(`name: vol${tag}`);
    ok("project", "delete", v);
    ok("storage", "volume", "delete", "default", `vol${tag}`);
  });
});
