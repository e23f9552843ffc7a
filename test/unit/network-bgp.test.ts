// LXD 5.0.2's BGP rules (lxd/network/driver_common.go, lxd/bgp): keys, peers, prefixes, next
// hops, the speaker's bookkeeping and debug shape, and the gobgpd config we generate.
import { describe, expect, it } from "vitest";
import pino from "pino";
import { bgpKeyRules, bgpListenAddress, bgpNextHop, bgpPeersOf, forwardPrefixes, networkPrefixes, nicPrefixes } from "../../src/network/bgp/rules.js";
import { gobgpdConfig, gobgpdError, ribPaths } from "../../src/network/bgp/gobgpd.js";
import { BgpSpeaker, type BgpBackend } from "../../src/network/bgp/speaker.js";

describe("bgp.* keys as 5.0.2 validates them", () => {
  it("refuses any bgp. key without four fields before other checks (bgp.ipv4.nexthop included)", () => {
    expect(() => bgpKeyRules({ "bgp.ipv4.nexthop": "10.0.0.1" })).toThrow("Invalid network configuration key: bgp.ipv4.nexthop");
    expect(() => bgpKeyRules({ "bgp.peers.a.b.c": "1" })).toThrow("Invalid network configuration key: bgp.peers.a.b.c");
    expect(() => bgpKeyRules({ "bgp.x": "1" })).toThrow("Invalid network configuration key: bgp.x");
  });
  it("gives address/asn/password rules, and none for other fields (so they are unknown options)", () => {
    const rules = bgpKeyRules({ "bgp.peers.a.address": "", "bgp.peers.a.asn": "", "bgp.peers.a.password": "", "bgp.peers.a.holdtime": "" });
    expect(Object.keys(rules).sort()).toEqual(["bgp.peers.a.address", "bgp.peers.a.asn", "bgp.peers.a.password"]);
    expect(() => rules["bgp.peers.a.address"]("foo")).toThrow('Not an IP address "foo"');
    expect(() => rules["bgp.peers.a.asn"]("x")).toThrow('Invalid value for an integer "x"');
    expect(() => rules["bgp.peers.a.asn"]("0")).toThrow("Value isn't within valid range. Must be between 1 and 4294967294");
    expect(() => rules["bgp.peers.a.asn"]("4294967294")).not.toThrow();
    expect(bgpKeyRules({})["constructor"]).toBeUndefined();
  });
});

