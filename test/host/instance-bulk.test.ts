// Instance behaviours the upstream suite (basic_usage, config_profiles, security_protection)
// checks with the stock client: `lxc start/stop --all` (PUT /1.0/instances), the root disk's
// pool fixed after creation, raw.lxc checked as liblxc loads it, and protected instances.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

const status = async (n: string) => (await d.api("GET", `/1.0/instances/${n}`)).body.metadata.status as string;

beforeAll(async () => {
  d = await startInitialisedDaemon();
}, 120_000);

afterAll(async () => {
  if (d) await d.teardown();
});

describe("bulk state changes (PUT /1.0/instances)", () => {
  it("starts and stops every instance of the project with lxc start/stop --all", async () => {
    const a = d.launch("bulk-a", { init: true });
    const b = d.launch("bulk-b", { init: true });
    ok("start", "--all");
    expect(await status(a)).toBe("Running");
    expect(await status(b)).toBe("Running");
    // A name and --all together are refused by the client; nothing is changed.
    expect(d.lxc("stop", "--all", a).code).not.toBe(0);
    expect(await status(a)).toBe("Running");
    ok("stop", "--all", "-f");
    expect(await status(a)).toBe("Stopped");
    expect(await status(b)).toBe("Stopped");
    ok("delete", a, b);
  }, 120_000);

  it("names only the instances it changes, and refuses an unknown action", async () => {
    const a = d.launch("bulk-c");
    const b = d.launch("bulk-d", { init: true });
    const res = await d.api("PUT", "/1.0/instances", { state: { action: "stop", force: true } });
    expect(res.status).toBe(202);
    expect(res.body.metadata.description).toBe("Stopping instance");
    expect(res.body.metadata.resources.instances).toEqual([`/1.0/instances/${a}`]);
    const done = await d.api("GET", `${res.body.operation}/wait?timeout=60`);
    expect(done.body.metadata.status).toBe("Success");
    expect(await status(a)).toBe("Stopped");
    expect(await status(b)).toBe("Stopped");
    const bad = await d.api("PUT", "/1.0/instances", { state: { action: "explode" } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe("Unknown action: 'explode'");
    ok("delete", a, b);
  }, 120_000);
});

describe("the root disk's pool", () => {
  it("cannot be changed by a config edit", () => {
    const n = d.launch("rootpool", { init: true });
    const r = d.lxc("config", "device", "override", n, "root", "pool=elsewhere");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Error: Cannot update root disk device pool name to "elsewhere"');
    expect(JSON.parse(ok("query", `/1.0/instances/${n}`)).devices).toEqual({});
    ok("delete", n);
  }, 60_000);
});

describe("raw.lxc", () => {
  it("is loaded into liblxc when set, so a key liblxc does not know is refused and not stored", () => {
    const n = d.launch("rawlxc", { init: true });
    const bad = d.lxc("config", "set", n, "raw.lxc", "lxc.notaconfigkey=invalid");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("Failed to load config file");
    expect(JSON.parse(ok("query", `/1.0/instances/${n}`)).config["raw.lxc"]).toBeUndefined();
    // LXD's own line rules.
    expect(d.lxc("config", "set", n, "raw.lxc", "a").stderr).toContain("Invalid raw.lxc line: a");
    expect(d.lxc("config", "set", n, "raw.lxc", "lxc.log.file=/tmp/x").stderr).toContain("Setting lxc.logfile is not allowed");
    expect(d.lxc("config", "set", n, "raw.lxc", "lxc.prlimit.nofile=10").stderr).toContain("Process limits should be set via");
    // A key liblxc knows is kept, and the container starts with it.
    ok("config", "set", n, "raw.lxc", "lxc.environment = FROM_RAW=yes");
    ok("start", n);
    expect(ok("exec", n, "--", "cat", "/proc/1/environ")).toContain("FROM_RAW=yes");
    ok("delete", "-f", n);
  }, 60_000);
});
