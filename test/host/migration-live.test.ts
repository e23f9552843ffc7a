// Live migration of a running container between servers (LXD 5.0.2's CRIU_RSYNC): the volume
// while it runs, the final CRIU dump on the `criu` websocket, the volume's last pass, then the
// target restores and only then does the source stop. Three servers: two nodelxd daemons and
// real LXD 5.0.2, driven by the stock client (`lxc copy`/`lxc move` of a running container are
// live unless `--stateless`). Where this kernel stops CRIU (this VM: "vdso: Unexpected rt vDSO
// area bounds"), CRIU's own error reaches the client as real LXD words it, in every mode and
// both directions with real LXD, the source keeps running and the target keeps nothing; where
// CRIU can dump (`criu check`), the container arrives running with its processes.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMigrationPeers, type MigrationPeers } from "../helpers/migration-peers.js";

const criu = spawnSync("sh", ["-c", "command -v criu"], { encoding: "utf8" }).stdout.trim();
const criuWorks = criu !== "" && spawnSync(criu, ["check"], { encoding: "utf8" }).status === 0;

let peers: MigrationPeers;
const tag = Math.random().toString(36).slice(2, 6);
const octet = 100 + Math.floor(Math.random() * 150);
const S = `ls${tag}`;
const D = `ld${tag}`;
const R = `lr${tag}`;
const ok = (...args: string[]) => peers.remotes.ok(...args);
const client = (...args: string[]) => peers.remotes.run(...args);
/** The on-disk volume of `name` on a remote's pool `default`. */
const volumeDir = (remote: string, name: string) => join(peers.remotes.dirs[remote], "storage-pools/default/containers", name);

beforeAll(async () => {
  const at = (n: number) => `127.0.1.${octet}:${9500 + n}`;
  peers = await startMigrationPeers("/tmp/nodelxd-live-home-", [S, D, R], [at(0), at(1), at(2)]);
}, 300_000);

afterAll(async () => {
  await peers?.stop();
}, 180_000);

const status = async (remote: string, name: string) => (await ok("list", `${remote}:${name}`, "--format", "csv", "-c", "s")).trim();
const names = async (remote: string) => (await ok("list", `${remote}:`, "--format", "csv", "-c", "n")).split("\n").filter(Boolean);
/** A running container with a process whose pid survives a live migration. */
async function running(remote: string, name: string): Promise<string> {
  await ok("launch", `${remote}:busybox`, `${remote}:${name}`, "-q");
  await ok("exec", `${remote}:${name}`, "--", "sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $! > /root/pid");
  return (await ok("exec", `${remote}:${name}`, "--", "cat", "/root/pid")).trim();
}
const checkpointDirs = () => readdirSync(tmpdir()).filter((n) => n.startsWith("nodelxd_checkpoint_") || n.startsWith("nodelxd_criu_action_"));

/** The client's error: its first line, then CRIU's own Error/Warn lines (timestamped, as in its log). */
function expectDumpFailure(stderr: string, first: string): void {
  const lines = stderr.trim().split("\n");
  expect(lines[0]).toBe(first);
  expect(lines.length).toBeGreaterThan(1);
  for (const l of lines.slice(1)) expect(l).toMatch(/^\(\d+\.\d+\) .*(Error|Warn)/);
  expect(stderr).toContain("Error (criu/");
}

