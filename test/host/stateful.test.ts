// Stateful stop, start and snapshots through CRIU (Debian's criu, driven by liblxc as LXD does),
// with the stock client on a real container. Where this kernel lets CRIU dump (`criu check`), the
// container stops into a dump and starts again from it; where it does not (this VM's 6.18 kernel:
// "vdso: Unexpected rt vDSO area bounds"), CRIU's own errors reach the client exactly as real
// LXD 5.0.2 words them, the container keeps running, and nothing is left behind.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

const criu = spawnSync("sh", ["-c", "command -v criu"], { encoding: "utf8" }).stdout.trim();
const criuWorks = criu !== "" && spawnSync(criu, ["check"], { encoding: "utf8" }).status === 0;

let d: InitialisedDaemon;
beforeAll(async () => {
  d = await startInitialisedDaemon();
});
afterAll(async () => {
  await d?.teardown();
});

const status = (name: string) => d.lxc("list", name, "--format", "csv", "-c", "s").stdout.trim();
const query = (path: string) => JSON.parse(d.lxc("query", path).stdout);
/** The failed operation's error after a PUT/POST the client would wait on. */
async function failure(method: string, path: string, body: unknown): Promise<string> {
  const r = await d.api(method, path, body);
  expect(r.status).toBe(202);
  const done = await d.api("GET", `${r.body.operation}/wait?timeout=60`);
  expect(done.body.metadata.status).toBe("Failure");
  return done.body.metadata.err as string;
}

describe("stateful start without a dump", () => {
  it("fails as LXD does, for a stopped instance that has no state, and a stopped one can't be snapshotted statefully", async () => {
    const c = d.launch("nostate", { init: true });
    expect(await failure("PUT", `/1.0/instances/${c}/state`, { action: "start", stateful: true })).toBe("Container has no existing state to restore");
    expect(await failure("POST", `/1.0/instances/${c}/snapshots`, { name: "s0", stateful: true })).toBe("Unable to create a stateful snapshot. The instance isn't running");
    expect(query(`/1.0/instances/${c}/snapshots`)).toEqual([]);
    expect(status(c)).toBe("STOPPED");
  });
});

describe.skipIf(criu === "")("stateful stop and snapshot through CRIU", () => {
  it.skipIf(criuWorks)("report CRIU's dump errors as LXD does where this kernel stops CRIU, and change nothing", () => {
    const c = d.launch("dumpfail");
    const stop = d.lxc("stop", "--stateful", c);
    expect(stop.code).not.toBe(0);
    const lines = stop.stderr.trim().split("\n");
    expect(lines[0]).toBe("Error: snapshot dump failed");
    // CRIU's own Error/Warn lines follow (timestamped as in its log), then the client's hint.
    expect(lines.slice(1, -1).length).toBeGreaterThan(0);
    for (const l of lines.slice(1, -1)) expect(l).toMatch(/^\(\d+\.\d+\) .*(Error|Warn)/);
    expect(lines.at(-1)).toBe(`Try \`lxc info --show-log ${c}\` for more info`);
    expect(status(c)).toBe("RUNNING");
    expect(query(`/1.0/instances/${c}`).stateful).toBe(false);
    expect(existsSync(join(d.dir, "storage-pools/default/containers", c, "state"))).toBe(false);
    // The CRIU log is kept with the instance's logs, as snapshot_dump_<time>.log.
    const logs = (query(`/1.0/instances/${c}/logs`) as string[]).map((u) => u.split("/").pop()!);
    const dumpLog = logs.find((l) => /^snapshot_dump_\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\.log$/.test(l));
    expect(dumpLog).toBeDefined();
    expect(d.lxc("query", `/1.0/instances/${c}/logs/${dumpLog}`).stdout).toContain("Error (criu/");

    const snap = d.lxc("snapshot", "--stateful", c, "s0");
    expect(snap.code).not.toBe(0);
    expect(snap.stderr.split("\n")[0]).toBe("Error: snapshot dump failed");
    expect(query(`/1.0/instances/${c}/snapshots`)).toEqual([]);
    expect(status(c)).toBe("RUNNING");
    // A live move to another pool stops through the same dump: it fails the same way and the
    // container stays where it was, running.
    expect(d.lxc("storage", "create", "stateful2", "dir").code).toBe(0);
    const move = d.lxc("move", c, "--storage", "stateful2");
    expect(move.code).not.toBe(0);
    expect(move.stderr.split("\n")[0]).toBe("Error: Migration operation failure: snapshot dump failed");
    expect(status(c)).toBe("RUNNING");
    expect(query(`/1.0/instances/${c}`).expanded_devices.root.pool).toBe("default");
    // A plain stop still works afterwards.
    expect(d.lxc("stop", "-f", c).code).toBe(0);
  });

  it.skipIf(!criuWorks)("stop into a dump and start from it (kernel lets CRIU dump)", () => {
    const c = d.launch("dumpok");
    expect(d.lxc("exec", c, "--", "sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $! > /tmp/pid").code).toBe(0);
    const pid = d.lxc("exec", c, "--", "cat", "/tmp/pid").stdout.trim();
    expect(d.lxc("stop", "--stateful", c).code).toBe(0);
    expect(status(c)).toBe("STOPPED");
    expect(query(`/1.0/instances/${c}`).stateful).toBe(true);
    expect(d.lxc("start", c).code).toBe(0);
    expect(query(`/1.0/instances/${c}`).stateful).toBe(false);
    expect(d.lxc("exec", c, "--", "sh", "-c", `kill -0 ${pid} && echo alive`).stdout.trim()).toBe("alive");
    expect(d.lxc("snapshot", "--stateful", c, "s0").code).toBe(0);
    expect(query(`/1.0/instances/${c}/snapshots/s0`).stateful).toBe(true);
    expect(d.lxc("storage", "create", "stateful3", "dir").code).toBe(0);
    expect(d.lxc("move", c, "--storage", "stateful3").code).toBe(0);
    expect(status(c)).toBe("RUNNING");
    expect(d.lxc("exec", c, "--", "sh", "-c", `kill -0 ${pid} && echo alive`).stdout.trim()).toBe("alive");
    expect(d.lxc("stop", "-f", c).code).toBe(0);
  });
});

describe("live migration source", () => {
  it("answers for a running container: LXD's error without CRIU; with it, a websocket operation with control, fs and criu secrets", async () => {
    const c = d.launch("live");
    const r = await d.api("POST", `/1.0/instances/${c}`, { migration: true, live: true });
    if (criu === "") expect([r.status, r.body.error]).toEqual([500, "Unable to perform container live migration. CRIU isn't installed on the source server"]);
    else {
      expect(r.status).toBe(202);
      expect(r.body.metadata.class).toBe("websocket");
      expect(Object.keys(r.body.metadata.metadata).sort()).toEqual(["control", "criu", "fs"]);
      // Nobody connects: it fails as LXD's does, and the container is left as it was.
      const done = await d.api("GET", `${r.body.operation}/wait?timeout=30`);
      expect([done.body.metadata.status, done.body.metadata.err]).toEqual(["Failure", "Timed out waiting for migration connections"]);
    }
    expect(status(c)).toBe("RUNNING");
    // A stopped container's source has no criu websocket.
    expect(d.lxc("stop", "-f", c).code).toBe(0);
    const stopped = await d.api("POST", `/1.0/instances/${c}`, { migration: true, live: true });
    expect(Object.keys(stopped.body.metadata.metadata).sort()).toEqual(["control", "fs"]);
    await d.api("DELETE", stopped.body.operation);
  });
});
