// Issue 19, input hardening through the API and the stock client: compressors and their flags,
// file push headers, config values that become liblxc lines. Each refusal changes nothing.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, realpathSync, statSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
let c: string;

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  d = await startInitialisedDaemon();
  c = d.launch("hard");
}, 120_000);

afterAll(async () => {
  if (d) await d.teardown();
});

const HOSTILE = ["gzip --help", "xz -T0 --files=/etc/passwd", "zstd --rm", "gzip -o /tmp/nodelxd-pwned", "sh -c id", "gzip\n-d"];

describe("compression_algorithm", () => {
  it("backups: refused with a 400 before any operation, nothing created", async () => {
    const ops = (await d.api("GET", "/1.0/operations")).body.metadata;
    for (const algo of HOSTILE) {
      const r = await d.api("POST", `/1.0/instances/${c}/backups`, { name: "x", compression_algorithm: algo });
      expect(r.status, algo).toBe(400);
      expect(r.body.error).toMatch(/^Invalid compression algorithm/);
    }
    expect((await d.api("GET", `/1.0/instances/${c}/backups`)).body.metadata).toEqual([]);
    // No operation was created (earlier ones may have been pruned meanwhile).
    const ids = (m: Record<string, string[]> | null) => Object.values(m ?? {}).flat();
    const before = new Set(ids(ops));
    expect(ids((await d.api("GET", "/1.0/operations")).body.metadata).filter((u) => !before.has(u))).toEqual([]);
    expect(existsSync("/tmp/nodelxd-pwned")).toBe(false);
    // A level flag is a legitimate value and works.
    const r = await d.api("POST", `/1.0/instances/${c}/backups`, { name: "lvl", compression_algorithm: "gzip -1", instance_only: true });
    expect(r.status, r.text).toBe(202);
    const op = (await d.api("GET", `${r.body.operation}/wait?timeout=60`)).body.metadata;
    expect(op.status, op.err).toBe("Success");
    const file = await d.api("GET", `/1.0/instances/${c}/backups/lvl/export`);
    expect(Buffer.from(file.text, "latin1")[0]).toBe(0x1f);
    ok("query", "-X", "DELETE", `/1.0/instances/${c}/backups/lvl`);
  }, 60_000);

  it("images (publish): refused with a 400, nothing run", async () => {
    for (const algo of HOSTILE) {
      const r = await d.api("POST", "/1.0/images", { source: { type: "instance", name: c }, compression_algorithm: algo });
      expect(r.status, algo).toBe(400);
      expect(r.body.error).toMatch(/^Invalid compression algorithm/);
    }
    const r = d.lxc("publish", c, "--force", "--compression", "zstd --rm");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Invalid compression algorithm "zstd --rm": flag "--rm" is not allowed for zstd');
    expect(existsSync("/tmp/nodelxd-pwned")).toBe(false);
  }, 60_000);

  it("server keys backups./images.compression_algorithm: refused, the old value kept", async () => {
    for (const key of ["backups.compression_algorithm", "images.compression_algorithm"]) {
      for (const algo of HOSTILE) {
        const r = await d.api("PATCH", "/1.0", { config: { [key]: algo } });
        expect(r.status, `${key}=${algo}`).toBe(400);
        expect(r.body.error).toContain(`cannot set '${key}'`);
      }
      expect((await d.api("GET", "/1.0")).body.metadata.config[key]).toBeUndefined();
      ok("config", "set", key, "xz -9");
      expect(ok("config", "get", key).trim()).toBe("xz -9");
      ok("config", "unset", key);
    }
  });
});