describe.skipIf(criu === "" || criuWorks)("where this kernel stops CRIU: its error reaches the client, nothing changes", () => {
  const first: Record<string, string> = {
    pull: "Error: Failed instance creation: Error transferring instance data: migration dump failed",
    push: "Error: Failed instance migration: migration dump failed",
    relay: "Error: Error transferring instance data: migration dump failed",
  };

  for (const mode of ["pull", "push", "relay"]) {
    it(`nodelxd to nodelxd, lxc copy --mode ${mode}`, async () => {
      const name = `lc-${mode}`;
      await running(S, name);
      const before = checkpointDirs();
      const r = await client("copy", `${S}:${name}`, `${D}:${name}`, "--mode", mode);
      expect(r.status).not.toBe(0);
      expectDumpFailure(r.stderr, first[mode]);
      expect(await status(S, name)).toBe("RUNNING");
      expect(await names(D)).not.toContain(name);
      expect(existsSync(volumeDir(D, name))).toBe(false);
      expect(readdirSync(join(peers.dst.dir, "migration-state"), { withFileTypes: true }).length).toBe(0);
      expect(checkpointDirs()).toEqual(before);
      // The source's operation had LXD's three websockets, and kept the CRIU log as LXD names it.
      const ops = JSON.parse(await ok("query", `${S}:/1.0/operations?recursion=1`)) as { failure?: { description: string; metadata: Record<string, string> | null }[] };
      expect(ops.failure?.some((o) => o.description === "Migrating instance" && ["control", "criu", "fs"].every((k) => /^[0-9a-f]{64}$/.test(o.metadata?.[k] ?? "")))).toBe(true);
      const logs = (JSON.parse(await ok("query", `${S}:/1.0/instances/${name}/logs`)) as string[]).map((u) => u.split("/").pop()!);
      expect(logs.some((l) => /^migration_dump_\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\.log$/.test(l))).toBe(true);
      await ok("exec", `${S}:${name}`, "--", "true");
    });
  }

  it("nodelxd to nodelxd, lxc move of a running container (live), then --stateless works", async () => {
    const name = "lmove";
    await running(S, name);
    const r = await client("move", `${S}:${name}`, `${D}:${name}`);
    expect(r.status).not.toBe(0);
    expectDumpFailure(r.stderr, first.pull);
    expect(await status(S, name)).toBe("RUNNING");
    expect(await names(D)).not.toContain(name);
    await ok("move", `${S}:${name}`, `${D}:${name}`, "--stateless");
    expect(await status(D, name)).toBe("RUNNING");
    expect(await names(S)).not.toContain(name);
  });

  it("nodelxd to real LXD and real LXD to nodelxd (pull and push)", async () => {
    for (const [from, to, name] of [[S, R, "lo2r"], [R, S, "lr2o"]]) {
      await running(from, name);
      for (const mode of ["pull", "push"]) {
        const r = await client("copy", `${from}:${name}`, `${to}:${name}-${mode}`, "--mode", mode);
        expect(r.status).not.toBe(0);
        expectDumpFailure(r.stderr, first[mode]);
        expect(await names(to)).not.toContain(`${name}-${mode}`);
        // Ours keeps nothing on disk either (real LXD 5.0.2 leaves the target's volume directory).
        if (to === S) expect(existsSync(volumeDir(to, `${name}-${mode}`))).toBe(false);
      }
      expect(await status(from, name)).toBe("RUNNING");
    }
  });
});

describe.skipIf(!criuWorks)("where CRIU can dump: the container arrives running with its processes", () => {
  it("lxc copy and lxc move between nodelxd daemons, and to real LXD", async () => {
    const pid = await running(S, "lok");
    await ok("copy", `${S}:lok`, `${D}:lok`);
    expect(await status(D, "lok")).toBe("RUNNING");
    expect((await ok("exec", `${D}:lok`, "--", "sh", "-c", `kill -0 ${pid} && echo alive`)).trim()).toBe("alive");
    await ok("delete", "-f", `${D}:lok`);
    await ok("move", `${S}:lok`, `${D}:lok`);
    expect(await names(S)).not.toContain("lok");
    expect((await ok("exec", `${D}:lok`, "--", "sh", "-c", `kill -0 ${pid} && echo alive`)).trim()).toBe("alive");
    await ok("move", `${D}:lok`, `${R}:lok`);
    expect((await ok("exec", `${R}:lok`, "--", "sh", "-c", `kill -0 ${pid} && echo alive`)).trim()).toBe("alive");
  });
});
