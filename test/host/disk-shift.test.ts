// shift=true on disk devices (LXD 5.0.2): a host directory bound into an unprivileged container
// through an idmapped mount, so host ids appear as the container's own (host root is the
// container's root) instead of nobody. At start liblxc mounts it (`idmap=container`); hot-plug
// idmaps the bind itself. A filesystem the kernel cannot idmap (procfs) is refused with LXD's
// texts. Driven with the stock lxc against real containers.
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { native } from "../../src/os/native.js";

// Idmapped mounts of ext4/btrfs/tmpfs need Linux >= 5.12 (tmpfs 6.3); /tmp here is tested directly.
const probeDir = mkdtempSync("/tmp/nodelxd-test-shift-probe-");
const kernelIdmap = native.idmapMountError(probeDir) === "" && native.liblxcHasExtension("idmapped_mounts_v2");
rmSync(probeDir, { recursive: true, force: true });

let d: InitialisedDaemon;
let dir: string;
let c: string;

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed: ${r.stderr}`);
  return r.stdout;
}
const owners = (path: string) => ok(d.lxc("exec", c, "--", "stat", "-c", "%u:%g", path), `stat ${path}`).trim();

beforeAll(async () => {
  if (!kernelIdmap) return;
  d = await startInitialisedDaemon();
  dir = mkdtempSync("/tmp/nodelxd-test-shift-");
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, "user"), "u\n");
  chownSync(join(dir, "user"), 1000, 1000);
  writeFileSync(join(dir, "root"), "r\n");
  c = d.launch("sh");
}, 180_000);

afterAll(async () => {
  await d?.teardown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!kernelIdmap)("shift=true on a host directory (kernel and liblxc idmap mounts here)", () => {
  it("is refused on custom volumes, as LXD", () => {
    const r = d.lxc("config", "device", "add", c, "v", "disk", "pool=default", "source=nosuch", "path=/mnt/v", "shift=true");
    expect(r.stderr.trim()).toBe(
      `Error: Invalid devices: Device validation failed for "v": The "shift" property cannot be used with custom storage volumes (set "security.shifted=true" on the volume instead)`,
    );
  });

  it("hot-plugged: host ids appear as the container's, and files it writes are the host's", () => {
    ok(d.lxc("config", "device", "add", c, "d", "disk", `source=${dir}`, "path=/mnt/d", "shift=true"), "device add");
    expect(owners("/mnt/d/user")).toBe("1000:1000");
    expect(owners("/mnt/d/root")).toBe("0:0");
    ok(d.lxc("exec", c, "--", "sh", "-c", "echo hi > /mnt/d/made && chown 1000:1000 /mnt/d/user"), "write");
    expect(statSync(join(dir, "made")).uid).toBe(0);
    expect(statSync(join(dir, "user")).uid).toBe(1000);
    // An unshifted bind of the same directory shows the host ids as nobody.
    ok(d.lxc("config", "device", "add", c, "plain", "disk", `source=${dir}`, "path=/mnt/plain"), "plain add");
    expect(owners("/mnt/plain/root")).toBe("65534:65534");
    ok(d.lxc("config", "device", "remove", c, "plain"), "plain remove");
  });

  it("at start: liblxc mounts it idmapped (idmap=container)", () => {
    ok(d.lxc("restart", c, "-f"), "restart");
    expect(owners("/mnt/d/user")).toBe("1000:1000");
    expect(owners("/mnt/d/made")).toBe("0:0");
    expect(readConfig()).toMatch(/^lxc\.mount\.entry = .* mnt\/d none bind,create=dir,idmap=container 0 0$/m);
  });

  it("a filesystem the kernel cannot idmap (procfs) is refused with LXD's texts", () => {
    expect(native.idmapMountError("/proc/sys")).toBe("Invalid argument");
    expect(d.lxc("config", "device", "add", c, "p", "disk", "source=/proc/sys", "path=/mnt/p", "shift=true").stderr.trim()).toBe(
      "Error: Failed to start device \"p\": Required idmapping abilities not available",
    );
    ok(d.lxc("stop", c, "-f"), "stop");
    ok(d.lxc("config", "device", "add", c, "p", "disk", "source=/proc/sys", "path=/mnt/p", "shift=true"), "add while stopped");
    const start = d.lxc("start", c);
    expect(start.code).not.toBe(0);
    expect(start.stderr).toContain(`Failed to setup device mount "p": idmapping abilities are required but aren't supported on system`);
    ok(d.lxc("config", "device", "remove", c, "p"), "remove p");
    ok(d.lxc("start", c), "start");
  });
});

