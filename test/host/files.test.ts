// File transfer against real instances (`lxc launch busybox`, unprivileged; running and stopped), with the stock client and the
// raw API, including attempts to escape the container root through symlinks and "..".
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync, chmodSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { clientEnv, lxcIn } from "../helpers/client.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

interface Inst {
  name: string;
  rootfs: string;
}
let running: Inst;
let stopped: Inst;
let d: InitialisedDaemon;
let tmp: string;
let secretDir: string;
const SECRET = "HOST-SECRET-CONTENT\n";

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-files-");
  secretDir = mkdtempSync("/tmp/nodelxd-test-secret-");
  chmodSync(secretDir, 0o755);
  writeFileSync(join(secretDir, "secret"), SECRET, { mode: 0o666 });
  d = await startInitialisedDaemon();
  const inst = (name: string) => ({ name, rootfs: d.rootfs(name) });
  running = inst(d.launch("run"));
  stopped = inst(d.launch("stopped"));
  expect(lxc("stop", "-f", stopped.name).code).toBe(0);
});

afterAll(async () => {
  await d?.teardown();
  rmSync(tmp, { recursive: true, force: true });
  rmSync(secretDir, { recursive: true, force: true });
});

const lxc = (...args: string[]) => lxcIn(d, undefined, ...args);
const sh = (cmd: string) => lxcIn(d, undefined, "exec", running.name, "--", "sh", "-c", cmd);
const files = (c: Inst, path: string) => `/1.0/instances/${c.name}/files?path=${encodeURIComponent(path)}`;

describe("lxc file (stock client)", () => {
  test("push and pull keep the content; pull to stdout", () => {
    const blob = randomBytes(100_000);
    writeFileSync(join(tmp, "blob"), blob);
    expect(lxc("file", "push", join(tmp, "blob"), `${running.name}/root/blob`).code).toBe(0);
    expect(lxc("file", "pull", `${running.name}/root/blob`, join(tmp, "back")).code).toBe(0);
    expect(readFileSync(join(tmp, "back")).equals(blob)).toBe(true);
    expect(sh("md5sum /root/blob").stdout.split(" ")[0]).toBe(createHash("md5").update(blob).digest("hex"));
    expect(lxc("file", "pull", `${running.name}/etc/hostname`, "-").stdout).toBe(`${running.name}\n`);
  });

  test("--uid/--gid/--mode are container ids, stored shifted on disk", async () => {
    writeFileSync(join(tmp, "f"), "data\n");
    expect(lxc("file", "push", "--uid", "1000", "--gid", "1001", "--mode", "0640", join(tmp, "f"), `${running.name}/root/f`).code).toBe(0);
    expect(sh("stat -c '%u %g %a' /root/f").stdout).toBe("1000 1001 640\n");
    const host = lstatSync(join(running.rootfs, "root/f"));
    const base = d.hostRoot(running.name);
    expect(base.uid).toBeGreaterThan(0);
    expect([host.uid, host.gid]).toEqual([base.uid + 1000, base.gid + 1001]);
    const r = await d.api("GET", files(running, "/root/f"));
    expect(r.status).toBe(200);
    expect(r.headers["x-lxd-uid"]).toBe("1000");
    expect(r.headers["x-lxd-gid"]).toBe("1001");
    expect(r.headers["x-lxd-mode"]).toBe("0640");
    expect(r.headers["x-lxd-type"]).toBe("file");
    expect(r.text).toBe("data\n");
  });

  test("push -r and pull -r, symlinks stay symlinks; push -p creates parents", () => {
    mkdirSync(join(tmp, "tree/sub/deeper"), { recursive: true });
    writeFileSync(join(tmp, "tree/a.txt"), "a\n");
    writeFileSync(join(tmp, "tree/sub/deeper/c.txt"), "c\n");
    symlinkSync("target-file", join(tmp, "tree/ln"));
    const pushed = lxc("file", "push", "-r", join(tmp, "tree"), `${running.name}/root/`);
    expect(pushed.stderr).toBe("");
    expect(pushed.code).toBe(0);
    expect(sh("cd /root/tree && find . -type f | sort && cat sub/deeper/c.txt && readlink ln").stdout).toBe("./a.txt\n./sub/deeper/c.txt\nc\ntarget-file\n");
    sh("mkdir -p /root/pd/x && echo one > /root/pd/1 && echo two > /root/pd/x/2");
    mkdirSync(join(tmp, "dst"));
    expect(lxc("file", "pull", "-r", `${running.name}/root/pd`, join(tmp, "dst/")).code).toBe(0);
    expect(readFileSync(join(tmp, "dst/pd/x/2"), "utf8")).toBe("two\n");
    expect(lxc("file", "push", "-p", join(tmp, "f"), `${running.name}/root/new/parents/f`).code).toBe(0);
    expect(sh("cat /root/new/parents/f").stdout).toBe("data\n");
  });

  test("delete, edit", async () => {
    sh("echo x > /root/gone");
    expect(lxc("file", "delete", `${running.name}/root/gone`).stderr).toBe("");
    expect(sh("test -e /root/gone").code).toBe(1);
    const missing = await d.api("DELETE", files(running, "/root/never-existed"));
    expect(missing.status).toBe(404);
    sh("echo hello > /root/edit-me");
    // Without a terminal, `lxc file edit` replaces the file with its stdin.
    writeFileSync(join(tmp, "edited"), "edited\n");
    const input = openSync(join(tmp, "edited"), "r");
    const r = spawnSync("lxc", ["file", "edit", `${running.name}/root/edit-me`], { env: clientEnv(d), stdio: [input, "pipe", "pipe"], encoding: "utf8" });
    closeSync(input);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(sh("cat /root/edit-me").stdout).toBe("edited\n");
  });
});