describe("peers, prefixes and next hops", () => {
  it("lists peers that have an address and an ASN", () => {
    expect(bgpPeersOf({ "bgp.peers.a.address": "10.0.0.1", "bgp.peers.a.asn": "65000", "bgp.peers.b.address": "10.0.0.2", "bgp.peers.c.asn": "1", "bgp.peers.d.address": "fd00::1", "bgp.peers.d.asn": "2", "bgp.peers.d.password": "p,w" })).toEqual([
      "10.0.0.1,65000,",
      "fd00::1,2,p,w",
    ]);
  });
  it("uses bgp.ipvN.nexthop, then volatile.network.ipvN.address, then the wildcard", () => {
    expect(bgpNextHop({}, 4)).toBe("0.0.0.0");
    expect(bgpNextHop({}, 6)).toBe("::");
    expect(bgpNextHop({ "volatile.network.ipv6.address": "fd00:0::5" }, 6)).toBe("fd00::5");
    expect(bgpNextHop({ "bgp.ipv4.nexthop": "10.0.0.9", "volatile.network.ipv4.address": "10.0.0.5" }, 4)).toBe("10.0.0.9");
  });
  it("exports the subnet without NAT, the NAT address with it", () => {
    expect(networkPrefixes({ "ipv4.address": "10.1.2.1/24", "ipv6.address": "fd42:1:2::1/64" })).toEqual([
      { prefix: "10.1.2.0/24", nexthop: "0.0.0.0" },
      { prefix: "fd42:1:2::/64", nexthop: "::" },
    ]);
    expect(networkPrefixes({ "ipv4.address": "10.1.2.1/24", "ipv4.nat": "true", "ipv6.address": "none" })).toEqual([]);
    expect(networkPrefixes({ "ipv4.address": "10.1.2.1/24", "ipv4.nat": "true", "ipv4.nat.address": "10.9.9.9" })).toEqual([{ prefix: "10.9.9.9/32", nexthop: "0.0.0.0" }]);
  });
  it("exports forwards as host routes, except those inside a NATed subnet", () => {
    const config = { "ipv4.address": "10.1.2.1/24", "ipv4.nat": "true", "ipv6.address": "fd42::1/64" };
    expect(forwardPrefixes(config, ["10.1.2.50", "198.51.100.1", "fd42::50"])).toEqual([
      { prefix: "198.51.100.1/32", nexthop: "0.0.0.0" },
      { prefix: "fd42::50/128", nexthop: "::" },
    ]);
  });
  it("exports a NIC's external routes with the network's next hops", () => {
    expect(nicPrefixes({}, { "ipv4.routes.external": "10.5.0.7/24, 10.6.0.0/16", "ipv6.routes.external": "fd43::/64", "ipv4.routes": "10.7.0.0/16" })).toEqual([
      { prefix: "10.5.0.0/24", nexthop: "0.0.0.0" },
      { prefix: "10.6.0.0/16", nexthop: "0.0.0.0" },
      { prefix: "fd43::/64", nexthop: "::" },
    ]);
  });
  it("splits core.bgp_address as LXD does", () => {
    expect(bgpListenAddress("10.0.0.1")).toEqual({ host: "10.0.0.1", port: 179 });
    expect(bgpListenAddress(":1790")).toEqual({ host: "::", port: 1790 });
    expect(bgpListenAddress("[fd00::1]:179")).toEqual({ host: "fd00::1", port: 179 });
  });
});

/** A backend that records calls (the speaker's own bookkeeping is what is tested here). */
function recorder() {
  const calls: string[] = [];
  const backend: BgpBackend = {
    start: async (g, peers, paths) => void calls.push(`start ${g.address} ${peers.length} ${paths.length}`),
    stop: async () => void calls.push("stop"),
    setPeers: async (peers) => void calls.push(`peers ${peers.map((p) => p.address).join(",")}`),
    setPaths: async (paths) => void calls.push(`paths ${paths.map((p) => p.prefix).join(",")}`),
  };
  return { calls, speaker: new BgpSpeaker(backend, pino({ level: "silent" })) };
}

describe("the speaker (lxd/bgp.Server)", () => {
  it("keeps prefixes and peers without a listener and answers LXD's debug shape", async () => {
    const { calls, speaker } = recorder();
    await speaker.addPrefix("10.0.0.0/24", "0.0.0.0", "network_1");
    await speaker.addPeer("10.9.0.1", 65001, "pw");
    await speaker.addPeer("10.9.0.1", 65001, "pw");
    await expect(speaker.addPeer("10.9.0.1", 65002, "pw")).rejects.toThrow('Peer "10.9.0.1" already used but with differing ASN (65002 vs 65001)');
    await expect(speaker.addPeer("10.9.0.1", 65001, "other")).rejects.toThrow('Peer "10.9.0.1" already used but with a different password');
    await expect(speaker.removePeer("10.9.0.2")).rejects.toThrow("Peer not found");
    expect(speaker.debug()).toEqual({
      server: { address: "", asn: 0, router_id: "<nil>", running: false },
      prefixes: [{ owner: "network_1", prefix: "10.0.0.0/24", nexthop: "0.0.0.0" }],
      peers: [{ address: "10.9.0.1", asn: 65001, password: "pw", count: 2 }],
    });
    expect(calls).toEqual([]);
  });

  it("starts only with address, ASN and router ID, pushes changes while running, and stays 'running' after a stop as LXD", async () => {
    const { calls, speaker } = recorder();
    await speaker.addPrefix("10.0.0.0/24", "0.0.0.0", "network_1");
    await speaker.reconfigure("10.0.0.1:179", 0, "10.0.0.1");
    expect(calls).toEqual([]);
    await speaker.reconfigure("10.0.0.1:179", 65000, "10.0.0.1");
    await speaker.reconfigure("10.0.0.1:179", 65000, "10.0.0.1");
    expect(calls).toEqual(["start 10.0.0.1:179 0 1"]);
    await speaker.replacePrefixes("network_1_forward", [{ prefix: "198.51.100.1/32", nexthop: "0.0.0.0" }]);
    await speaker.addPeer("10.9.0.1", 65001, "");
    await speaker.removePrefixByOwner("network_1");
    expect(calls.slice(1)).toEqual(["paths 10.0.0.0/24,198.51.100.1/32", "peers 10.9.0.1", "paths 198.51.100.1/32"]);
    expect(speaker.debug().server).toEqual({ address: "10.0.0.1:179", asn: 65000, router_id: "10.0.0.1", running: true });
    await speaker.reconfigure("", 65000, "10.0.0.1");
    expect(calls.at(-1)).toBe("stop");
    expect(speaker.debug().server).toEqual({ address: "", asn: 0, router_id: "<nil>", running: true });
  });
});