describe("file push headers", () => {
  const push = (headers: Record<string, string>, path = "/root/hdr") =>
    d.api("POST", `/1.0/instances/${c}/files?path=${path}`, "data", { "Content-Type": "application/octet-stream", ...headers });

  it("refuses bad uid, gid, mode, type and write headers with a 400, writing nothing", async () => {
    const cases: [Record<string, string>, string][] = [
      [{ "X-LXD-uid": "-1" }, 'Invalid UID: strconv.ParseInt: parsing "-1": invalid syntax'],
      [{ "X-LXD-uid": "4294967296" }, 'Invalid UID: strconv.ParseInt: parsing "4294967296": value out of range'],
      [{ "X-LXD-uid": "abc" }, 'Invalid UID: strconv.ParseInt: parsing "abc": invalid syntax'],
      [{ "X-LXD-gid": "-5" }, "Invalid GID"],
      [{ "X-LXD-gid": "0x10" }, "Invalid GID"],
      [{ "X-LXD-mode": "99999" }, 'Invalid Mode: "99999"'],
      [{ "X-LXD-mode": "0o644" }, "Invalid Mode"],
      [{ "X-LXD-type": "fifo" }, "Bad file type: fifo"],
      [{ "X-LXD-write": "prepend" }, "Bad file write mode: prepend"],
    ];
    for (const [headers, message] of cases) {
      const r = await push(headers);
      expect(r.status, JSON.stringify(headers)).toBe(400);
      expect(r.body.error).toContain(message);
    }
    expect((await d.api("GET", `/1.0/instances/${c}/files?path=/root/hdr`)).status).toBe(404);
  });

  it("still applies good headers (as the stock client sends them)", async () => {
    const r = await push({ "X-LXD-uid": "1000", "X-LXD-gid": "1001", "X-LXD-mode": "0600" });
    expect(r.status, r.text).toBe(200);
    expect(ok("exec", c, "--", "stat", "-c", "%u %g %a", "/root/hdr").trim()).toBe("1000 1001 600");
  });
});

describe("config values that become liblxc lines", () => {
  it("refuses a newline in environment.* at config time (create, set, profile), not at start", async () => {
    const before = ok("config", "show", c);
    const r = await d.api("PATCH", `/1.0/instances/${c}`, { config: { "environment.FOO": "x\nlxc.apparmor.profile = unconfined" } });
    // LXD answers a refused instance config change with 500 (its update error is untyped).
    expect(r.status).toBe(500);
    expect(r.body.error).toContain('Invalid config: Invalid value for "environment.FOO"');
    expect(ok("config", "show", c)).toBe(before);
    const set = d.lxc("config", "set", c, "linux.sysctl.net.core.somaxconn", "1\n2");
    expect(set.code).not.toBe(0);
    expect(set.stderr).toContain("control characters");
    const n = d.instanceName("envnl");
    const create = await d.api("POST", "/1.0/instances", { name: n, source: { type: "image", alias: "busybox" }, config: { "environment.X": "a\rb" } });
    expect(create.status).toBe(400);
    expect((await d.api("GET", `/1.0/instances/${n}`)).status).toBe(404);
    const prof = d.lxc("profile", "set", "default", "environment.X", "a\nb");
    expect(prof.code).not.toBe(0);
    expect(ok("profile", "get", "default", "environment.X").trim()).toBe("");
    // A plain value still works and reaches the container.
    ok("config", "set", c, "environment.FOO", "a b=c");
    expect(ok("exec", c, "--", "sh", "-c", "echo $FOO").trim()).toBe("a b=c");
    ok("config", "unset", c, "environment.FOO");
  }, 60_000);

  it("refuses a newline in device values (a disk path would become a second mount entry)", async () => {
    const r = await d.api("PATCH", `/1.0/instances/${c}`, { devices: { evil: { type: "disk", source: "/tmp", path: "/mnt\nlxc.mount.entry = / mnt/host none rbind 0 0" } } });
    expect(r.status).not.toBe(200);
    expect(r.body.error).toContain('Device validation failed for "evil": Invalid value for "path": control characters');
    expect(JSON.parse(ok("query", `/1.0/instances/${c}`)).devices.evil).toBeUndefined();
  });

  it("refuses options and paths in linux.kernel_modules, and non-numbers in limits.kernel.*", () => {
    const r = d.lxc("config", "set", c, "linux.kernel_modules", "overlay,-r");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Invalid kernel module name "-r"');
    const k = d.lxc("config", "set", c, "limits.kernel.nofile", "10\nlxc.init.cmd = /bin/sh");
    expect(k.code).not.toBe(0);
    expect(readdirSync(join(d.dir, "containers"))).toContain(c);
  });
});

