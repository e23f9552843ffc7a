// features.networks as LXD 5.0.2 has it, driven with the stock lxc (unix socket and a restricted
// certificate over HTTPS): a project with the feature owns its networks and sees none of the
// default project's (nor the host's interfaces); only OVN networks may live there (no OVN driver
// here), limits.networks counts them; a project without the feature uses the default project's.
// Expected texts are real LXD 5.0.2's answers to the same commands.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { linkExists, must, sh } from "../helpers/net.js";

const id = `${process.pid.toString(36).slice(-3)}${Math.random().toString(36).slice(2, 4)}`;
const BR = `np${id}b`; // <= 15 chars
const BR2 = `np${id}s`;
const F = `np${id}f`; // features.networks=true
const S = `np${id}s`; // features.networks=false
let d: InitialisedDaemon;
let tmp: string;
let subnet: number;

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed: ${r.stderr}`);
  return r.stdout;
}
const err = (r: { code: number; stderr: string }) => (r.code === 0 ? "(succeeded)" : r.stderr.trim());

/** The stock client holding a certificate restricted to project F. */
function rlxc(...args: string[]) {
  const r = spawnSync("lxc", args, { env: { ...process.env, LXD_CONF: join(tmp, "conf") }, encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

function freeSubnet(): number {
  const text = must("ip", ["-j", "addr"]) + must("ip", ["-j", "route", "show", "table", "all"]);
  for (let i = 0; i < 500; i++) {
    const n = 1 + Math.floor(Math.random() * 250);
    if (!text.includes(`"10.152.${n}.`)) return n;
  }
  throw new Error("no free 10.152.N subnet");
}

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-np-");
  d = await startInitialisedDaemon();
  subnet = freeSubnet();
  ok(d.lxc("network", "create", BR, `ipv4.address=10.152.${subnet}.1/24`, "ipv4.nat=false", "ipv6.address=none"), "network create");
  ok(d.lxc("project", "create", F, "-c", "features.networks=true"), "project F");
  ok(d.lxc("project", "create", S, "-c", "features.networks=false"), "project S");
  for (const p of [F, S]) ok(d.lxc("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default", "--project", p), `root ${p}`);
  const port = 20000 + Math.floor(Math.random() * 20000);
  ok(d.lxc("config", "set", "core.https_address", `127.0.52.1:${port}`), "https");
  const crt = join(tmp, "r.crt");
  const key = join(tmp, "r.key");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=np"], { stdio: "ignore" });
  ok(d.lxc("config", "trust", "add", crt, "--restricted", "--projects", F), "trust add");
  mkdirSync(join(tmp, "conf"));
  copyFileSync(crt, join(tmp, "conf", "client.crt"));
  copyFileSync(key, join(tmp, "conf", "client.key"));
  ok(rlxc("remote", "add", "r", `127.0.52.1:${port}`, "--accept-certificate"), "remote add");
}, 180_000);