describe.skipIf(!kernelIdmap)("security.shifted=true on a custom volume (storage_shifted)", () => {
  it("keeps host ids on disk and shows the container's own through an idmapped mount", () => {
    const v = d.instanceName("vs");
    ok(d.lxc("storage", "volume", "create", "default", v, "security.shifted=true"), "volume create");
    try {
      ok(d.lxc("storage", "volume", "attach", "default", v, c, "/mnt/vs"), "attach (hot-plug)");
      ok(d.lxc("exec", c, "--", "sh", "-c", "echo x > /mnt/vs/f && chown 1000:1000 /mnt/vs/f && touch /mnt/vs/r"), "write");
      const host = join(d.dir, "storage-pools", "default", "custom", `default_${v}`);
      // Not shifted on disk: the container's ids are the host's ids.
      expect(statSync(join(host, "f")).uid).toBe(1000);
      expect(statSync(join(host, "r")).uid).toBe(0);
      expect(owners("/mnt/vs/f")).toBe("1000:1000");
      expect(d.lxc("storage", "volume", "set", "default", v, "security.shifted=false").stderr.trim()).toBe("Error: Cannot modify shifting with running instances using the volume");
      ok(d.lxc("restart", c, "-f"), "restart");
      expect(owners("/mnt/vs/r")).toBe("0:0");
      expect(readConfig()).toMatch(/ mnt\/vs none bind,create=dir,idmap=container 0 0$/m);
      ok(d.lxc("storage", "volume", "detach", "default", v, c), "detach");
    } finally {
      d.lxc("storage", "volume", "detach", "default", v, c);
      d.lxc("storage", "volume", "delete", "default", v);
    }
  });

  it("is shared by containers with different maps (privileged, isolated), all seeing the same ids (upstream's shift scenario)", () => {
    const v = d.instanceName("vs2");
    ok(d.lxc("storage", "volume", "create", "default", v, "security.shifted=true"), "volume create");
    const priv = d.launch("priv", { config: { "security.privileged": "true" } });
    const isol = d.launch("isol", { config: { "security.idmap.isolated": "true" } });
    const users = [c, priv, isol];
    try {
      for (const u of users) ok(d.lxc("config", "device", "add", u, "shifted", "disk", "pool=default", `source=${v}`, "path=/mnt/s"), `attach ${u}`);
      ok(d.lxc("exec", c, "--", "sh", "-c", "touch /mnt/s/a && chown 123:456 /mnt/s/a"), "write");
      for (const u of users) expect(ok(d.lxc("exec", u, "--", "stat", "-c", "%u:%g", "/mnt/s/a"), `stat in ${u}`).trim()).toBe("123:456");
      expect(statSync(join(d.dir, "storage-pools", "default", "custom", `default_${v}`, "a")).uid).toBe(123);
    } finally {
      for (const u of [priv, isol]) d.lxc("delete", "-f", u);
      d.lxc("config", "device", "remove", c, "shifted");
      d.lxc("storage", "volume", "detach", "default", v, c);
      d.lxc("storage", "volume", "delete", "default", v);
    }
  });
});

/** The liblxc config the daemon wrote for the container. */
function readConfig(): string {
  return readFileSync(join(d.dir, "logs", c, "lxc.conf"), "utf8");
}
