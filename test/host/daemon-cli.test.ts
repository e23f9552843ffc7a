// The daemon's own CLI as LXD's test suite calls it: `lxd --logfile F ''` in the foreground,
// waitready/shutdown, activateifneeded, recover, and patch.{local,global}.sql at start. Outputs
// and exit codes are checked against real LXD 5.0.2 where the two can be run side by side.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { tmpDirMaker } from "../helpers/tmp-dirs.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAIN, startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";

const tmpDir = tmpDirMaker();

/** `nodelxd ARGS` (or real `lxd` with real=true) with LXD_DIR=dir and the given stdin. */
function cli(dir: string, args: string[], input = "", real = false) {
  const [cmd, argv] = real ? ["lxd", args] : [process.execPath, [MAIN, ...args]];
  const r = spawnSync(cmd, argv, { env: { ...process.env, LXD_DIR: dir }, input, encoding: "utf8", timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

describe("lxd --logfile F '' (how the suite spawns the daemon)", () => {
  it("runs in the foreground as that pid, answers waitready --timeout=N, stops on shutdown", async () => {
    const dir = tmpDir("fg");
    const logfile = join(dir, "lxd.log");
    const p = spawn(process.execPath, [MAIN, "--logfile", logfile, ""], { env: { ...process.env, LXD_DIR: dir }, stdio: "ignore" });
    const exited = new Promise<number | null>((r) => p.once("exit", (code) => r(code)));
    try {
      const ready = cli(dir, ["waitready", "--timeout=60"]);
      expect(ready.code, ready.stderr).toBe(0);
      expect(existsSync(join(dir, "unix.socket"))).toBe(true);
      expect(p.exitCode).toBeNull();
      const down = cli(dir, ["shutdown"]);
      expect(down.code, down.stderr).toBe(0);
      expect(await exited).toBe(0);
      expect(existsSync(logfile)).toBe(true);
    } finally {
      if (p.exitCode === null) p.kill("SIGKILL");
    }
  }, 90_000);

  it("waitready and shutdown without a daemon: LXD's errors, exit 1", () => {
    const dir = tmpDir("nodaemon");
    const w = cli(dir, ["waitready", "--timeout=1"]);
    expect(w.code).toBe(1);
    expect(w.stderr).toBe(`Error: LXD still not running after 1s timeout (Get "http://unix.socket/1.0": dial unix ${dir}/unix.socket: connect: no such file or directory)\n`);
    const s = cli(dir, ["shutdown"]);
    expect(s.code).toBe(1);
    expect(s.stderr).toBe(`Error: Put "http://unix.socket/internal/shutdown?force=false": dial unix ${dir}/unix.socket: connect: no such file or directory\n`);
    // Real LXD words both the same way.
    expect(cli(dir, ["waitready", "--timeout=1"], "", true).stderr).toBe(w.stderr);
    expect(cli(dir, ["shutdown"], "", true).stderr).toBe(s.stderr);
  });
});

describe("patch.local.sql and patch.global.sql", () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startDaemon();
  }, 60_000);
  afterAll(async () => {
    await d?.stop();
  });

  it("a failing patch.global.sql stops the start with LXD's error and changes nothing (database_restore)", async () => {
    expect(d.lxc("config", "set", "core.https_allowed_credentials", "true").code).toBe(0);
    await d.kill9();
    const patch = join(d.dir, "database", "patch.global.sql");
    writeFileSync(patch, "UPDATE config SET value='false' WHERE key='core.https_allowed_credentials';\nINSERT INTO broken(n) VALUES(1);\n");
    const r = spawnSync(process.execPath, [MAIN, "--logfile", join(d.dir, "lxd.log"), ""], { env: { ...process.env, LXD_DIR: d.dir }, encoding: "utf8", timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`Error: Failed to initialize global database: failed to ensure schema: failed to execute queries from ${patch}: no such table: broken\n`);
    expect(existsSync(patch)).toBe(true);
    expect(existsSync(join(d.dir, "database", "global.bak"))).toBe(true);
    // The suite's restore steps, then a start with the value as it was.
    rmSync(patch);
    rmSync(join(d.dir, "database", "global"), { recursive: true, force: true });
    expect(spawnSync("cp", ["-a", join(d.dir, "database", "global.bak"), join(d.dir, "database", "global")]).status).toBe(0);
    await d.restart();
    expect(d.lxc("config", "get", "core.https_allowed_credentials").stdout.trim()).toBe("true");
  }, 90_000);

  it("a good patch file runs once at start, each against its own database (local.db, global/db.bin), and is removed", async () => {
    await d.kill9();
    const db = join(d.dir, "database");
    writeFileSync(join(db, "patch.local.sql"), "INSERT INTO config (key, value) VALUES ('user.patched', 'local');\n");
    writeFileSync(join(db, "patch.global.sql"), "INSERT INTO config (key, value) VALUES ('user.patched', 'global');\n");
    await d.restart();
    expect(existsSync(join(db, "patch.local.sql"))).toBe(false);
    expect(existsSync(join(db, "patch.global.sql"))).toBe(false);
    expect(d.cli("sql", "local", "SELECT value FROM config WHERE key = 'user.patched'").stdout).toContain("| local |");
    expect(d.cli("sql", "global", "SELECT value FROM config WHERE key = 'user.patched'").stdout).toContain("| global |");
    d.cli("sql", "local", "DELETE FROM config WHERE key = 'user.patched'");
    d.cli("sql", "global", "DELETE FROM config WHERE key = 'user.patched'");
  }, 90_000);
});

describe("lxd activateifneeded", () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startDaemon();
  }, 60_000);
  afterAll(async () => {
    if (d) d.lxc("delete", "-f", "autostart");
    await d?.stop();
  });
  const activate = () => cli(d.dir, ["activateifneeded", "--debug"]);

  it("with no database: LXD's message, exit 0, quiet without --debug", () => {
    const dir = tmpDir("noact");
    const r = cli(dir, ["activateifneeded", "--debug"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^time="[^"]+" level=debug msg="No local database, so no need to start the daemon now"\n$/);
    expect(cli(dir, ["activateifneeded"]).stderr).toBe("");
  });

  it("reports LXD's reasons in LXD's order", () => {
    expect(activate().stderr).toContain("No need to start the daemon now");
    expect(d.lxc("config", "set", "core.https_address", "127.0.0.1:0").code).toBe(0);
    expect(activate().stderr).toContain("Daemon has core.https_address set, activating...");
    expect(d.lxc("config", "unset", "core.https_address").code).toBe(0);
    expect(d.lxc("storage", "create", "default", "dir").code).toBe(0);
    expect(d.lxc("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default").code).toBe(0);
    const init = d.lxc("init", "--empty", "autostart");
    expect(init.code, init.stderr).toBe(0);
    expect(activate().stderr).not.toContain("activating...");
    expect(d.lxc("config", "set", "autostart", "boot.autostart", "true").code).toBe(0);
    const r = activate();
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("Daemon has auto-started instances, activating...");
    expect(d.lxc("config", "unset", "autostart", "boot.autostart").code).toBe(0);
    expect(d.lxc("config", "set", "autostart", "snapshots.schedule", "* * * * *").code).toBe(0);
    expect(activate().stderr).toContain("Daemon has scheduled instance snapshots, activating...");
  });

  it("activating connects to the socket: an error when no daemon answers", async () => {
    await d.kill9();
    const r = activate();
    expect(r.stderr).toContain("Daemon has scheduled instance snapshots, activating...");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Error: Get "http://unix.socket/1.0": dial unix ${d.dir}/unix.socket: connect: connection refused\n`);
    await d.restart();
  }, 60_000);
});

describe("lxd recover", () => {
  let d: TestDaemon;
  let ref: ReferenceLxd;
  beforeAll(async () => {
    [d, ref] = await Promise.all([startDaemon(), startReferenceLxd()]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([d?.stop(), ref?.stop()]);
  });

  it("with nothing to recover: LXD's dialogue, byte for byte", () => {
    const ours = cli(d.dir, ["recover"], "no\nyes\n");
    const real = cli(dirname(ref.socket), ["recover"], "no\nyes\n", true);
    expect(real.code).toBe(0);
    expect(ours.code, ours.stderr).toBe(0);
    expect(ours.stdout).toBe(real.stdout);
    expect(ours.stdout).toContain("No unknown volumes found. Nothing to do.\n");
  });

  it("asks again on a bad answer, stops at the end of input", () => {
    const r = cli(d.dir, ["recover"], "maybe\n");
    expect(r.stderr).toContain("Invalid input, try again.\n\n");
    expect(r.stderr).toContain("Error: EOF");
    expect(r.code).toBe(1);
  });

  it("lists volumes on disk that the database does not know; an instance volume needs its backup.yaml", () => {
    expect(d.lxc("storage", "create", "pool1", "dir").code).toBe(0);
    expect(d.lxc("storage", "volume", "create", "pool1", "known").code).toBe(0);
    const root = join(d.dir, "storage-pools", "pool1");
    mkdirSync(join(root, "custom", "default_lost"));
    mkdirSync(join(root, "custom-snapshots", "default_lost", "snap0"), { recursive: true });
    mkdirSync(join(root, "containers", "gone"));
    // A container volume without backup.yaml stops the scan, as LXD's does.
    let r = cli(d.dir, ["recover"], "no\nyes\nyes\n");
    expect(r.stdout).toContain(' - EXISTING: "pool1" (backend="dir", source="' + root + '")\n');
    const yaml = join(root, "containers", "gone", "backup.yaml");
    expect(r.stderr).toBe(`Error: Failed validation request: Failed checking volumes on pool "pool1": Failed parsing backup file "${yaml}": open ${yaml}: no such file or directory\n`);
    expect(r.code).toBe(1);
    // One whose backup.yaml names another instance is refused too.
    writeFileSync(yaml, "container:\n  name: other\n");
    r = cli(d.dir, ["recover"], "no\nyes\nyes\n");
    expect(r.stderr).toContain('Instance "gone" in project "default" has a different instance name in its backup file ("other")');
    rmSync(join(root, "containers", "gone"), { recursive: true });
    r = cli(d.dir, ["recover"], "no\nyes\nno\n");
    expect(r.stdout).toContain("The following unknown volumes have been found:\n");
    expect(r.stdout).toContain(' - Custom "lost" on pool "pool1" in project "default" (includes 1 snapshots)\n');
    expect(r.stdout).not.toContain('"known"');
    // Declining changes nothing and exits 0.
    expect(r.code).toBe(0);
    expect(d.lxc("storage", "volume", "show", "pool1", "lost").code).not.toBe(0);
    // Accepting recreates the custom volume's records, its snapshot included.
    r = cli(d.dir, ["recover"], "no\nyes\nyes\n");
    expect(r.stdout).toContain("Starting recovery...\n");
    expect(r.code, r.stderr).toBe(0);
    expect(d.lxc("storage", "volume", "show", "pool1", "lost").code).toBe(0);
    expect(d.lxc("storage", "volume", "show", "pool1", "lost/snap0").code).toBe(0);
    expect(cli(d.dir, ["recover"], "no\nyes\n").stdout).toContain("No unknown volumes found. Nothing to do.\n");
  });
});

describe("lxd init, interactive (the suite's init_interactive answers)", () => {
  let d: TestDaemon;
  const bridge = `lxdt${Math.random().toString(36).slice(2, 8)}`;
  const subnet = `10.${230 + Math.floor(Math.random() * 20)}.${Math.floor(Math.random() * 250)}`;
  beforeAll(async () => {
    d = await startDaemon();
  }, 60_000);
  afterAll(async () => {
    if (d) {
      d.lxc("profile", "device", "remove", "default", "eth0");
      d.lxc("network", "delete", bridge);
    }
    await d?.stop();
  });

  it("asks LXD's questions and applies the answers", () => {
    // clustering, storage pool, name, backend, MAAS, new bridge, name, IPv4 (+NAT), IPv6, listener, image refresh, print
    const answers = ["no", "yes", "my-storage-pool", "dir", "no", "yes", bridge, `${subnet}.1/24`, "no", "none", "no", "no", "yes"].join("\n") + "\n";
    const r = cli(d.dir, ["init"], answers);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("Would you like to use LXD clustering? (yes/no) [default=no]: ");
    expect(r.stdout).toContain("What IPv4 address should be used? (CIDR subnet notation, “auto” or “none”) [default=auto]: ");
    expect(r.stdout).toContain("Would you like LXD to NAT IPv4 traffic on your bridge? [default=yes]: ");
    expect(r.stdout).toContain('Would you like a YAML "lxd init" preseed to be printed? (yes/no) [default=no]: config:\n  images.auto_update_interval: "0"\n');
    expect(d.lxc("info").stdout).toContain('images.auto_update_interval: "0"');
    expect(d.lxc("storage", "list", "-f", "csv").stdout).toContain("my-storage-pool,dir");
    const profile = d.lxc("profile", "show", "default").stdout;
    expect(profile).toContain("pool: my-storage-pool");
    expect(profile).toContain(`network: ${bridge}`);
    expect(d.lxc("network", "get", bridge, "ipv4.nat").stdout.trim()).toBe("false");
  });

  it("refuses clustering, re-asks a taken pool name, and stops at the end of input", () => {
    const c = cli(d.dir, ["init"], "yes\n");
    expect(c.code).toBe(1);
    expect(c.stderr).toBe("Error: Clustering is not supported by nodelxd\n");
    const taken = cli(d.dir, ["init"], "no\nyes\nmy-storage-pool\n");
    expect(taken.stdout).toContain('The requested storage pool "my-storage-pool" already exists. Please choose another name.\n');
    expect(taken.stderr).toBe("Error: EOF\n");
  });
});
