// infiniband nictype=sriov: choosing a free virtual function when containers start at the same
// time, and what LXD counts as taken (SRIOVGetHostDevicesInUse: instances' parents and
// host_names, managed networks' parents). The daemon reads a sysfs//dev tree the test builds
// (NODELXD_HARDWARE_ROOT): a ConnectX card with two VFs, whose netdevs are real veth pairs the
// test creates (prefix `ib`); the starts, the netdev moves and the liblxc config are real.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lxcAsync } from "../helpers/cluster.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { buildIbTree } from "../helpers/ib-tree.js";

const tag = randomBytes(3).toString("hex");
const PF = `ib${tag}p`;
const VF = `ib${tag}v`;
const VF2 = `ib${tag}w`;
const top = mkdtempSync("/tmp/ib-sriov-");
const ipLink = (...args: string[]) => spawnSync("ip", ["link", ...args], { encoding: "utf8" });
const hostHas = (dev: string) => existsSync(`/sys/class/net/${dev}`);

let d: InitialisedDaemon;
beforeAll(async () => {
  for (const dev of [PF, VF, VF2]) expect(ipLink("add", dev, "type", "veth", "peer", "name", `${dev}x`).status).toBe(0);
  buildIbTree(top, { pf: PF, vf: VF, vf2: VF2 }, { nodes: true });
  d = await startInitialisedDaemon({ env: { NODELXD_HARDWARE_ROOT: top } });
}, 120_000);
afterAll(async () => {
  await d?.teardown();
  for (const dev of [PF, VF, VF2]) ipLink("del", dev);
  rmSync(top, { recursive: true, force: true });
});

const ok = (r: { code: number; stderr: string }) => expect(r.code, r.stderr).toBe(0);
const hostName = (c: string) => d.lxc("config", "get", c, "volatile.ib.host_name").stdout.trim();
const withIb = (what: string) => {
  const c = d.launch(what, { init: true });
  ok(d.lxc("config", "device", "add", c, "ib", "infiniband", "nictype=sriov", `parent=${PF}`, "name=ib1"));
  return c;
};

describe("infiniband sriov virtual functions", () => {
  it("two containers starting at once get different VFs", async () => {
    const cs = ["ra", "rb", "rc"].map(withIb);
    // Three at once on two VFs: two start, each with its own VF; the third finds none.
    const runs = await Promise.all(cs.map((c) => lxcAsync(d, "start", c)));
    const started = cs.filter((_c, i) => runs[i].code === 0);
    expect(started).toHaveLength(2);
    expect(started.map(hostName).sort()).toEqual([VF, VF2].sort());
    const failed = runs.find((r) => r.code !== 0)!;
    expect(failed.stderr).toContain('Failed to start device "ib": All virtual functions on parent device are already in use');
    for (const c of started) expect(d.lxc("exec", c, "--", "cat", "/sys/class/net/ib1/address").code).toBe(0);
    expect(hostHas(VF) || hostHas(VF2)).toBe(false);
    for (const c of started) ok(d.lxc("stop", "-f", c));
    expect(hostHas(VF) && hostHas(VF2)).toBe(true);
    // Given back: the one that failed starts now.
    const last = cs.find((c) => !started.includes(c))!;
    ok(d.lxc("start", last));
    ok(d.lxc("stop", "-f", last));
  });

  it("a VF a managed network names as parent is not free", () => {
    const net = `n${tag}`;
    ok(d.lxc("network", "create", net, "--type=macvlan", `parent=${VF}`));
    try {
      const [a, b] = ["na", "nb"].map(withIb);
      ok(d.lxc("start", a));
      expect(hostName(a)).toBe(VF2);
      const r = d.lxc("start", b);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('Failed to start device "ib": All virtual functions on parent device are already in use');
      ok(d.lxc("stop", "-f", a));
    } finally {
      d.lxc("network", "delete", net);
    }
  });
});
