// Server-to-server copies cut short (issue #12's robustness): the target daemon killed with -9
// mid-transfer, the source daemon killed with -9 mid-transfer, and the target's pool running out
// of space. Each time the source is untouched (same tree, same state), the target keeps no half
// instance (at once, or after its restart), and the copy then succeeds. The source pool's
// `rsync.bwlimit` reaches the sending rsync (it also keeps each transfer long enough to cut).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { Remotes } from "../helpers/remotes.js";
import { treeHash } from "../helpers/tree-hash.js";

let src: InitialisedDaemon;
let dst: TestDaemon;
let remotes: Remotes;
let small = "";
const tag = Math.random().toString(36).slice(2, 6);
const octet = 100 + Math.floor(Math.random() * 150);
const S = `fs${tag}`;
const D = `fd${tag}`;
const NAME = "cut";
const DATA_MIB = 60;
const ok = (...args: string[]) => remotes.ok(...args);
const client = (...args: string[]) => remotes.run(...args);
const rootfs = (dir: string, name: string) => join(dir, "storage-pools", "default", "containers", name, "rootfs");
const names = async (remote: string) => (await ok("list", `${remote}:`, "--format", "csv", "-c", "n")).split("\n").filter(Boolean);
let hash = "";

beforeAll(async () => {
  remotes = new Remotes("/tmp/nodelxd-faults-home-");
  src = await startInitialisedDaemon();
  dst = await startDaemon();
  await remotes.addDefaultPool(dst.dir, true);
  await remotes.listen(S, src.dir, `127.0.1.${octet}:9510`);
  await remotes.listen(D, dst.dir, `127.0.1.${octet}:9511`);
  await ok("init", `${S}:busybox`, `${S}:${NAME}`, "-q");
  const data = join(rootfs(src.dir, NAME), "data");
  mkdirSync(data);
  for (let i = 0; i < DATA_MIB / 10; i++) writeFileSync(join(data, `f${i}`), randomBytes(10 << 20));
  await ok("snapshot", `${S}:${NAME}`, "s0");
  hash = treeHash(rootfs(src.dir, NAME));
  // ~4 s per transfer: long enough to cut it in the middle.
  await remotes.local(src.dir, "storage", "set", "default", "rsync.bwlimit", "15MB");
}, 300_000);

afterAll(async () => {
  await remotes?.deleteInstances();
  await src?.teardown().catch(() => {});
  await dst?.stop().catch(() => {});
  if (small) {
    execFileSync("umount", ["-l", small], { stdio: "ignore" });
    rmSync(small, { recursive: true, force: true });
  }
  remotes?.removeHome();
}, 180_000);

/** Bytes under a directory (0 if it is not there). */
function bytesUnder(dir: string): number {
  if (!existsSync(dir)) return 0;
  return Number(execFileSync("du", ["-sb", dir], { encoding: "utf8" }).split("\t")[0]);
}

async function until(cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The source's instance is as it was. */
async function sourceUntouched(): Promise<void> {
  expect(treeHash(rootfs(src.dir, NAME))).toBe(hash);
  expect((await ok("list", `${S}:${NAME}`, "--format", "csv", "-c", "s")).trim()).toBe("STOPPED");
  expect(JSON.parse(await ok("query", `${S}:/1.0/instances/${NAME}/snapshots`))).toEqual([`/1.0/instances/${NAME}/snapshots/s0`]);
}

/** The target has no trace of `name`: not listed, no volume, no snapshot volumes. */
async function nothingOnTarget(name: string, pool = "default", poolDir = join(dst.dir, "storage-pools", pool)): Promise<void> {
  expect(await names(D)).not.toContain(name);
  expect(existsSync(join(poolDir, "containers", name))).toBe(false);
  expect(existsSync(join(poolDir, "containers-snapshots", name))).toBe(false);
}

describe("a copy cut short", { timeout: 600_000 }, () => {
  it("the source pool's rsync.bwlimit reaches the sending rsync", async () => {
    const copy = client("copy", `${S}:${NAME}`, `${D}:bw`);
    let seen = "";
    await until(() => {
      for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
        let cmd: string[];
        try {
          cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
        } catch {
          continue;
        }
        const i = cmd.indexOf("--bwlimit");
        if (cmd[0].endsWith("rsync") && i > 0 && cmd.some((a) => a.startsWith(rootfs(src.dir, NAME).replace(/\/rootfs$/, "")))) seen = cmd[i + 1];
      }
      return seen !== "";
    });
    expect(seen).toBe("15MB");
    expect((await copy).status).toBe(0);
    await ok("delete", `${D}:bw`);
  });

  it("target killed with -9 mid-transfer: after its restart no half instance; the source is untouched; a new copy works", async () => {
    const copy = client("copy", `${S}:${NAME}`, `${D}:${NAME}`);
    await until(() => bytesUnder(join(dst.dir, "storage-pools/default/containers", NAME)) > 10 << 20);
    await dst.kill9();
    expect((await copy).status).not.toBe(0);
    // Its record and half volume are still on disk until the target starts again.
    expect(existsSync(join(dst.dir, "storage-pools/default/containers", NAME))).toBe(true);
    await dst.restart();
    await nothingOnTarget(NAME);
    await sourceUntouched();
    await ok("copy", `${S}:${NAME}`, `${D}:${NAME}`);
    expect(treeHash(rootfs(dst.dir, NAME))).toBe(hash);
    await ok("delete", `${D}:${NAME}`);
  });

  it("source killed with -9 mid-transfer: the target drops its half instance at once; after the source's restart it is untouched", async () => {
    const copy = client("copy", `${S}:${NAME}`, `${D}:${NAME}`);
    await until(() => bytesUnder(join(dst.dir, "storage-pools/default/containers", NAME)) > 10 << 20);
    await src.kill9();
    try {
      expect((await copy).status).not.toBe(0);
      await until(() => !existsSync(join(dst.dir, "storage-pools/default/containers", NAME)), 30_000);
      await nothingOnTarget(NAME);
    } finally {
      await src.restart();
    }
    await sourceUntouched();
  });

  it("target pool full: the copy fails with the disk's error, the target keeps nothing, the source is untouched", async () => {
    small = mkdtempSync("/tmp/nodelxd-faults-small-");
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${DATA_MIB / 2}m`, "tmpfs", small]);
    await remotes.local(dst.dir, "storage", "create", "small", "dir", `source=${small}`);
    const r = await client("copy", `${S}:${NAME}`, `${D}:${NAME}`, "-s", "small");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/No space left on device|ENOSPC/);
    await nothingOnTarget(NAME, "small", small);
    expect(bytesUnder(join(small, "containers"))).toBeLessThan(1 << 20);
    expect(statSync(small).isDirectory()).toBe(true);
    await sourceUntouched();
    await remotes.local(dst.dir, "storage", "delete", "small");
  });
});
