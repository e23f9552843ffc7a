// BGP as LXD 5.0.2 does it, with the stock client: the speaker's prefixes and peers (what
// GET /internal/testing/bgp answers) follow networks, forwards and NIC external routes; with
// core.bgp_* set, a real BGP peer (a second gobgpd in a network namespace of ours, on a veth
// pair in 10.123.0.0/16) receives those prefixes and sees them withdrawn. NAT is off; BGP
// traffic stays on that veth pair.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { useNetworkDaemon } from "../helpers/network-daemon.js";
import { must, runId, sh, waitFor } from "../helpers/net.js";

const id = runId();
const t = useNetworkDaemon();
const { ok, fails, networks } = t;

type Debug = {
  server: { address: string; asn: number; router_id: string; running: boolean };
  prefixes: { owner: string; prefix: string; nexthop: string }[];
  peers: { address: string; asn: number; password: string; count: number }[];
};
const debug = (): Debug => JSON.parse(ok("query", "/internal/testing/bgp"));
const byPrefix = (d: Debug) => [...d.prefixes].sort((a, b) => a.prefix.localeCompare(b.prefix));

// The peer side: a namespace with a veth pair (host 10.123.200.1, peer 10.123.200.2).
const NS = `bgns${id}`;
const HOST_END = `bgv${id}`;
const PEER_DIR = `/tmp/bg-peer-${id}`;
let peerPid = 0;
afterAll(() => {
  if (peerPid) sh("kill", [String(peerPid)]);
  sh("ip", ["link", "del", HOST_END]);
  sh("ip", ["netns", "del", NS]);
  rmSync(PEER_DIR, { recursive: true, force: true });
});

const peerCli = (...args: string[]) => sh("gobgp", ["--target", `unix://${PEER_DIR}/peer.sock`, "-j", ...args]);
/** What the peer has received from us for a family: prefix → next hop. */
function received(afi: "ipv4" | "ipv6"): Record<string, string> {
  const r = peerCli("neighbor", "10.123.200.1", "adj-in", "-a", afi);
  if (r.code !== 0 || r.stdout.includes('"error"')) return {};
  const rib = JSON.parse(r.stdout || "{}") as Record<string, { attrs: { type: number; nexthop?: string }[] }[]>;
  const out: Record<string, string> = {};
  for (const [prefix, paths] of Object.entries(rib)) {
    const nh = paths[0]?.attrs.find((a) => a.type === 3 || a.type === 14)?.nexthop;
    if (nh) out[prefix] = nh;
  }
  return out;
}

function startPeer(): void {
  must("ip", ["netns", "add", NS]);
  must("ip", ["link", "add", HOST_END, "type", "veth", "peer", "name", `${HOST_END}p`]);
  must("ip", ["link", "set", `${HOST_END}p`, "netns", NS]);
  must("ip", ["addr", "add", "10.123.200.1/30", "dev", HOST_END]);
  must("ip", ["link", "set", HOST_END, "up"]);
  must("ip", ["-n", NS, "addr", "add", "10.123.200.2/30", "dev", `${HOST_END}p`]);
  must("ip", ["-n", NS, "link", "set", `${HOST_END}p`, "up"]);
  must("ip", ["-n", NS, "link", "set", "lo", "up"]);
  mkdirSync(PEER_DIR, { recursive: true });
  const conf = {
    global: { config: { as: 65020, "router-id": "10.123.200.2", port: 179, "local-address-list": ["10.123.200.2"] } },
    neighbors: [{ config: { "neighbor-address": "10.123.200.1", "peer-as": 65010 }, "afi-safis": [{ config: { "afi-safi-name": "ipv4-unicast" } }, { config: { "afi-safi-name": "ipv6-unicast" } }] }],
  };
  writeFileSync(`${PEER_DIR}/peer.json`, JSON.stringify(conf));
  const child = spawn("ip", ["netns", "exec", NS, "gobgpd", "-f", `${PEER_DIR}/peer.json`, "-t", "json", "--api-hosts", `unix://${PEER_DIR}/peer.sock`, "--pprof-disable", "-p"], { stdio: "ignore", detached: true });
  child.unref();
  peerPid = child.pid!;
}

