// Issue 19: the warnings API reports real warnings, as LXD 5.0.2 does: what this host lacks
// (recorded at start; the same set real LXD reports here) and failed autostarts (resolved when
// a later autostart works).
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;

beforeAll(async () => {
  d = await startInitialisedDaemon();
}, 120_000);

afterAll(async () => {
  if (d) await d.teardown();
});

const list = async () => (await d.api("GET", "/1.0/warnings?recursion=1")).body.metadata as Record<string, any>[];

describe("host warnings", () => {
  it("are listed with LXD's types, messages and fields", async () => {
    const w = await list();
    for (const x of w) expect(Object.keys(x)).toEqual(["status", "uuid", "location", "project", "type", "count", "first_seen_at", "last_seen_at", "last_message", "severity", "entity_url"]);
    const byType = Object.fromEntries(w.map((x) => [x.type, x]));
    if (!existsSync("/sys/kernel/security/apparmor")) {
      expect(byType["AppArmor support has been disabled"]).toMatchObject({ status: "new", project: "", entity_url: "", severity: "low", location: "none", last_message: "Disabled because of lack of kernel support" });
    }
    if (!existsSync("/dev/kvm")) expect(byType["Instance type not operational"]?.last_message).toBe("KVM support is missing (no /dev/kvm)");
    // The stock client shows them.
    const r = d.lxc("warning", "list", "--format", "csv");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split("\n").filter((l) => l !== "").length).toBe(w.length);
  });

  it("a restart sees them again (count bumped, not duplicated), an acknowledged one stays acknowledged", async () => {
    const before = await list();
    expect(before.length).toBeGreaterThan(0);
    const ack = before[0];
    expect((await d.api("PATCH", `/1.0/warnings/${ack.uuid}`, { status: "acknowledged" })).status).toBe(200);
    await d.kill9();
    await d.restart();
    const after = await list();
    expect(after.map((x) => x.uuid).sort()).toEqual(before.map((x) => x.uuid).sort());
    for (const x of after) expect(x.count).toBe(before.find((b) => b.uuid === x.uuid)!.count + 1);
    expect(after.find((x) => x.uuid === ack.uuid)!.status).toBe("acknowledged");
  }, 60_000);
});

describe("failed autostart", () => {
  it("raises 'Failed to autostart instance' on the instance, resolved when autostart works again", async () => {
    const n = d.launch("auto", { init: true, config: { "boot.autostart": "true", "linux.kernel_modules": "nodelxd_no_such_module" } });
    await d.kill9();
    await d.restart();
    const find = async () => (await list()).find((x) => x.type === "Failed to autostart instance" && x.entity_url === `/1.0/instances/${n}`);
    let w: Record<string, any> | undefined;
    for (let i = 0; i < 40 && !w; i++) {
      w = await find();
      if (!w) await new Promise((r) => setTimeout(r, 250));
    }
    expect(w).toMatchObject({ status: "new", project: "default", severity: "low" });
    expect(w!.last_message).toContain("Failed to load kernel module 'nodelxd_no_such_module'");
    expect(d.lxc("config", "unset", n, "linux.kernel_modules").code).toBe(0);
    await d.kill9();
    await d.restart();
    // (LXD resolves warnings not seen since the daemon started, then the autostart succeeds.)
    let running = "";
    for (let i = 0; i < 60 && running !== "Running"; i++) {
      running = (await d.api("GET", `/1.0/instances/${n}`)).body.metadata.status;
      if (running !== "Running") await new Promise((r) => setTimeout(r, 250));
    }
    expect(running).toBe("Running");
    expect((await find())?.status).toBe("resolved");
    expect(d.lxc("stop", "-f", n).code).toBe(0);
  }, 120_000);
});