describe("gobgpd's config", () => {
  it("binds the listener, and opens sessions from a specific listen address of the peer's family", () => {
    const c = gobgpdConfig({ address: "10.0.0.1:1790", asn: 65000, routerId: "10.0.0.1" }, [
      { address: "10.0.0.2", asn: 65001, password: 'a"b' },
      { address: "fd00::2", asn: 65002, password: "" },
    ]) as { global: unknown; neighbors: Record<string, unknown>[] };
    expect(c.global).toEqual({ config: { as: 65000, "router-id": "10.0.0.1", port: 1790, "local-address-list": ["10.0.0.1"] } });
    expect(c.neighbors[0].config).toEqual({ "neighbor-address": "10.0.0.2", "peer-as": 65001, "auth-password": 'a"b' });
    expect(c.neighbors[0].transport).toEqual({ config: { "local-address": "10.0.0.1" } });
    expect(c.neighbors[1].transport).toBeUndefined();
    expect(c.neighbors[0]["graceful-restart"]).toEqual({ config: { enabled: true, "restart-time": 120 } });
    expect(c.neighbors[0]["ebgp-multihop"]).toEqual({ config: { enabled: true, "multihop-ttl": 255 } });
  });
  it("reads the global RIB's prefixes and next hops from `gobgp -j`", () => {
    const json =
      '{"10.123.0.0/24":[{"nlri":{"prefix":"10.123.0.0/24"},"best":true,"attrs":[{"type":1,"value":0},{"type":3,"nexthop":"10.123.0.1"}]}],' +
      '"fd42:b9::/64":[{"nlri":{"prefix":"fd42:b9::/64"},"attrs":[{"type":1,"value":0},{"type":14,"nexthop":"::","afi":2,"safi":1}]}]}';
    expect([...ribPaths(json)]).toEqual([
      ["10.123.0.0/24", "10.123.0.1"],
      ["fd42:b9::/64", "::"],
    ]);
    expect(ribPaths("{}").size).toBe(0);
  });
  it("reports a gobgpd start failure with GoBGP's own error, as LXD's embedded server returns it", () => {
    const out =
      'time="2026-12-05T10:04:35Z" level=info msg="gobgpd started"\n' +
      'time="2026-12-05T10:04:35Z" level=fatal msg="failed to set global config" Error="listen tcp4 127.0.0.120:17990: bind: address already in use" Topic=config\n';
    expect(gobgpdError(out)).toBe("listen tcp4 127.0.0.120:17990: bind: address already in use");
    expect(gobgpdError('time="x" level=fatal msg="failed to listen grpc port" Err="listen unix /x.sock: bind: address already in use"')).toBe("listen unix /x.sock: bind: address already in use");
    expect(gobgpdError("")).toBeUndefined();
  });
});
