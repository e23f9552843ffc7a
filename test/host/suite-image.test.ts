// The image that LXD's own test suite builds (test/deps/import-busybox: Python's tarfile, most
// members named rootfs/..., /rootfs/etc/inittab with a leading slash, no rootfs/ directory
// entry, metadata.yaml as JSON), uploaded as that script does (raw POST of the tarball on the
// unix socket, X-LXD-public), then launched; and a hostile variant refused with nothing kept.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
let tmp: string;
beforeAll(async () => {
  d = await startInitialisedDaemon();
  tmp = mkdtempSync("/tmp/nodelxd-test-suiteimg-");
}, 120_000);
afterAll(async () => {
  await d?.teardown();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// Written here in the manner of the suite's script (not copied from it).
const BUILD = String.raw`
import io, json, os, subprocess, sys, tarfile
out, hostile = sys.argv[1], sys.argv[2] == "1"
tar = tarfile.open(out, "w:")
def add(name, kind=tarfile.REGTYPE, data=None, link="", mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, link, mode
    if data is not None:
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    else:
        tar.addfile(ti)
with open("/bin/busybox", "rb") as f:
    add("rootfs/bin/busybox", data=f.read(), mode=0o755)
applets = subprocess.run(["/bin/busybox", "--list-full"], capture_output=True, text=True).stdout.split()
for p in applets:
    if p != "bin/busybox":
        add("rootfs/" + p, tarfile.SYMTYPE, link="/bin/busybox")
for d in ("dev", "mnt", "proc", "root", "sys", "tmp"):
    add("rootfs/" + d, tarfile.DIRTYPE, mode=0o755)
meta = {"architecture": os.uname()[4], "creation_date": 1600000000,
        "properties": {"os": "BusyBox", "architecture": os.uname()[4], "description": "suite-style", "name": "busybox"}}
add("metadata.yaml", data=json.dumps(meta, sort_keys=True, indent=4).encode() + b"\n")
add("/rootfs/etc/inittab", data=b"\n")
add("/rootfs/etc/suite-marker", data=b"leading-slash\n")
if hostile:
    add("/rootfs/../../escaped", data=b"x")
tar.close()
`;

function build(name: string, hostile: boolean): Buffer {
  const out = join(tmp, name);
  execFileSync("python3", ["-c", BUILD, out, hostile ? "1" : "0"]);
  execFileSync("xz", ["-T1", "-0", out]);
  return readFileSync(`${out}.xz`);
}

async function upload(body: Buffer) {
  const r = await d.api("POST", "/1.0/images", body, { "content-type": "application/octet-stream", "x-lxd-public": "1" });
  expect(r.status).toBe(202);
  return (await d.api("GET", `${r.body.operation}/wait?timeout=120`)).body.metadata;
}

describe("the upstream suite's image (leading-slash member names)", () => {
  it("imports over the API, and a container from it starts with the slash-named files in place", async () => {
    const body = build("good.tar", false);
    // Built with leading slashes, as the suite builds it (tar lists them as stored).
    const listing = execFileSync("tar", ["-tJf", join(tmp, "good.tar.xz")], { stdio: ["ignore", "pipe", "ignore"] }).toString();
    expect(listing).toContain("\n/rootfs/etc/inittab\n");
    const op = await upload(body);
    expect(op.status, op.err).toBe("Success");
    const fp = op.metadata.fingerprint as string;
    const img = await d.api("GET", `/1.0/images/${fp}`);
    expect(img.body.metadata.public).toBe(true);
    expect(img.body.metadata.properties.description).toBe("suite-style");
    expect(d.lxc("image", "alias", "create", "suiteimage", fp).code).toBe(0);

    const name = d.instanceName("suite");
    const launched = d.lxc("launch", "suiteimage", name, "-q");
    expect(launched.code, launched.stderr).toBe(0);
    expect(d.lxc("list", name, "-c", "s", "-f", "csv").stdout.trim()).toBe("RUNNING");
    expect(d.lxc("exec", name, "--", "cat", "/etc/suite-marker").stdout).toBe("leading-slash\n");
    expect(d.lxc("exec", name, "--", "readlink", "/bin/sh").stdout).toBe("/bin/busybox\n");
    // Nothing landed outside the container's rootfs.
    expect(existsSync(join(d.rootfs(name), "rootfs"))).toBe(false);
    expect(existsSync(join(d.dir, "containers", name, "etc"))).toBe(false);
  });

  it("still refuses an escape behind a leading slash, and keeps nothing", async () => {
    const before = readdirSync(join(d.dir, "images")).sort();
    const op = await upload(build("bad.tar", true));
    expect(op.status).toBe("Failure");
    expect(op.err).toMatch(/contains '\.\.'/);
    expect(readdirSync(join(d.dir, "images")).sort()).toEqual(before);
    expect(existsSync(join(d.dir, "escaped"))).toBe(false);
  });
});

describe("lxc launch IMAGE without a name (the suite's basic_usage)", () => {
  it("creates a randomly named instance, as LXD does", () => {
    const before = new Set(d.lxc("list", "-f", "csv", "-c", "n").stdout.split("\n").filter(Boolean));
    const r = d.lxc("init", "busybox");
    expect(r.code, r.stderr).toBe(0);
    const created = d.lxc("list", "-f", "csv", "-c", "n").stdout.split("\n").filter((n) => n && !before.has(n));
    expect(created).toHaveLength(1);
    expect(created[0]).toMatch(/^[a-z]+-[a-z]+$/);
    expect(r.stdout).toContain(`Instance name is: ${created[0]}`);
    expect(d.lxc("delete", created[0]).code).toBe(0);
  });
});

describe("volatile.cloud-init.instance-id (the suite's cloud_init)", () => {
  it("changes on rename, copy, cloud-init keys and NIC names; not on other device keys", () => {
    const a = d.instanceName("ci-a");
    const b = d.instanceName("ci-b");
    const get = (n: string) => d.lxc("config", "get", n, "volatile.cloud-init.instance-id").stdout.trim();
    expect(d.lxc("init", "busybox", a).code).toBe(0);
    expect(d.lxc("config", "device", "add", a, "eth0", "nic", "nictype=p2p", "name=eth0").code).toBe(0);
    const id1 = get(a);
    expect(id1).toMatch(/^[0-9a-f-]{36}$/);
    expect(d.lxc("rename", a, b).code).toBe(0);
    const id2 = get(b);
    expect(id2).not.toBe(id1);
    expect(d.lxc("copy", b, a).code).toBe(0);
    const id3 = get(a);
    expect(id3).not.toBe(id2);
    expect(d.lxc("config", "set", a, "cloud-init.user-data", "blah").code).toBe(0);
    const id4 = get(a);
    expect(id4).not.toBe(id3);
    expect(d.lxc("config", "device", "set", a, "eth0", "user.foo=bar").code).toBe(0);
    expect(get(a)).toBe(id4);
    expect(d.lxc("config", "device", "set", a, "eth0", "name=foo").code).toBe(0);
    expect(get(a)).not.toBe(id4);
  });
});

describe("lxc init IMAGE -t (instance types, the suite's basic_usage)", () => {
  it("sets LXD's limits for a custom type and refuses an unknown one", () => {
    const n = d.instanceName("limits");
    const r = d.lxc("init", "busybox", n, "-t", "c0.5-m0.2");
    expect(r.code, r.stderr).toBe(0);
    expect(d.lxc("config", "get", n, "limits.cpu").stdout.trim()).toBe("1");
    expect(d.lxc("config", "get", n, "limits.cpu.allowance").stdout.trim()).toBe("50%");
    expect(d.lxc("config", "get", n, "limits.memory").stdout.trim()).toBe("204MB");
    const bad = d.lxc("init", "busybox", d.instanceName("badtype"), "-t", "t2.micro");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("Provided instance type doesn't exist: t2.micro");
  });
});
