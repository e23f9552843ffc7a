// The contract every instance driver keeps, run over each driver on the real host
// (test/contract/<driver>-instance.test.ts calls testInstanceDriver). A driver is handed a
// volume directory holding the busybox test image's rootfs and must create, start, report
// state and usage, give exec/console/files an attach target, follow renames and forget the
// instance on delete, never touching the volume. Areas its `info` does not claim (freeze,
// live limits) are skipped.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { InitProcess, InstanceDriver, InstanceDriverDefinition, InstanceRef, StartSpec } from "../../src/instances/drivers/types.js";
import { runHelper } from "../../src/os/helper-process.js";
import { helperPath } from "../../src/os/native.js";
import { busyboxImage } from "../helpers/image.js";

export interface InstanceDriverTestOptions {
  definition: InstanceDriverDefinition;
  /** Skip the whole suite with this reason (tools or kernel support missing). */
  skip?: string;
}

export function testInstanceDriver(opts: InstanceDriverTestOptions): void {
  const info = opts.definition.info;
  describe.skipIf(!!opts.skip)(`instance driver contract: ${info.name}`, () => {
    let lxdDir: string;
    let volume: string;
    let driver: InstanceDriver;
    let init: InitProcess | undefined;
    // Host-global names (cgroups) carry the branch prefix and the pid.
    const ref: InstanceRef = { project: "ctproj", name: `instdrv${process.pid}` };
    const renamed: InstanceRef = { project: "ctproj", name: `instdrv${process.pid}b` };
    const spec = (): StartSpec => ({ volume, hostname: ref.name, architecture: "x86_64", config: { "security.privileged": "true", "security.devlxd": "false" }, idmap: [], devices: [] });

    beforeAll(async () => {
      expect(await opts.definition.unavailable()).toBeUndefined();
      lxdDir = mkdtempSync("/tmp/nodelxd-test-instdrv-");
      const paths = { shmounts: join(lxdDir, "shmounts"), security: join(lxdDir, "security"), devices: join(lxdDir, "devices") };
      driver = opts.definition.load({ lxdDir, paths, log: pino({ level: "silent" }) });
      volume = join(lxdDir, "storage-pools", "p", "containers", "ctproj_c");
      mkdirSync(volume, { recursive: true });
      execFileSync("tar", ["-xJf", busyboxImage(), "-C", volume]);
      // A file only the instance's filesystem has: exec proves it ran inside.
      writeFileSync(join(volume, "rootfs", "etc", "contract-marker"), `inside ${ref.name}\n`);
    });
    afterAll(async () => {
      if (!lxdDir) return;
      for (const r of [ref, renamed]) await driver?.stop(r, { force: true, timeout: 0 }).catch(() => {});
      await driver?.releaseHost?.().catch(() => {});
      rmSync(lxdDir, { recursive: true, force: true });
    });

    it("declares its info", () => {
      expect(info.name).toMatch(/^[a-z0-9-]+$/);
      expect(["container", "virtual-machine"]).toContain(info.type);
      expect(driver.info).toBe(info);
    });

    it("creates from a volume: the rootfs reachable, a log directory, nothing running", async () => {
      driver.create(ref, volume);
      driver.create(ref, volume); // idempotent
      expect(existsSync(join(driver.rootfs(ref), "bin", "busybox"))).toBe(true);
      expect(existsSync(driver.logDir(ref))).toBe(true);
      expect(driver.state(undefined)).toBe("Stopped");
      expect(await driver.runningInit(ref)).toBeUndefined();
      expect(driver.attach(ref).rootPath).toBe(driver.rootfs(ref));
    });

    it("starts: a live init, Running, usage counters", async () => {
      init = await driver.start(ref, spec());
      expect(init.pid).toBeGreaterThan(1);
      expect(driver.alive(init)).toBe(true);
      expect(driver.state(init)).toBe("Running");
      expect(await driver.runningInit(ref)).toEqual(init);
      const [usage] = await driver.usage([init]);
      expect(usage.processes).toBeGreaterThanOrEqual(1);
      expect(usage.memory.usage).toBeGreaterThan(0);
    });

    it("gives exec an attach target that runs a command inside", async () => {
      const target = driver.attach(ref, init);
      expect(target.rootPath).toBe(`/proc/${init!.pid}/root`);
      const { helper, args } = target.exec({ command: ["/bin/busybox", "cat", "/etc/contract-marker"], env: { PATH: "/bin" }, cwd: "/", user: 0, group: 0 });
      const res = await runHelper(helperPath(helper), helper, args);
      expect(res.exitCode, res.stderr).toBe(0);
      expect(res.stdout.trim()).toBe(`inside ${ref.name}`);
      const failing = target.exec({ command: ["/bin/busybox", "sh", "-c", "exit 7"], env: {}, cwd: "/", user: 0, group: 0 });
      expect((await runHelper(helperPath(failing.helper), failing.helper, failing.args)).exitCode).toBe(7);
    });

    it("gives the console a program found on this host", () => {
      const { program, args } = driver.attach(ref, init).console();
      expect(execFileSync("sh", ["-c", 'command -v "$1"', "sh", program], { encoding: "utf8" }).trim()).not.toBe("");
      expect(args.length).toBeGreaterThan(0);
    });

    it.skipIf(!info.freeze)("freezes and unfreezes", async () => {
      await driver.freeze!(init!);
      expect(driver.state(init)).toBe("Frozen");
      await driver.unfreeze!(init!);
      await expect.poll(() => driver.state(init)).toBe("Running");
    });

    it.skipIf(!info.liveLimits)("applies a live limit change, and refuses nothing it claims", async () => {
      await driver.updateLive(init!, {}, { "limits.processes": "500" });
      await driver.updateLive(init!, { "limits.processes": "500" }, {});
    });

    it("gives hot-plug to devices", () => {
      const hp = driver.hotplug(ref);
      expect(typeof hp.mount).toBe("function");
      expect(typeof hp.unmount).toBe("function");
    });

    it("stops: Stopped, nothing reported running, host state released", async () => {
      await driver.stop(ref, { force: false, timeout: 5 });
      expect(driver.alive(init)).toBe(false);
      expect(driver.state(init)).toBe("Stopped");
      expect(await driver.runningInit(ref)).toBeUndefined();
      driver.stopped(ref);
      await driver.stop(ref, { force: true, timeout: 0 }); // already stopped: no error
    });

    it("starts again and is killed by a forced stop", async () => {
      init = await driver.start(ref, spec());
      expect(driver.state(init)).toBe("Running");
      await driver.stop(ref, { force: true, timeout: 0 });
      expect(driver.state(init)).toBe("Stopped");
      driver.stopped(ref);
    });

    it("follows a rename, and forgets the instance on delete without touching the volume", async () => {
      driver.rename(ref, renamed);
      driver.create(renamed, volume);
      expect(existsSync(join(driver.rootfs(renamed), "bin", "busybox"))).toBe(true);
      expect(existsSync(driver.logDir(renamed))).toBe(true);
      driver.delete(renamed);
      expect(existsSync(driver.logDir(renamed))).toBe(false);
      expect(existsSync(driver.rootfs(renamed))).toBe(false);
      expect(readdirSync(join(volume, "rootfs"))).toContain("bin");
    });
  });
}