describe("BGP (network_bgp)", () => {
  it("keeps LXD's prefixes and peers for networks and forwards, without a listener", async () => {
    expect(debug()).toEqual({ server: { address: "", asn: 0, router_id: "<nil>", running: false }, prefixes: [], peers: [] });
    const net = `bgbr${id}a`;
    networks.push(net);
    // LXD 5.0.2 accepts only four-field bgp.* keys, so its documented bgp.ipv4.nexthop is refused.
    const base = ["network", "create", net, "ipv4.address=10.123.10.1/24", "ipv4.nat=false", "ipv6.address=fd42:123:10::1/64", "ipv6.nat=false"];
    expect(fails(...base, "bgp.ipv4.nexthop=10.123.10.5")).toContain("Invalid network configuration key: bgp.ipv4.nexthop");
    expect(fails(...base, "bgp.peers.up.holdtime=5")).toContain(`Invalid option for network "${net}" option "bgp.peers.up.holdtime"`);
    expect(fails(...base, "bgp.peers.up.asn=0")).toContain(`Invalid value for network "${net}" option "bgp.peers.up.asn": Value isn't within valid range. Must be between 1 and 4294967294`);
    ok(...base, "bgp.peers.up.address=10.123.200.2", "bgp.peers.up.asn=65020", "bgp.peers.up.password=s3cret");
    let d = debug();
    const owner = d.prefixes[0]?.owner;
    expect(owner).toMatch(/^network_\d+$/);
    expect(byPrefix(d)).toEqual([
      { owner, prefix: "10.123.10.0/24", nexthop: "0.0.0.0" },
      { owner, prefix: "fd42:123:10::/64", nexthop: "::" },
    ]);
    expect(d.peers).toEqual([{ address: "10.123.200.2", asn: 65020, password: "s3cret", count: 1 }]);

    let r = await t.d.api("PATCH", `/1.0/networks/${net}`, { config: { "bgp.ipv6.nexthop": "fd42:123:10::5" } });
    expect([r.status, r.body.error]).toEqual([400, "Invalid network configuration key: bgp.ipv6.nexthop"]);
    r = await t.d.api("PATCH", `/1.0/networks/${net}`, { config: { "bgp.peers.up.address": "foo" } });
    expect([r.status, r.body.error]).toEqual([400, `Invalid value for network "${net}" option "bgp.peers.up.address": Not an IP address "foo"`]);

    ok("network", "forward", "create", net, "10.123.250.7");
    expect(debug().prefixes).toContainEqual({ owner: `${owner}_forward`, prefix: "10.123.250.7/32", nexthop: "0.0.0.0" });
    ok("network", "forward", "delete", net, "10.123.250.7");
    expect(debug().prefixes.map((p) => p.prefix)).not.toContain("10.123.250.7/32");

    // NAT on: the NAT address instead of the subnet; forwards inside the subnet are internal.
    ok("network", "set", net, "ipv4.nat=true", "ipv4.nat.address=10.123.10.3");
    ok("network", "forward", "create", net, "10.123.10.200");
    expect(byPrefix(debug())).toEqual([
      { owner, prefix: "10.123.10.3/32", nexthop: "0.0.0.0" },
      { owner, prefix: "fd42:123:10::/64", nexthop: "::" },
    ]);

    // A second network may share the peer only with the same ASN and password.
    const other = `bgbr${id}b`;
    networks.push(other);
    const otherBase = ["network", "create", other, "ipv4.address=10.123.11.1/24", "ipv4.nat=false", "ipv6.address=none"];
    expect(fails(...otherBase, "bgp.peers.x.address=10.123.200.2", "bgp.peers.x.asn=65021")).toContain(
      'Failed setting up BGP peers: Peer "10.123.200.2" already used but with differing ASN (65021 vs 65020)',
    );
    expect(sh("ip", ["link", "show", other]).code).not.toBe(0);
    ok(...otherBase, "bgp.peers.x.address=10.123.200.2", "bgp.peers.x.asn=65020", "bgp.peers.x.password=s3cret");
    expect(debug().peers).toEqual([{ address: "10.123.200.2", asn: 65020, password: "s3cret", count: 2 }]);
    ok("network", "delete", other);
    networks.splice(networks.indexOf(other), 1);

    ok("network", "delete", net);
    networks.splice(networks.indexOf(net), 1);
    expect(debug()).toEqual({ server: { address: "", asn: 0, router_id: "<nil>", running: false }, prefixes: [], peers: [] });
  });

  it("refuses server keys as LXD does", () => {
    expect(fails("config", "set", "core.bgp_asn=4294967295")).toContain("Value isn't within valid range. Must be between 0 and 4294967294");
    expect(fails("config", "set", "core.bgp_asn=x")).toContain("invalid integer");
    expect(fails("config", "set", "core.bgp_routerid=::1")).toContain('Not an IPv4 address "::1"');
  });

  it("advertises to a real BGP peer, follows changes, survives a gobgpd crash, withdraws on stop", async () => {
    startPeer();
    const net = `bgbr${id}c`;
    networks.push(net);
    ok("network", "create", net, "ipv4.address=10.123.12.1/24", "ipv4.nat=false", "ipv6.address=fd42:123:12::1/64", "ipv6.nat=false", "bgp.peers.up.address=10.123.200.2", "bgp.peers.up.asn=65020");
    ok("network", "forward", "create", net, "10.123.250.9");
    // A listener that cannot bind: GoBGP's error, nothing saved, nothing left running.
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(179, "10.123.200.1", resolve));
    try {
      expect(fails("config", "set", "core.bgp_address=10.123.200.1:179", "core.bgp_asn=65010", "core.bgp_routerid=10.123.200.1")).toContain(
        "listen tcp4 10.123.200.1:179: bind: address already in use",
      );
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
    expect(ok("config", "get", "core.bgp_address").trim()).toBe("");
    expect(debug().server).toEqual({ address: "", asn: 0, router_id: "<nil>", running: false });
    expect(existsSync(`${t.d.dir}/bgp/gobgpd.pid`)).toBe(false);
    ok("config", "set", "core.bgp_address=10.123.200.1:179", "core.bgp_asn=65010", "core.bgp_routerid=10.123.200.1");
    expect(debug().server).toEqual({ address: "10.123.200.1:179", asn: 65010, router_id: "10.123.200.1", running: true });
    // Our gobgpd: its API on a unix socket only, its config (peer passwords) root-only.
    const dir = `${t.d.dir}/bgp`;
    expect(sh("stat", ["-c", "%a", `${dir}/gobgpd.json`]).stdout.trim()).toBe("600");
    const pid = Number(readFileSync(`${dir}/gobgpd.pid`, "utf8"));
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toContain(`unix://${dir}/gobgpd.sock`);

    // The session's local address is the next hop the peer sees for 0.0.0.0 / ::.
    await waitFor(() => received("ipv4")["10.123.250.9/32"], 60_000, 500);
    expect(received("ipv4")).toEqual({ "10.123.12.0/24": "10.123.200.1", "10.123.250.9/32": "10.123.200.1" });
    await waitFor(() => received("ipv6")["fd42:123:12::/64"], 20_000, 300);

    ok("network", "forward", "delete", net, "10.123.250.9");
    await waitFor(() => !received("ipv4")["10.123.250.9/32"], 20_000, 300);

    // Peers added and removed while the listener runs reach our gobgpd (config reload).
    const ourNeighbors = () =>
      (JSON.parse(sh("gobgp", ["--target", `unix://${dir}/gobgpd.sock`, "-j", "neighbor"]).stdout || "[]") as { conf: { neighbor_address: string; peer_asn: number } }[]).map(
        (n) => `${n.conf.neighbor_address}/${n.conf.peer_asn}`,
      );
    ok("network", "set", net, "bgp.peers.two.address=10.123.200.6", "bgp.peers.two.asn=65030");
    await waitFor(() => ourNeighbors().includes("10.123.200.6/65030"), 10_000, 200);
    expect(ourNeighbors()).toContain("10.123.200.2/65020");
    ok("network", "unset", net, "bgp.peers.two.address");
    await waitFor(() => !ourNeighbors().includes("10.123.200.6/65030"), 10_000, 200);
    expect(debug().peers.map((p) => p.address)).toEqual(["10.123.200.2"]);

    // A NIC's external routes: advertised while the instance runs with them.
    const c = t.d.launch("bgp", { network: net });
    ok("config", "device", "set", c, "eth0", "ipv4.routes.external=10.123.251.0/24");
    await waitFor(() => received("ipv4")["10.123.251.0/24"], 20_000, 300);
    expect(debug().prefixes).toContainEqual(expect.objectContaining({ prefix: "10.123.251.0/24", owner: expect.stringMatching(/^instance_\d+_eth0$/) }));
    ok("stop", c, "--force");
    await waitFor(() => !received("ipv4")["10.123.251.0/24"], 20_000, 300);
    ok("start", c);
    await waitFor(() => received("ipv4")["10.123.251.0/24"], 20_000, 300);
    ok("delete", c, "--force");
    await waitFor(() => !received("ipv4")["10.123.251.0/24"], 20_000, 300);

    // gobgpd killed: restarted, and the peer gets the prefixes again.
    process.kill(pid, "SIGKILL");
    await waitFor(() => existsSync(`${dir}/gobgpd.pid`) && Number(readFileSync(`${dir}/gobgpd.pid`, "utf8")) !== pid, 20_000, 200);
    await waitFor(() => received("ipv4")["10.123.12.0/24"], 60_000, 500);

    // The daemon killed: its gobgpd outlives it (own process group); the next start ends that one
    // and runs a new one that advertises the same prefixes.
    const orphan = Number(readFileSync(`${dir}/gobgpd.pid`, "utf8"));
    await t.d.kill9();
    expect(existsSync(`/proc/${orphan}`)).toBe(true);
    await t.d.restart();
    const fresh = Number(readFileSync(`${dir}/gobgpd.pid`, "utf8"));
    expect(fresh).not.toBe(orphan);
    await waitFor(() => !existsSync(`/proc/${orphan}`) || readFileSync(`/proc/${orphan}/stat`, "utf8").includes(") Z"), 10_000, 200);
    await waitFor(() => received("ipv4")["10.123.12.0/24"], 60_000, 500);

    // NAT on: the subnet is withdrawn (no NAT address set: nothing replaces it).
    ok("network", "set", net, "ipv4.nat=true");
    await waitFor(() => !received("ipv4")["10.123.12.0/24"], 20_000, 300);

    // Listener off: gobgpd stops, the session drops, the peer holds nothing of ours.
    const last = Number(readFileSync(`${dir}/gobgpd.pid`, "utf8"));
    ok("config", "unset", "core.bgp_address");
    expect(existsSync(`/proc/${last}`) && !readFileSync(`/proc/${last}/stat`, "utf8").includes(") Z")).toBe(false);
    await waitFor(() => Object.keys(received("ipv6")).length === 0, 20_000, 300);
    expect(debug().server).toEqual({ address: "", asn: 0, router_id: "<nil>", running: true });
    ok("network", "delete", net);
    networks.splice(networks.indexOf(net), 1);
  }, 240_000);
});
