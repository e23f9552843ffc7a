// What LXD's suite checks after every test (kill_lxd's check_empty): a stopped or deleted
// container leaves nothing under security/seccomp/ or shmounts/.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
beforeAll(async () => {
  d = await startInitialisedDaemon();
}, 120_000);
afterAll(async () => {
  await d?.teardown();
});

describe("per-container runtime files", () => {
  it("the seccomp policy and shmounts/<name> exist while running and go when it stops", () => {
    const n = d.launch("left", { config: { "security.syscalls.deny": "mkdir" } });
    expect(existsSync(join(d.dir, "security", "seccomp", n))).toBe(true);
    expect(existsSync(join(d.dir, "shmounts", n))).toBe(true);
    const stop = d.lxc("stop", "-f", n);
    expect(stop.code, stop.stderr).toBe(0);
    expect(readdirSync(join(d.dir, "security", "seccomp"))).not.toContain(n);
    expect(readdirSync(join(d.dir, "shmounts"))).not.toContain(n);
    expect(d.lxc("start", n).code).toBe(0);
    expect(existsSync(join(d.dir, "security", "seccomp", n))).toBe(true);
    expect(d.lxc("delete", "-f", n).code).toBe(0);
    expect(readdirSync(join(d.dir, "security", "seccomp"))).toEqual([]);
    expect(readdirSync(join(d.dir, "shmounts"))).toEqual([]);
  });

  it("the volume directory is mode 0100, owned by the container's root (LXD's CVE-2016-1582 check)", () => {
    const priv = d.launch("priv", { config: { "security.privileged": "true" } });
    let st = statSync(join(d.dir, "containers", priv));
    expect([st.mode & 0o7777, st.uid]).toEqual([0o100, 0]);
    const unpriv = d.launch("unpriv");
    st = statSync(join(d.dir, "containers", unpriv));
    expect([st.mode & 0o7777, st.uid]).toEqual([0o100, d.hostRoot(unpriv).uid]);
    expect(d.lxc("stop", "-f", unpriv).code).toBe(0);
    st = statSync(join(d.dir, "containers", unpriv));
    expect([st.mode & 0o7777, st.uid]).toEqual([0o100, 0]);
    expect(d.lxc("exec", priv, "--", "true").code).toBe(0);
    // A container never started: root-only too (basic_usage checks a fresh `lxc init`).
    const fresh = d.instanceName("fresh");
    expect(d.lxc("init", "busybox", fresh).code).toBe(0);
    st = statSync(join(d.dir, "containers", fresh));
    expect(st.mode & 0o7777).toBe(0o100);
  });
});