describe("files API", () => {
  test("GET: file headers, directory listing, symlink target, 404", async () => {
    const f = await d.api("GET", files(running, "/etc/hostname"));
    expect(f.text).toBe(`${running.name}\n`);
    expect(f.headers["content-type"]).toBe("application/octet-stream");
    expect([f.headers["x-lxd-uid"], f.headers["x-lxd-gid"], f.headers["x-lxd-mode"]]).toEqual(["0", "0", "0644"]);
    const dir = await d.api("GET", files(running, "/etc"));
    expect(dir.headers["x-lxd-type"]).toBe("directory");
    expect(dir.body.metadata).toContain("inittab");
    expect(dir.body.metadata).toContain("passwd");
    const ln = await d.api("GET", files(running, "/bin/sh"));
    expect(ln.headers["x-lxd-type"]).toBe("symlink");
    expect(ln.text).toBe("/bin/busybox");
    const nope = await d.api("GET", files(running, "/hx/nope"));
    expect(nope.status).toBe(404);
    expect(nope.body.error).toBe("Not Found");
    const noPath = await d.api("GET", `/1.0/instances/${running.name}/files`);
    expect(noPath.status).toBe(400);
    expect(noPath.body.error).toBe("Missing path argument");
    const head = await d.api("HEAD", files(running, "/etc/hostname"));
    expect(head.status).toBe(200);
    expect(head.headers["x-lxd-type"]).toBe("file");
    expect(head.text).toBe("");
  });

  test("POST: headers, append, symlink and directory types, bad headers", async () => {
    const post = (path: string, body: string, headers: Record<string, string>) => d.api("POST", files(running, path), body, headers);
    expect((await post("/root/g", "api-data", { "X-LXD-uid": "5", "X-LXD-gid": "6", "X-LXD-mode": "0600" })).body.type).toBe("sync");
    expect(sh("stat -c '%u %g %a' /root/g; cat /root/g").stdout).toBe("5 6 600\napi-data");
    await post("/root/g", "-more", { "X-LXD-write": "append" });
    expect(sh("cat /root/g; stat -c ' %u %a' /root/g").stdout).toBe("api-data-more 5 600\n");
    await post("/root/link", "/etc/hostname", { "X-LXD-type": "symlink" });
    expect(sh("readlink /root/link; cat /root/link").stdout).toBe(`/etc/hostname\n${running.name}\n`);
    await post("/root/dir", "", { "X-LXD-type": "directory", "X-LXD-mode": "0711", "X-LXD-uid": "7" });
    expect(sh("stat -c '%u %a %F' /root/dir").stdout).toBe("7 711 directory\n");
    expect((await post("/root/x", "", { "X-LXD-type": "bogus" })).body.error).toBe("Bad file type: bogus");
    expect((await post("/root/x", "", { "X-LXD-write": "bogus" })).body.error).toBe("Bad file write mode: bogus");
    expect((await post("/root/missing-parent/x", "x", {})).status).toBe(404);
  });

  test("POST overwrite keeps the inode and drops the old tail; large bodies and appends arrive whole", async () => {
    const post = (body: Buffer | string, headers: Record<string, string> = {}) => d.api("POST", files(running, "/root/big"), body, headers);
    const onHost = () => readFileSync(join(running.rootfs, "root/big"));
    const big = randomBytes(5 * 2 ** 20 + 123);
    expect((await post(big)).status).toBe(200);
    expect(onHost().equals(big)).toBe(true);
    const inode = lstatSync(join(running.rootfs, "root/big")).ino;
    expect((await post("short")).status).toBe(200);
    expect(onHost().toString()).toBe("short");
    const more = randomBytes(3 * 2 ** 20);
    expect((await post(more, { "X-LXD-write": "append" })).status).toBe(200);
    expect(onHost().equals(Buffer.concat([Buffer.from("short"), more]))).toBe(true);
    expect((await post("")).status).toBe(200);
    expect(onHost().length).toBe(0);
    // Rewritten in place, as LXD's O_TRUNC: hard links and open files see the new content.
    expect(lstatSync(join(running.rootfs, "root/big")).ino).toBe(inode);
  });

  test("an upload that breaks off leaves what arrived and none of the old content, and closes the file", async () => {
    const target = join(running.rootfs, "root/cut");
    expect((await d.api("POST", files(running, "/root/cut"), "B".repeat(100_000))).status).toBe(200);
    const sock = connect(d.socket);
    await new Promise((resolve) => sock.once("connect", resolve));
    sock.write(`POST ${files(running, "/root/cut")} HTTP/1.1\r\nHost: lxd\r\nTransfer-Encoding: chunked\r\n\r\n`);
    for (let i = 0; i < 10; i++) sock.write(`1000\r\n${"A".repeat(4096)}\r\n`);
    await new Promise((resolve) => sock.end(resolve));
    sock.destroy();
    const openFiles = () => readdirSync(`/proc/${d.proc.pid}/fd`).filter((fd) => {
      try {
        return readlinkSync(`/proc/${d.proc.pid}/fd/${fd}`).endsWith("/root/cut");
      } catch {
        return false;
      }
    });
    // The daemon notices the cut after the data that preceded it: wait for it to finish the request.
    const content = () => readFileSync(target, "latin1").replace(/(.)\1*/g, (run, c) => `${c}*${run.length} `);
    for (let i = 0; i < 100 && (openFiles().length || content() !== "A*40960 "); i++) await new Promise((r) => setTimeout(r, 50));
    expect(content()).toBe("A*40960 ");
    expect(openFiles()).toEqual([]);
  });

  test("exec and console refuse a stopped instance; sftp needs its upgrade header", async () => {
    for (const what of ["exec", "console"]) {
      const r = await d.api("POST", `/1.0/instances/${stopped.name}/${what}`, what === "exec" ? { command: ["true"] } : {});
      expect(r.status).toBe(400);
      expect(r.body.error).toBe("Instance is not running");
    }
    expect((await d.api("GET", `/1.0/instances/${running.name}/sftp`)).status).toBe(400);
    expect((await d.api("POST", `/1.0/instances/${running.name}/sftp`)).status).toBe(501);
  });

  test("a stopped instance's files are reachable too", async () => {
    const r = await d.api("GET", files(stopped, "/etc/hostname"));
    expect(r.text).toBe(`${stopped.name}\n`);
    await d.api("POST", files(stopped, "/root/pushed"), "offline", { "X-LXD-uid": "3" });
    const st = lstatSync(join(stopped.rootfs, "root/pushed"));
    expect(st.uid).toBe(d.hostRoot(stopped.name).uid + 3);
    expect(readFileSync(join(stopped.rootfs, "root/pushed"), "utf8")).toBe("offline");
    const r2 = await d.api("GET", files(stopped, "/root/pushed"));
    expect([r2.headers["x-lxd-uid"], r2.headers["x-lxd-gid"], r2.text]).toEqual(["3", "0", "offline"]);
  });

  test("a never-started instance: files are unshifted on disk until its first start", async () => {
    const fresh = d.launch("fresh", { init: true });
    const hostname = await d.api("GET", files({ name: fresh, rootfs: "" }, "/etc/hostname"));
    expect([hostname.status, hostname.headers["x-lxd-uid"], hostname.headers["x-lxd-gid"]]).toEqual([200, "0", "0"]);
    expect((await d.api("POST", files({ name: fresh, rootfs: "" }, "/root/early"), "before-start", { "X-LXD-uid": "3", "X-LXD-gid": "4" })).status).toBe(200);
    expect(lstatSync(join(d.rootfs(fresh), "root/early")).uid).toBe(3);
    expect(lxc("start", fresh).code).toBe(0);
    expect(lxcIn(d, undefined, "exec", fresh, "--", "stat", "-c", "%u %g", "/root/early").stdout).toBe("3 4\n");
    expect(lstatSync(join(d.rootfs(fresh), "root/early")).uid).toBe(d.hostRoot(fresh).uid + 3);
    expect(lxc("delete", "-f", fresh).code).toBe(0);
  });
});

