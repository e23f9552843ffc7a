// Issue 19: instance state changes are serialised per instance, and a daemon killed with -9 in
// the middle of a start or stop is reconciled at restart from what liblxc reports, so the row
// and the process always agree. Real containers, the real lxc client, kill -9 of the daemon.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;

beforeAll(async () => {
  d = await startInitialisedDaemon();
}, 120_000);

afterAll(async () => {
  if (d) await d.teardown();
});

/** liblxc's own view: the init pid of a running container, or 0. */
function liblxcPid(name: string): number {
  const r = spawnSync("lxc-info", ["-n", name, "-P", join(d.dir, "containers"), "-p", "-H"], { encoding: "utf8" });
  return Number(r.stdout.trim()) || 0;
}

/** The API's view and liblxc's must agree: Running with liblxc's pid, or Stopped and no process. */
async function expectAgreement(name: string): Promise<"Running" | "Stopped"> {
  const state = (await d.api("GET", `/1.0/instances/${name}/state`)).body.metadata;
  const pid = liblxcPid(name);
  if (state.status === "Running") {
    expect(state.pid).toBeGreaterThan(0);
    expect(state.pid).toBe(pid);
    expect(existsSync(`/proc/${state.pid}`)).toBe(true);
  } else {
    expect(state.status).toBe("Stopped");
    expect(state.pid).toBe(0);
    expect(pid).toBe(0);
  }
  const inst = (await d.api("GET", `/1.0/instances/${name}`)).body.metadata;
  expect(inst.status).toBe(state.status);
  return state.status;
}

const putState = (name: string, action: string) => d.api("PUT", `/1.0/instances/${name}/state`, { action, timeout: 10, force: true });
const waitOp = async (op: string) => (await d.api("GET", `${op}/wait?timeout=60`)).body.metadata;

describe("concurrent state changes on one instance", () => {
  it("are serialised: every operation ends, and the row matches liblxc after each burst", async () => {
    const n = d.launch("conc", { init: true });
    const actions = ["start", "stop", "restart", "start", "restart", "stop", "start", "start", "restart", "stop", "restart", "start"];
    for (let round = 0; round < 3; round++) {
      const responses = await Promise.all(actions.map((a) => putState(n, a)));
      // LXD refuses at once what the current state makes pointless (400), else runs an operation.
      for (const r of responses) if (r.status !== 202) expect([r.status, r.body.error]).toEqual([400, expect.stringMatching(/already running|already stopped|is not running/)]);
      const ops = await Promise.all(responses.filter((r) => r.status === 202).map((r) => waitOp(r.body.operation)));
      for (const op of ops) {
        // Each either did its job or was refused for the state the previous one left.
        if (op.status !== "Success") expect(op.err).toMatch(/already running|already stopped|is not running/);
      }
      await expectAgreement(n);
    }
    // The instance is still usable both ways.
    if ((await expectAgreement(n)) === "Stopped") expect(d.lxc("start", n).code).toBe(0);
    expect(d.lxc("exec", n, "--", "true").code).toBe(0);
    expect(d.lxc("stop", "-f", n).code).toBe(0);
    await expectAgreement(n);
  }, 180_000);
});

describe("kill -9 of the daemon during a start or stop", () => {
  it("adopts a container liblxc runs but whose start was never recorded", async () => {
    const n = d.launch("unrec");
    const pid = liblxcPid(n);
    expect(pid).toBeGreaterThan(0);
    await d.kill9();
    // The row as a crash right after liblxc's start leaves it: no pid recorded, last power STOPPED.
    const db = new Database(join(d.dir, "database", "global", "db.bin"));
    db.prepare("UPDATE instances SET init_pid = 0, init_start = '' WHERE name = ?").run(n);
    db.close();
    await d.restart();
    expect(await expectAgreement(n)).toBe("Running");
    expect((await d.api("GET", `/1.0/instances/${n}/state`)).body.metadata.pid).toBe(pid);
    expect(d.lxc("exec", n, "--", "true").code).toBe(0);
    expect(d.lxc("stop", "-f", n).code).toBe(0);
    expect(await expectAgreement(n)).toBe("Stopped");
  }, 120_000);

  it("a stop finished by liblxc while the daemon was dead is recorded at restart", async () => {
    const n = d.launch("stopdead");
    await d.kill9();
    execFileSync("lxc-stop", ["-k", "-n", n, "-P", join(d.dir, "containers")]);
    await d.restart();
    expect(await expectAgreement(n)).toBe("Stopped");
    expect(d.lxc("start", n).code).toBe(0);
    expect(await expectAgreement(n)).toBe("Running");
    expect(d.lxc("stop", "-f", n).code).toBe(0);
  }, 120_000);

  it("after kills at varied points of starts and stops, the row and the process agree", async () => {
    const n = d.launch("crashy", { init: true });
    for (let i = 0; i < 8; i++) {
      const running = liblxcPid(n) > 0;
      const r = await putState(n, running ? "stop" : "start");
      expect(r.status, r.text).toBe(202);
      await new Promise((res) => setTimeout(res, 15 * i));
      await d.kill9();
      // A stop's lxc-stop may outlive the daemon: let liblxc settle before judging.
      spawnSync("lxc-wait", ["-n", n, "-P", join(d.dir, "containers"), "-s", "RUNNING|STOPPED", "-t", "10"]);
      await d.restart();
      await new Promise((res) => setTimeout(res, 300));
      const status = await expectAgreement(n);
      // And the next change works from whatever state that was.
      const next = await waitOp((await putState(n, status === "Running" ? "stop" : "start")).body.operation);
      expect(next.status, next.err).toBe("Success");
      await expectAgreement(n);
    }
    if (liblxcPid(n) > 0) expect(d.lxc("stop", "-f", n).code).toBe(0);
  }, 300_000);
});
