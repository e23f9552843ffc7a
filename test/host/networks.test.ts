// Managed networks on the real host, driven with the stock lxc client and raw HTTP:
// bridges, dnsmasq answering DHCP to a namespace, nftables, Open vSwitch (userspace
// datapath, private ovsdb), auto subnets without a packet on the uplink, restart and cleanup.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { dnsmasqPids, freeSubnet, linkExists, makeNetns, nftChainsOf, runId, sh, startOvs, udhcpc, waitFor } from "../helpers/net.js";

const id = runId();
const name = (s: string) => `nt${id}${s}`; // e.g. nt1a2bx (<= 15 chars)
const taken = new Set<number>();
let d: TestDaemon;
let ovs: ReturnType<typeof startOvs>;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  ovs = startOvs();
  process.env.OVS_RUNDIR = ovs.dir;
  d = await startDaemon();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) c();
  await d?.stop();
  // Whatever a failed test left: delete our links and tables by their unique names.
  for (const l of sh("ip", ["-j", "link"]).stdout.match(new RegExp(`"nt${id}[^"]*"`, "g")) ?? []) sh("ip", ["link", "del", JSON.parse(l)]);
  await ovs?.stop();
  delete process.env.OVS_RUNDIR;
});

function assertGone(net: string) {
  expect(linkExists(net)).toBe(false);
  expect(nftChainsOf(net)).toEqual([]);
  expect(dnsmasqPids(net)).toEqual([]);
}