describe("slow and idle connections (LXD's ReadHeaderTimeout 3 s, IdleTimeout 30 s)", () => {
  let port = 0;
  beforeAll(async () => {
    port = 20000 + Math.floor(Math.random() * 20000);
    const r = await d.api("PATCH", "/1.0", { config: { "core.https_address": `127.0.0.1:${port}` } });
    expect(r.status, r.text).toBe(200);
  });
  afterAll(async () => {
    await d.api("PATCH", "/1.0", { config: { "core.https_address": "" } });
  });

  /** Milliseconds until the server closes `sock` (or `limit` passes: -1). */
  const closedAfter = (sock: Socket, limit: number) =>
    new Promise<number>((resolve) => {
      const t0 = Date.now();
      const timer = setTimeout(() => {
        sock.destroy();
        resolve(-1);
      }, limit);
      sock.on("error", () => {});
      sock.resume(); // read what the server sends (a 408), so its FIN is seen
      sock.once("close", () => {
        clearTimeout(timer);
        resolve(Date.now() - t0);
      });
    });

  it("closes a TCP connection that never starts the TLS handshake", async () => {
    const sock = netConnect({ host: "127.0.0.1", port });
    await new Promise((r) => sock.once("connect", r));
    const ms = await closedAfter(sock, 15_000);
    expect(ms).toBeGreaterThan(2_000);
    expect(ms).toBeLessThan(8_000);
  }, 20_000);

  it("closes a TLS connection that never finishes a request (slow headers), and many at once", async () => {
    const open = () =>
      new Promise<Socket>((resolve, reject) => {
        const s = tlsConnect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => resolve(s));
        s.once("error", reject);
      });
    const socks = await Promise.all(Array.from({ length: 50 }, open));
    for (const s of socks) s.write("GET /1.0 HTTP/1.1\r\nHost: x\r\n"); // and never the blank line
    const times = await Promise.all(socks.map((s) => closedAfter(s, 15_000)));
    for (const ms of times) {
      expect(ms).toBeGreaterThan(2_000);
      expect(ms).toBeLessThan(8_000);
    }
  }, 30_000);

  it("closes a unix socket connection that never finishes a request", async () => {
    const sock = netConnect(d.socket);
    await new Promise((r) => sock.once("connect", r));
    sock.write("GET /1.0 HTTP/1.1\r\n");
    const ms = await closedAfter(sock, 15_000);
    expect(ms).toBeGreaterThan(2_000);
    expect(ms).toBeLessThan(8_000);
  }, 20_000);

  it("serves a complete request, then closes the idle keep-alive connection after 30 s", async () => {
    const sock = netConnect(d.socket);
    await new Promise((r) => sock.once("connect", r));
    let got = "";
    sock.on("data", (b) => (got += b.toString()));
    sock.write("GET /1.0 HTTP/1.1\r\nHost: lxd\r\n\r\n");
    const ms = await closedAfter(sock, 45_000);
    expect(got).toMatch(/^HTTP\/1.1 200/);
    expect(ms).toBeGreaterThan(25_000);
    expect(ms).toBeLessThan(40_000);
  }, 60_000);
});