describe("paths never leave the container root", () => {
  const hostSecret = () => join(secretDir, "secret");
  const depth = "../".repeat(12);

  function plantLinks(c: Inst): void {
    const root = join(c.rootfs, "root");
    for (const [name, target] of [
      ["esc-abs", hostSecret()],
      ["esc-rel", depth + hostSecret().slice(1)],
      ["esc-dir", secretDir],
      ["esc-dotdot", depth.slice(0, -1)],
      ["esc-proc", "/proc/1/root" + secretDir],
    ]) {
      rmSync(join(root, name), { force: true });
      symlinkSync(target, join(root, name));
    }
  }

  function hostUntouched(): void {
    expect(readFileSync(hostSecret(), "utf8")).toBe(SECRET);
    expect(readdirSync(secretDir)).toEqual(["secret"]);
  }

  for (const which of ["running", "stopped"] as const) {
    test(`${which}: reads through hostile symlinks and .. stay inside`, async () => {
      const c = which === "running" ? running : stopped;
      plantLinks(c);
      for (const path of ["/root/esc-abs", "/root/esc-rel", "/root/esc-dir/secret", "/root/esc-dotdot" + secretDir + "/secret", depth + secretDir.slice(1) + "/secret", "/root/esc-proc/secret", `/proc/1/root${secretDir}/secret`]) {
        const r = await d.api("GET", files(c, path));
        expect(r.text).not.toContain("HOST-SECRET");
        // Either nothing is there, or it is the link itself (its target as text).
        expect(r.status === 404 || r.status === 400 || r.headers["x-lxd-type"] === "symlink").toBe(true);
      }
      // ".." above the root lands on the container's own files.
      const up = await d.api("GET", files(c, depth + "etc/hostname"));
      expect(up.text).toBe(`${c.name}\n`);
    });

    test(`${which}: writes and deletes through hostile symlinks never touch the host`, async () => {
      const c = which === "running" ? running : stopped;
      plantLinks(c);
      for (const path of ["/root/esc-abs", "/root/esc-rel", "/root/esc-dir/secret", "/root/esc-dir/new", "/root/esc-dotdot" + secretDir + "/new", `/proc/1/root${secretDir}/new`, "/root/esc-proc/new"]) {
        await d.api("POST", files(c, path), "PWNED", {});
        await d.api("POST", files(c, path), "PWNED", { "X-LXD-write": "append" });
        await d.api("POST", files(c, path + "-d"), "", { "X-LXD-type": "directory" });
        await d.api("POST", files(c, path + "-l"), "/x", { "X-LXD-type": "symlink" });
        await d.api("DELETE", files(c, path));
        hostUntouched();
      }
      // Deleting the link removes the link, not what it points to.
      plantLinks(c);
      expect((await d.api("DELETE", files(c, "/root/esc-abs"))).status).toBe(200);
      expect(existsSync(join(c.rootfs, "root/esc-abs"))).toBe(false);
      hostUntouched();
    });
  }
});