describe("bridge lifecycle with the lxc client", () => {
  it("create, list, show, info, set, get, unset, rename, list-leases, delete", async () => {
    const n = freeSubnet(taken);
    const br = name("a");
    let r = d.lxc("network", "create", br, `ipv4.address=10.97.${n}.1/24`, "ipv4.nat=false", "ipv6.address=none");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Network ${br} created`);
    expect(linkExists(br)).toBe(true);
    expect(sh("ip", ["-4", "addr", "show", "dev", br]).stdout).toContain(`inet 10.97.${n}.1/24`);
    expect(dnsmasqPids(br)).toHaveLength(1);
    expect(nftChainsOf(br)).toContain("in");
    // Its own postrouting chain (the shared table may hold other daemons' bridges).
    expect(sh("nft", ["list", "chain", "inet", "lxd", `pstrt.${br}`]).stdout).not.toContain("masquerade");

    r = d.lxc("network", "list", "-f", "json");
    const list = JSON.parse(r.stdout);
    const mine = list.find((x: any) => x.name === br);
    expect(mine).toMatchObject({ managed: true, type: "bridge", status: "Created", locations: ["none"] });
    const eth = list.find((x: any) => x.name === "lo");
    expect(eth ?? { managed: false }).toMatchObject({ managed: false });

    const raw = await d.api("GET", "/1.0/networks?recursion=1");
    const lo = raw.body.metadata.find((x: any) => x.name === "lo");
    expect(lo).toEqual({ config: {}, description: "", name: "lo", type: "loopback", used_by: null, managed: false, status: "", locations: null });
    const urls = (await d.api("GET", "/1.0/networks")).body.metadata;
    expect(urls).toContain(`/1.0/networks/${br}`);

    r = d.lxc("network", "show", br);
    expect(r.stdout).toContain(`ipv4.address: 10.97.${n}.1/24`);
    expect(r.stdout).toContain('ipv4.nat: "false"');

    r = d.lxc("network", "info", br);
    expect(r.stdout).toContain(`inet\t10.97.${n}.1/24 (global)`);
    expect(r.stdout).toMatch(/MAC address: 00:16:3e:/);

    const st = (await d.api("GET", `/1.0/networks/${br}/state`)).body.metadata;
    expect(st).toMatchObject({ state: "up", type: "broadcast", mtu: 1500, addresses: [{ family: "inet", address: `10.97.${n}.1`, netmask: "24", scope: "global" }] });
    expect(st.bridge.id).toMatch(/^8000\.00163e/);

    const before = dnsmasqPids(br);
    expect(d.lxc("network", "set", br, "ipv4.dhcp=false").code).toBe(0);
    expect(d.lxc("network", "get", br, "ipv4.dhcp").stdout.trim()).toBe("false");
    expect(d.lxc("network", "show", br).stdout).toContain('ipv4.dhcp: "false"');
    // dnsmasq restarted with the new config: no DHCP range any more.
    const after = dnsmasqPids(br);
    expect(after).toHaveLength(1);
    expect(after).not.toEqual(before);
    expect(readFileSync(`/proc/${after[0]}/cmdline`, "utf8")).not.toContain("--dhcp-range");
    expect(d.lxc("network", "unset", br, "ipv4.dhcp").code).toBe(0);
    expect(d.lxc("network", "get", br, "ipv4.dhcp").stdout.trim()).toBe("");
    // A user.* change is stored without touching the host (same dnsmasq).
    const steady = dnsmasqPids(br);
    expect(d.lxc("network", "set", br, "user.note=hello").code).toBe(0);
    expect(d.lxc("network", "get", br, "user.note").stdout.trim()).toBe("hello");
    expect(dnsmasqPids(br)).toEqual(steady);

    const rn = freeSubnet(taken);
    expect(d.lxc("network", "set", br, `ipv4.routes=10.97.${rn}.0/24`).code).toBe(0);
    expect(sh("ip", ["route", "show", `10.97.${rn}.0/24`]).stdout).toContain(`dev ${br} proto static`);
    expect(d.lxc("network", "unset", br, "ipv4.routes").code).toBe(0);
    expect(sh("ip", ["route", "show", `10.97.${rn}.0/24`]).stdout.trim()).toBe("");

    r = d.lxc("network", "list-leases", br, "-f", "csv");
    expect(r.stdout).toContain(`${br}.gw,,10.97.${n}.1,GATEWAY`);

    const br2 = name("b");
    r = d.lxc("network", "rename", br, br2);
    expect(r.code).toBe(0);
    assertGone(br);
    expect(linkExists(br2)).toBe(true);
    expect(dnsmasqPids(br2)).toHaveLength(1);
    expect((await d.api("GET", `/1.0/networks/${br}`)).status).toBe(404);

    r = d.lxc("network", "delete", br2);
    expect(r.code).toBe(0);
    expect((await d.api("GET", `/1.0/networks/${br2}`)).body.error).toBe("Network not found");
    assertGone(br2);
  });

  it("answers errors like LXD and changes nothing on bad input", async () => {
    const n = freeSubnet(taken);
    const br = name("e");
    const ok = await d.api("POST", "/1.0/networks", { name: br, config: { "ipv4.address": `10.97.${n}.1/24`, "ipv4.nat": "false", "ipv6.address": "none" } });
    expect(ok.status).toBe(201);
    expect(ok.headers.location).toBe(`/1.0/networks/${br}`);
    const dup = await d.api("POST", "/1.0/networks", { name: br, config: { "ipv4.address": "none", "ipv6.address": "none" } });
    expect([dup.status, dup.body.error]).toEqual([400, "The network already exists"]);
    const cases: [unknown, number, string][] = [
      [{ name: "" }, 400, "No name provided"],
      [{ name: "bad/name" }, 400, "Network interface contains invalid characters"],
      [{ name: "waytoolongname12345" }, 400, "Network interface is too long (maximum 15 characters)"],
      [{ name: name("x"), type: "foo" }, 400, "Unknown driver"],
      [{ name: name("x"), config: { foo: "bar", "ipv4.address": "none", "ipv6.address": "none" } }, 500, `Invalid option for network "${name("x")}" option "foo"`],
      [{ name: name("x"), config: { "ipv4.address": "bogus", "ipv6.address": "none" } }, 500, `Invalid value for network "${name("x")}" option "ipv4.address": invalid CIDR address: bogus`],
      [{ name: name("x"), config: { "ipv4.nat": 1 } }, 400, "json: cannot unmarshal number into Go struct field NetworksPost.config of type string"],
      [{ name: name("x"), type: "macvlan" }, 500, `Invalid value for network "${name("x")}" option "parent": Required value`],
      [{ name: name("x"), type: "macvlan", config: { parent: "nonexist0" } }, 500, 'Parent interface "nonexist0" not found'],
    ];
    for (const [body, status, error] of cases) {
      const res = await d.api("POST", "/1.0/networks", body);
      expect([res.status, res.body.error]).toEqual([status, error]);
    }
    expect(linkExists(name("x"))).toBe(false);
    expect((await d.api("GET", `/1.0/networks/${name("x")}`)).status).toBe(404);

    let res = await d.api("PATCH", `/1.0/networks/${br}`, { config: { "ipv4.dhcp": "nope" } });
    expect([res.status, res.body.error]).toEqual([400, `Invalid value for network "${br}" option "ipv4.dhcp": Invalid value for a boolean "nope"`]);
    res = await d.api("PATCH", `/1.0/networks/${br}`, { config: { foo: "1" } });
    expect([res.status, res.body.error]).toEqual([400, `Invalid option for network "${br}" option "foo"`]);
    res = await d.api("PUT", "/1.0/networks/lo", { config: {} });
    expect([res.status, res.body.error]).toEqual([404, "Failed loading network: Network not found"]);
    res = await d.api("DELETE", "/1.0/networks/nonexist");
    expect([res.status, res.body.error]).toEqual([404, "Failed loading network: Network not found"]);
    res = await d.api("GET", "/1.0/networks/nonexist");
    expect([res.status, res.body.error]).toEqual([404, "Network not found"]);
    res = await d.api("GET", `/1.0/networks/lo/leases`);
    expect(res.status).toBe(404);

    // ETag: a stale If-Match is refused, the current one accepted.
    const cur = await d.api("GET", `/1.0/networks/${br}`);
    res = await d.api("PATCH", `/1.0/networks/${br}`, { config: { "user.a": "1" } }, { "If-Match": "nope" });
    expect(res.status).toBe(412);
    res = await d.api("PATCH", `/1.0/networks/${br}`, { config: { "user.a": "1" } }, { "If-Match": String(cur.headers.etag) });
    expect(res.status).toBe(200);

    // PUT replaces: addresses dropped leave the bridge without them, and dnsmasq goes away.
    res = await d.api("PUT", `/1.0/networks/${br}`, { config: { "ipv4.nat": "false" } });
    expect(res.status).toBe(200);
    expect((await d.api("GET", `/1.0/networks/${br}`)).body.metadata.config).toEqual({ "ipv4.nat": "false" });
    expect(sh("ip", ["-4", "addr", "show", "dev", br]).stdout).not.toContain("inet ");
    expect(dnsmasqPids(br)).toEqual([]);

    // A failing update is rolled back: the address is kept.
    const n2 = freeSubnet(taken);
    await d.api("PATCH", `/1.0/networks/${br}`, { config: { "ipv4.address": `10.97.${n2}.1/24` } });
    res = await d.api("PATCH", `/1.0/networks/${br}`, { config: { "bridge.external_interfaces": "nonexist0" } });
    expect(res.status).toBe(500);
    expect(res.body.error).toContain('External interface "nonexist0" not found');
    expect((await d.api("GET", `/1.0/networks/${br}`)).body.metadata.config["bridge.external_interfaces"]).toBeUndefined();
    expect(sh("ip", ["-4", "addr", "show", "dev", br]).stdout).toContain(`10.97.${n2}.1/24`);

    expect((await d.api("DELETE", `/1.0/networks/${br}`)).status).toBe(200);
    assertGone(br);
  });

  it("emits lifecycle events", async () => {
    const ws = new WebSocket("ws+unix://" + d.socket + ":/1.0/events?type=lifecycle");
    const actions: string[] = [];
    ws.on("message", (m) => actions.push(JSON.parse(String(m)).metadata.action));
    await new Promise((r) => ws.on("open", r));
    const br = name("v");
    const br2 = name("w");
    expect(d.lxc("network", "create", br, "ipv4.address=none", "ipv6.address=none").code).toBe(0);
    expect(d.lxc("network", "set", br, "user.k=v").code).toBe(0);
    expect(d.lxc("network", "rename", br, br2).code).toBe(0);
    expect(d.lxc("network", "delete", br2).code).toBe(0);
    await waitFor(() => actions.length >= 4, 5000);
    ws.close();
    expect(actions).toEqual(["network-created", "network-updated", "network-renamed", "network-deleted"]);
  });
});

describe("dnsmasq", () => {
  it("really answers DHCP on the bridge and reports the lease", async () => {
    const n = freeSubnet(taken);
    const br = name("d");
    expect(d.lxc("network", "create", br, `ipv4.address=10.97.${n}.1/24`, "ipv4.nat=false", "ipv6.address=none").code).toBe(0);
    cleanups.push(() => d.lxc("network", "delete", br));
    const ns = makeNetns(name("ns"), name("h"));
    cleanups.push(ns.destroy);
    sh("ip", ["link", "set", name("h"), "master", br]);
    const leased = udhcpc(name("ns"));
    expect(leased).toMatch(new RegExp(`^10\\.97\\.${n}\\.\\d+$`));
    const mac = ns.mac();
    const got = await waitFor(() => {
      const r = d.lxc("network", "list-leases", br, "-f", "csv");
      return r.stdout.includes(leased!) ? r.stdout : undefined;
    });
    expect(got).toContain(`${mac},${leased},DYNAMIC`);
  });

  it("is restarted when it dies, and adopted/restarted after kill -9 of the daemon", async () => {
    const br = name("d");
    const [pid] = dnsmasqPids(br);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, "SIGKILL");
    const next = await waitFor(() => {
      const p = dnsmasqPids(br);
      return p.length === 1 && p[0] !== pid ? p[0] : undefined;
    });
    await d.kill9();
    // The bridge and dnsmasq survive a daemon crash...
    expect(linkExists(br)).toBe(true);
    expect(dnsmasqPids(br)).toEqual([next]);
    await d.restart();
    // ...and start-up replaces dnsmasq with a supervised one, exactly one.
    const after = await waitFor(() => {
      const p = dnsmasqPids(br);
      return p.length === 1 && p[0] !== next ? p : undefined;
    });
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(next);
    expect(dnsmasqPids(br)).toEqual(after);
    expect(udhcpc(name("ns"))).toMatch(/^10\.97\./);
  });
});

describe("Open vSwitch bridge (userspace datapath)", () => {
  it("creates an OVS bridge whose dnsmasq answers DHCP, and removes it", async () => {
    const n = freeSubnet(taken);
    const br = name("o");
    const r = d.lxc("network", "create", br, "bridge.driver=openvswitch", `ipv4.address=10.97.${n}.1/24`, "ipv4.nat=false", "ipv6.address=none");
    expect(r.code).toBe(0);
    expect(ovs.vsctl("br-exists", br).code).toBe(0);
    expect(ovs.vsctl("get", "bridge", br, "datapath_type").stdout.trim()).toBe("netdev");
    expect(sh("ip", ["-4", "addr", "show", "dev", br]).stdout).toContain(`inet 10.97.${n}.1/24`);
    const ns = makeNetns(name("os"), name("p"));
    cleanups.push(ns.destroy);
    expect(ovs.vsctl("add-port", br, name("p")).code).toBe(0);
    expect(udhcpc(name("os"))).toMatch(new RegExp(`^10\\.97\\.${n}\\.\\d+$`));
    const list = JSON.parse(d.lxc("network", "list", "-f", "json").stdout);
    expect(list.find((x: any) => x.name === br)).toMatchObject({ managed: true, type: "bridge" });
    expect(d.lxc("network", "delete", br).code).toBe(0);
    expect(ovs.vsctl("br-exists", br).code).toBe(2);
    assertGone(br);
  });
});

describe("ipv4.address=auto", () => {
  it("chooses a free subnet from local facts without sending a packet on the uplink", async () => {
    const uplink = sh("ip", ["-j", "route", "show", "default"]).stdout;
    const dev = (JSON.parse(uplink)[0]?.dev as string) ?? "eth0";
    const pcap = `/tmp/nodelxd-test-${id}.pcap`;
    // Anything we might send while choosing: pings, ARP for 10/8, or traffic to/from 10/8.
    const dump = spawn("tcpdump", ["-i", dev, "-n", "-U", "-w", pcap, "icmp[icmptype] == icmp-echo or net 10.0.0.0/8 or (arp and net 10.0.0.0/8)"], { stdio: "ignore" });
    cleanups.push(() => sh("rm", ["-f", pcap]));
    await new Promise((r) => setTimeout(r, 1000));
    const br = name("u");
    const res = await d.api("POST", "/1.0/networks", { name: br, config: { "ipv4.address": "auto", "ipv4.nat": "false", "ipv6.address": "none" } });
    await new Promise((r) => setTimeout(r, 1000));
    dump.kill("SIGINT");
    await new Promise((r) => dump.once("exit", r));
    expect(res.status).toBe(201);
    cleanups.push(() => d.lxc("network", "delete", br));
    const cfg = (await d.api("GET", `/1.0/networks/${br}`)).body.metadata.config;
    expect(cfg["ipv4.address"]).toMatch(/^10\.\d+\.\d+\.1\/24$/);
    const sub = cfg["ipv4.address"].split(".").slice(0, 3).join(".");
    // Unique on this host: exactly one route for that /24 (ours).
    const routes = JSON.parse(sh("ip", ["-j", "route", "show", "table", "all"]).stdout).filter((x: any) => String(x.dst).startsWith(sub + "."));
    expect(routes.filter((x: any) => x.dst === `${sub}.0/24`)).toHaveLength(1);
    const read = sh("tcpdump", ["-n", "-r", pcap]);
    expect(read.stdout.trim()).toBe("");
  });

  it("fills defaults like LXD when nothing is given (NAT on, IPv6 auto)", async () => {
    const br = name("f");
    const res = await d.api("POST", "/1.0/networks", { name: br });
    expect(res.status).toBe(201);
    const cfg = (await d.api("GET", `/1.0/networks/${br}`)).body.metadata.config;
    expect(cfg["ipv4.address"]).toMatch(/^10\.\d+\.\d+\.1\/24$/);
    expect(cfg["ipv4.nat"]).toBe("true");
    expect(cfg["ipv6.address"]).toMatch(/^fd42:[0-9a-f:]+::1\/64$/);
    expect(cfg["ipv6.nat"]).toBe("true");
    expect(sh("nft", ["list", "chain", "inet", "lxd", `pstrt.${br}`]).stdout).toContain("masquerade");
    expect(d.lxc("network", "delete", br).code).toBe(0);
    assertGone(br);
  });
});

describe("macvlan, physical and fan", () => {
  it("macvlan and physical networks describe an existing parent", async () => {
    const parent = name("m0");
    sh("ip", ["link", "add", parent, "type", "veth", "peer", "name", name("m1")]);
    cleanups.push(() => sh("ip", ["link", "del", parent]));
    let r = d.lxc("network", "create", name("mv"), "--type=macvlan", `parent=${parent}`);
    expect(r.code).toBe(0);
    const mv = (await d.api("GET", `/1.0/networks/${name("mv")}`)).body.metadata;
    expect(mv).toMatchObject({ type: "macvlan", managed: true, config: { parent } });
    expect((await d.api("GET", `/1.0/networks/${name("mv")}/state`)).body.metadata.hwaddr).toBe(readFileSync(`/sys/class/net/${parent}/address`, "utf8").trim());
    const res = await d.api("GET", `/1.0/networks/${name("mv")}/leases`);
    expect(res.status).toBe(400);
    expect(d.lxc("network", "delete", name("mv")).code).toBe(0);
    expect(linkExists(parent)).toBe(true);

    r = d.lxc("network", "create", name("ph"), "--type=physical", `parent=${parent}`, "mtu=1400");
    expect(r.code).toBe(0);
    expect(readFileSync(`/sys/class/net/${parent}/mtu`, "utf8").trim()).toBe("1400");
    expect(d.lxc("network", "delete", name("ph")).code).toBe(0);
    expect(linkExists(parent)).toBe(true);

    // A VLAN on the parent needs the kernel's 8021q support: the error is the kernel's own.
    const vlan = await d.api("POST", "/1.0/networks", { name: name("pv"), type: "physical", config: { parent, vlan: "10" } });
    if (vlan.status === 201) {
      expect(linkExists(`${parent}.10`)).toBe(true);
      expect((await d.api("DELETE", `/1.0/networks/${name("pv")}`)).status).toBe(200);
      expect(linkExists(`${parent}.10`)).toBe(false);
    } else {
      expect(vlan.body.error).toContain("type vlan id 10");
      expect((await d.api("GET", `/1.0/networks/${name("pv")}`)).status).toBe(404);
    }
  });

  it("fan mode: validated, addresses computed, and the kernel's refusal reported with nothing left behind", async () => {
    const n = freeSubnet(taken);
    const under = name("fu");
    sh("ip", ["link", "add", under, "type", "veth", "peer", "name", name("fv")]);
    cleanups.push(() => sh("ip", ["link", "del", under]));
    sh("ip", ["addr", "add", `10.97.${n}.5/24`, "dev", under]);
    const fan = name("fa");
    let res = await d.api("POST", "/1.0/networks", { name: fan, config: { "bridge.mode": "fan", "ipv4.address": "10.1.1.1/24" } });
    expect([res.status, res.body.error]).toEqual([500, "IPv4 configuration may not be set when in 'fan' mode"]);
    res = await d.api("POST", "/1.0/networks", { name: fan, config: { "bridge.mode": "fan", "fan.underlay_subnet": `10.97.${n}.0/24` } });
    const probe = sh("ip", ["link", "add", "ntfanprobe", "type", "vxlan", "id", "1", "dev", under, "fan-map", "240.0.0.0/8:10.0.0.0/16"]);
    if (probe.code === 0) {
      sh("ip", ["link", "del", "ntfanprobe"]);
      expect(res.status).toBe(201);
      expect(sh("ip", ["-4", "addr", "show", "dev", fan]).stdout).toContain("inet 240.5.0.1/8");
      expect(d.lxc("network", "delete", fan).code).toBe(0);
    } else {
      expect(res.status).toBe(500);
      expect(res.body.error).toContain(`Fan mode is not supported by this host (ip link add ${fan}-fan type vxlan id 15728640 dev ${under} dstport 0 local 10.97.${n}.5 fan-map 240.0.0.0/8:10.97.${n}.0/24): `);
      expect(res.body.error.split("\n")).toHaveLength(1);
    }
    if (res.status !== 201) {
      expect((await d.api("GET", `/1.0/networks/${fan}`)).status).toBe(404);
      assertGone(fan);
      expect(linkExists(`${fan}-fan`)).toBe(false);
    }
  });
});

describe("daemon stop and start", () => {
  it("a clean stop leaves no links, nft tables or dnsmasq; start re-creates them", async () => {
    const n = freeSubnet(taken);
    const br = name("r");
    expect(d.lxc("network", "create", br, `ipv4.address=10.97.${n}.1/24`, "ipv4.nat=false", "ipv6.address=none").code).toBe(0);
    d.proc.kill("SIGTERM");
    await new Promise((r) => d.proc.once("exit", r));
    for (const net of [br, name("d")]) assertGone(net);
    await d.restart();
    expect(linkExists(br)).toBe(true);
    expect(sh("ip", ["-4", "addr", "show", "dev", br]).stdout).toContain(`10.97.${n}.1/24`);
    expect(dnsmasqPids(br)).toHaveLength(1);
    expect(nftChainsOf(br)).toContain("in");
    expect(d.lxc("network", "delete", br).code).toBe(0);
    assertGone(br);
  });
});