describe("custom volumes: security.unmapped (storage_unmapped), security.shifted", () => {
  it("an unmapped volume keeps host ids (root-owned shows as nobody inside); a normal one is shifted to the container", () => {
    const vu = d.instanceName("vunm");
    const vn = d.instanceName("vnorm");
    ok("storage", "volume", "create", "default", vu, "security.unmapped=true");
    ok("storage", "volume", "create", "default", vn);
    try {
      ok("storage", "volume", "attach", "default", vu, c, "/mnt/u");
      ok("storage", "volume", "attach", "default", vn, c, "/mnt/n");
      expect(ok("exec", c, "--", "stat", "-c", "%u:%g", "/mnt/u").trim()).toBe("65534:65534");
      expect(ok("exec", c, "--", "stat", "-c", "%u:%g", "/mnt/n").trim()).toBe("0:0");
      // Container root cannot write into the unmapped (host-root-owned, 0711/0755) volume root.
      expect(d.lxc("exec", c, "--", "touch", "/mnt/u/x").code).not.toBe(0);
      expect(d.lxc("exec", c, "--", "touch", "/mnt/n/x").code).toBe(0);
      ok("storage", "volume", "detach", "default", vu, c);
      ok("storage", "volume", "detach", "default", vn, c);
    } finally {
      d.lxc("storage", "volume", "detach", "default", vu, c);
      d.lxc("storage", "volume", "detach", "default", vn, c);
      d.lxc("storage", "volume", "delete", "default", vu);
      d.lxc("storage", "volume", "delete", "default", vn);
    }
  }, 60_000);

  it("security.shifted is a boolean, exclusive with security.unmapped (its mounts: disk-shift.test.ts)", () => {
    const v = d.instanceName("vshift");
    const r = d.lxc("storage", "volume", "create", "default", v, "security.shifted=maybe");
    expect(r.code).not.toBe(0);
    expect(d.lxc("storage", "volume", "show", "default", v).code).not.toBe(0);
    ok("storage", "volume", "create", "default", v, "security.shifted=true");
    expect(d.lxc("storage", "volume", "set", "default", v, "security.unmapped=true").stderr.trim()).toBe("Error: security.unmapped and security.shifted are mutually exclusive");
    ok("storage", "volume", "set", "default", v, "security.shifted=false");
    ok("storage", "volume", "delete", "default", v);
  });
});

describe("instance volume directories (0100, as LXD)", () => {
  /** Can an unprivileged host user (nobody) reach into the rootfs? */
  const nobodyCanRead = (path: string) => spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "cat", path]).status === 0;

  it("are 0100: owned by the container's root while running, by host root when stopped; no host user gets in", () => {
    for (const privileged of [false, true]) {
      const n = d.launch(privileged ? "dirpriv" : "dirunpriv", privileged ? { config: { "security.privileged": "true" } } : {});
      ok("exec", n, "--", "sh", "-c", "echo secret > /tmp/s && chmod 0644 /tmp/s && chmod 1777 /tmp");
      const vol = realpathSync(join(d.dir, "containers", n));
      const running = statSync(vol);
      expect(running.mode & 0o7777).toBe(0o100);
      expect(running.uid).toBe(privileged ? 0 : d.hostRoot(n).uid);
      expect(nobodyCanRead(join(vol, "rootfs", "tmp", "s"))).toBe(false);
      expect(nobodyCanRead(join(d.dir, "containers", n, "rootfs", "tmp", "s"))).toBe(false);
      // Everything that reads into the rootfs still works: exec, the file API, a restart (templates).
      expect(ok("file", "pull", `${n}/tmp/s`, "-").trim()).toBe("secret");
      ok("file", "push", "-", `${n}/root/pushed`, "--mode", "0600");
      ok("stop", "-f", n);
      const stopped = statSync(vol);
      expect([stopped.mode & 0o7777, stopped.uid, stopped.gid]).toEqual([0o100, 0, 0]);
      expect(nobodyCanRead(join(vol, "rootfs", "etc", "hostname"))).toBe(false);
      expect(ok("file", "pull", `${n}/etc/hostname`, "-").trim()).toBe(n);
      ok("start", n);
      expect(ok("exec", n, "--", "cat", "/etc/hostname").trim()).toBe(n);
      ok("delete", "-f", n);
      // Nothing of it is left in security/ (its seccomp policy goes with it, as LXD).
      expect(existsSync(join(d.dir, "security", "seccomp", n))).toBe(false);
    }
  }, 120_000);

  it("deleting an instance removes its seccomp policy from security/", () => {
    const n = d.launch("seccompdel", { config: { "security.syscalls.deny_compat": "true" } });
    expect(existsSync(join(d.dir, "security", "seccomp", n))).toBe(true);
    ok("delete", "-f", n);
    expect(existsSync(join(d.dir, "security", "seccomp", n))).toBe(false);
  });

  it("a newly created (never started) instance's directory is 0100 too", () => {
    const n = d.launch("dirnew", { init: true });
    const st = statSync(realpathSync(join(d.dir, "containers", n)));
    expect([st.mode & 0o7777, st.uid]).toEqual([0o100, 0]);
    ok("delete", n);
  });
});