afterAll(async () => {
  for (const [c, p] of [["c0", F], ["c1", S]]) d?.lxc("delete", "-f", `np${id}${c}`, "--project", p);
  for (const p of [F, S]) d?.lxc("project", "delete", p);
  for (const n of [BR, BR2]) d?.lxc("network", "delete", n);
  await d?.teardown();
  for (const n of [BR, BR2]) if (linkExists(n)) sh("ip", ["link", "del", n]);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("a project with features.networks", () => {
  it("lists only its own networks: none of the default project's, no host interfaces", () => {
    expect(JSON.parse(ok(d.lxc("query", `/1.0/networks?project=${F}`), "list F"))).toEqual([]);
    const def = JSON.parse(ok(d.lxc("query", `/1.0/networks?project=${S}`), "list S")) as string[];
    expect(def).toContain(`/1.0/networks/${BR}`);
    expect(def).toContain("/1.0/networks/lo");
    expect(def.some((n) => n.startsWith("/1.0/networks/veth"))).toBe(false);
    expect(ok(d.lxc("network", "list", "--project", F, "--format", "csv"), "lxc network list").trim()).toBe("");
  });

  it("answers 404 for the default project's networks on every network path but state", () => {
    expect(err(d.lxc("network", "show", BR, "--project", F))).toBe("Error: Network not found");
    expect(err(d.lxc("network", "show", "lo", "--project", F))).toBe("Error: Network not found");
    expect(err(d.lxc("network", "set", BR, "user.x=1", "--project", F))).toBe("Error: Network not found"); // the client GETs first
    expect(err(d.lxc("query", "-X", "PATCH", `/1.0/networks/${BR}?project=${F}`, "--data", '{"config":{"user.x":"1"}}'))).toBe("Error: Failed loading network: Network not found");
    expect(err(d.lxc("query", "-X", "PUT", `/1.0/networks/${BR}?project=${F}`, "--data", '{"config":{}}'))).toBe("Error: Failed loading network: Network not found");
    expect(err(d.lxc("network", "rename", BR, BR2, "--project", F))).toBe("Error: Failed loading network: Network not found");
    expect(err(d.lxc("network", "delete", BR, "--project", F))).toBe("Error: Failed loading network: Network not found");
    expect(err(d.lxc("network", "list-leases", BR, "--project", F))).toBe("Error: Failed loading network: Network not found");
    expect(err(d.lxc("query", `/1.0/networks/${BR}/forwards?project=${F}`))).toBe("Error: Failed loading network: Network not found");
    // networkStateGet reads the host interface whatever the project (as LXD 5.0.2).
    expect(JSON.parse(ok(d.lxc("query", `/1.0/networks/${BR}/state?project=${F}`), "state")).addresses[0].address).toBe(`10.152.${subnet}.1`);
    expect(linkExists(BR)).toBe(true);
    expect(ok(d.lxc("network", "get", BR, "user.x"), "get").trim()).toBe("");
  });

  it("may hold only OVN networks (the default type there), within limits.networks", () => {
    expect(err(d.lxc("network", "create", `${id}n1`, "--type=bridge", "--project", F))).toBe("Error: Network type does not support non-default projects");
    expect(err(d.lxc("network", "create", `${id}n1`, "--type=macvlan", "--project", F))).toBe("Error: Network type does not support non-default projects");
    expect(err(d.lxc("network", "create", "x", "--type=bridge", "--project", F))).toBe("Error: Network interface is too short (minimum 2 characters)");
    expect(err(d.lxc("network", "create", `${id}n1`, "--type=nosuch", "--project", F))).toBe("Error: Unknown driver");
    // OVN's name rule is the common one; no OVN driver here, said plainly (501).
    expect(err(d.lxc("network", "create", "x", "--project", F))).toBe('Error: Network type "ovn" isn\'t supported by this server');
    ok(d.lxc("project", "set", F, "limits.networks=0"), "limits");
    expect(err(d.lxc("network", "create", "x", "--project", F))).toBe("Error: Networks limit has been reached for project");
    expect(err(d.lxc("network", "create", "a/b", "--project", F))).toBe('Error: Cannot contain "/"');
    // The type check comes before the limit.
    expect(err(d.lxc("network", "create", `${id}n1`, "--type=bridge", "--project", F))).toBe("Error: Network type does not support non-default projects");
    ok(d.lxc("project", "unset", F, "limits.networks"), "unset limits");
    expect(JSON.parse(ok(d.lxc("query", `/1.0/projects/${F}/state`), "state")).resources.networks).toEqual({ Limit: -1, Usage: 0 });
    expect(linkExists(`${id}n1`)).toBe(false);
  });

  it("its instances and profiles cannot use the default project's networks", () => {
    const op = d.lxc("query", "-X", "POST", `/1.0/instances?project=${F}`, "--data", JSON.stringify({ name: `np${id}c0`, source: { type: "none" }, devices: { eth0: { type: "nic", network: BR } } }));
    const text = op.code === 0 ? JSON.stringify(JSON.parse(op.stdout)) : op.stderr;
    expect(text).toContain(`Failed loading device \\"eth0\\": Failed to load network \\"${BR}\\" for project \\"${F}\\": Network not found`.replace(/\\"/g, op.code === 0 ? '\\"' : '"'));
    expect(ok(d.lxc("list", "--project", F, "--format", "csv"), "list").trim()).toBe("");
    expect(err(d.lxc("profile", "device", "add", "default", "eth0", "nic", `network=${BR}`, "--project", F))).toBe(
      `Error: Device validation failed for "eth0": Failed loading device "eth0": Failed to load network "${BR}" for project "${F}": Network not found`,
    );
  });
});

describe("a project without features.networks", () => {
  it("uses the default project's networks: its instances attach, used_by names them", () => {
    ok(d.lxc("init", "--empty", `np${id}c1`, "-n", BR, "--project", S), "init c1");
    const used = JSON.parse(ok(d.lxc("query", `/1.0/networks/${BR}`), "show")).used_by as string[];
    expect(used).toContain(`/1.0/instances/np${id}c1?project=${S}`);
    expect(err(d.lxc("network", "delete", BR, "--project", S))).toBe("Error: The network is currently in use");
  });

  it("creates bridges into the default project", () => {
    ok(d.lxc("network", "create", BR2, "--project", S, "ipv4.address=none", "ipv6.address=none"), "create in S");
    expect(linkExists(BR2)).toBe(true);
    ok(d.lxc("network", "show", BR2), "visible from default");
    expect(err(d.lxc("network", "show", BR2, "--project", F))).toBe("Error: Network not found");
    ok(d.lxc("network", "delete", BR2, "--project", S), "delete from S");
    expect(linkExists(BR2)).toBe(false);
  });
});

describe("a certificate restricted to the project", () => {
  it("works with the project's networks and is refused the default project's", () => {
    expect(ok(rlxc("network", "list", "r:", "--project", F, "--format", "csv"), "list").trim()).toBe("");
    expect(err(rlxc("network", "show", `r:${BR}`, "--project", F))).toBe("Error: Network not found");
    expect(err(rlxc("network", "create", `r:${id}n2`, "--type=bridge", "--project", F))).toBe("Error: Network type does not support non-default projects");
    expect(err(rlxc("network", "create", `r:${id}n2`, "--type=bridge", "--project", S))).toBe("Error: not authorized");
    expect(err(rlxc("network", "list", "r:", "--project", S))).toBe("Error: not authorized");
    expect(err(rlxc("network", "delete", `r:${BR}`, "--project", F))).toBe("Error: Failed loading network: Network not found");
    expect(linkExists(BR)).toBe(true);
    expect(linkExists(`${id}n2`)).toBe(false);
  });
});
