// The instance sftp endpoint, driven by OpenSSH's sftp client through an upgrade bridge.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, lstatSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ROOT, type TestDaemon } from "../helpers/daemon.js";
import { ID_BASE, rawContainer, type RawContainer } from "../helpers/raw-container.js";
import { clientEnv, lxcIn, startRawDaemon } from "../helpers/raw-daemon.js";

let c: RawContainer;
let d: TestDaemon;
let tmp: string;

beforeAll(async () => {
  c = rawContainer();
  c.start();
  d = await startRawDaemon(c);
  tmp = mkdtempSync("/tmp/nodelxd-test-sftp-");
  chmodSync(tmp, 0o755);
});

afterAll(async () => {
  await d?.stop();
  c?.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

function sftp(batch: string) {
  writeFileSync(join(tmp, "batch"), batch);
  const bridge = `${process.execPath} ${join(ROOT, "test/helpers/sftp-bridge.mjs")} ${d.socket} ${c.name}`;
  const r = spawnSync("sftp", ["-D", bridge, "-b", join(tmp, "batch")], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

test("without Upgrade: sftp, LXD's 400", async () => {
  const r = await d.api("GET", `/1.0/instances/${c.name}/sftp`);
  expect(r.status).toBe(400);
  expect(r.body.error).toBe("Missing or invalid upgrade header");
});

test("put, get, ls, mkdir, rename, symlink, chmod, rm through sftp", () => {
  writeFileSync(join(tmp, "up"), "uploaded\n");
  const r = sftp(
    [
      `put ${join(tmp, "up")} /root/up`,
      "mkdir /root/sdir",
      "rename /root/up /root/sdir/moved",
      "symlink /etc/hostname /root/slink",
      "chmod 600 /root/sdir/moved",
      `get /root/sdir/moved ${join(tmp, "down")}`,
      `get /root/slink ${join(tmp, "host-via-link")}`,
      "ls /etc",
    ].join("\n") + "\n",
  );
  expect(r.stderr).not.toMatch(/error|fail/i);
  expect(r.code).toBe(0);
  expect(readFileSync(join(tmp, "down"), "utf8")).toBe("uploaded\n");
  expect(readFileSync(join(tmp, "host-via-link"), "utf8")).toBe(`${c.name}\n`);
  expect(r.stdout).toContain("inittab");
  const sh = (cmd: string) => lxcIn(d, undefined, "exec", c.name, "--", "sh", "-c", cmd).stdout;
  expect(sh("stat -c '%u %g %a' /root/sdir/moved; readlink /root/slink; stat -c '%F' /root/sdir")).toBe("0 0 600\n/etc/hostname\ndirectory\n");
  expect(lstatSync(join(c.rootfs, "root/sdir")).uid).toBe(ID_BASE);
  expect(sftp("rm /root/sdir/moved\nrmdir /root/sdir\n").code).toBe(0);
  expect(sh("ls /root/sdir 2>&1 || echo gone")).toContain("gone");
});

test("symlinks to host paths do not lead out of the container", () => {
  const secretDir = mkdtempSync("/tmp/nodelxd-test-secret-");
  try {
    writeFileSync(join(secretDir, "secret"), "HOST-SECRET\n");
    symlinkSync(join(secretDir, "secret"), join(c.rootfs, "root/esc"));
    symlinkSync(secretDir, join(c.rootfs, "root/escdir"));
    writeFileSync(join(tmp, "pwn"), "PWNED\n");
    const r = sftp(`-get /root/esc ${join(tmp, "stolen")}\n-put ${join(tmp, "pwn")} /root/escdir/new\n-put ${join(tmp, "pwn")} /root/esc\n-get ../../../..${secretDir}/secret ${join(tmp, "stolen2")}\n`);
    expect(r.code).toBe(0);
    for (const f of ["stolen", "stolen2"]) {
      let content = "";
      try {
        content = readFileSync(join(tmp, f), "utf8");
      } catch {
        /* not fetched */
      }
      expect(content).not.toContain("HOST-SECRET");
    }
    expect(readFileSync(join(secretDir, "secret"), "utf8")).toBe("HOST-SECRET\n");
    expect(spawnSync("ls", [secretDir], { encoding: "utf8" }).stdout).toBe("secret\n");
  } finally {
    rmSync(secretDir, { recursive: true, force: true });
  }
});

const haveSshfs = spawnSync("sh", ["-c", "command -v sshfs"]).status === 0 && existsSync("/dev/fuse");

test.skipIf(!haveSshfs)("lxc file mount (stock client, sshfs): read, write, unmount on ctrl-c", async () => {
  const mnt = mkdtempSync("/tmp/nodelxd-test-mnt-");
  const p = spawn("lxc", ["file", "mount", `${c.name}/etc`, mnt], { env: clientEnv(d), stdio: ["ignore", "pipe", "pipe"] });
  try {
    for (let i = 0; i < 100 && !readdirSync(mnt).includes("hostname"); i++) await new Promise((r) => setTimeout(r, 100));
    expect(readdirSync(mnt)).toContain("inittab");
    expect(readFileSync(join(mnt, "hostname"), "utf8")).toBe(`${c.name}\n`);
    writeFileSync(join(mnt, "written"), "via-mount\n");
    expect(lxcIn(d, undefined, "exec", c.name, "--", "cat", "/etc/written").stdout).toBe("via-mount\n");
    p.kill("SIGINT");
    await new Promise((r) => p.once("exit", r));
    expect(spawnSync("mountpoint", ["-q", mnt]).status).not.toBe(0);
  } finally {
    if (p.exitCode === null) p.kill("SIGKILL");
    spawnSync("umount", ["-l", mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
});
