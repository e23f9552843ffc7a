// A bridged NIC's MAC/IP filters and the DHCP allocation behind them, as LXD writes them
// (nftablesInstanceBridgeFilter, dhcpalloc).
import { describe, expect, it } from "vitest";
import { allocate, DhcpNotSupported, eui64 } from "../../src/network/dhcp-alloc.js";
import { bridgeFilterChains, bridgeFilterScript } from "../../src/network/host/bridge-filter.js";
import { formatIp, parseCidr } from "../../src/network/ipnet.js";

const MAC = "00:16:3e:92:f3:c1";

describe("bridge filter chains", () => {
  it("MAC filtering alone: spoofed source MACs, ARP and NDP sources dropped, nothing else", () => {
    const c = bridgeFilterChains({ label: "c1.eth0", hostName: "veth1", hwaddr: MAC });
    expect(c.in).toEqual([
      'iifname "veth1" ether saddr != 00:16:3e:92:f3:c1 drop',
      'iifname "veth1" ether type arp arp saddr ether != 00:16:3e:92:f3:c1 drop',
      'iifname "veth1" ether type ip6 icmpv6 type 136 @nh,528,48 != 0x00163e92f3c1 drop',
    ]);
    expect(c.fwd).toEqual(c.in);
  });

  it("IPv4 filtering allows the address and routes, DHCP in on input only, then drops the rest", () => {
    const c = bridgeFilterChains({ label: "c1.eth0", hostName: "veth1", hwaddr: MAC, ipv4Nets: ["10.0.0.2/32", "198.51.100.0/24"] });
    expect(c.in).toContain('iifname "veth1" ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp dport 67 accept');
    expect(c.fwd).not.toContain('iifname "veth1" ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp dport 67 accept');
    expect(c.in).toContain('iifname "veth1" ether type ip ip saddr 10.0.0.2 accept');
    expect(c.in).toContain('iifname "veth1" ether type arp arp saddr ip 198.51.100.0/24 accept');
    expect(c.in.slice(-3)).toEqual(['iifname "veth1" ether type arp drop', 'iifname "veth1" ether type ip drop', 'iifname "veth1" ether type != { arp, ip, ip6 } drop']);
  });

  it("an empty allow list drops the whole family; NDP targets match by prefix bits", () => {
    expect(bridgeFilterChains({ label: "a.b", hostName: "v", hwaddr: MAC, ipv4Nets: [] }).in.slice(-2)).toEqual(['iifname "v" ether type arp drop', 'iifname "v" ether type ip drop']);
    const c = bridgeFilterChains({ label: "a.b", hostName: "v", hwaddr: MAC, ipv6Nets: ["2001:db8:1::2/128", "2001:db8:2::/64"] });
    expect(c.in).toContain('iifname "v" ether type ip6 icmpv6 type 136 @nh,384,128 0x20010db8000100000000000000000002 accept');
    expect(c.in).toContain('iifname "v" ether type ip6 icmpv6 type 136 @nh,384,64 0x20010db800020000 accept');
    expect(c.in).toContain('iifname "v" ether type ip6 ip6 saddr 2001:db8:2::/64 accept');
    expect(c.in).toContain('iifname "v" ether type ip6 icmpv6 type 134 drop');
  });

  it("chains named <kind>.<label> in bridge lxd, replaced in one transaction; hostile names refused", () => {
    const s = bridgeFilterScript({ label: "p1_c1.eth0", hostName: "veth1", hwaddr: MAC });
    expect(s.startsWith("add table bridge lxd\n")).toBe(true);
    expect(s).toContain("delete chain bridge lxd in.p1_c1.eth0");
    expect(s).toContain("\tchain fwd.p1_c1.eth0 {\n\t\ttype filter hook forward priority -200; policy accept;\n");
    expect(() => bridgeFilterScript({ label: "c1; flush ruleset", hostName: "veth1", hwaddr: MAC })).toThrow(/Invalid bridge filter label/);
    expect(() => bridgeFilterScript({ label: "c1.eth0", hostName: 'v" accept', hwaddr: MAC })).toThrow(/Invalid host interface name/);
    expect(() => bridgeFilterScript({ label: "c1.eth0", hostName: "v", hwaddr: "00:11" })).toThrow(/Invalid MAC/);
  });
});

describe("DHCP allocation for filtered NICs", () => {
  const net = { "ipv4.address": "10.0.0.1/24", "ipv6.address": "2001:db8:1::1/64" };
  const base = { network: net, entry: "c1.eth0", hwaddr: MAC, used: [] };

  it("keeps the NIC's own static file or the lease of its MAC, else the first free address", () => {
    expect(allocate({ ...base, family: 4, current: "10.0.0.7" })).toBe("10.0.0.7");
    expect(allocate({ ...base, family: 4, used: [{ hwaddr: MAC, address: "10.0.0.2" }] })).toBe("10.0.0.2");
    expect(allocate({ ...base, family: 4, used: [{ hwaddr: "00:16:3e:55:4c:fd", address: "10.0.0.2" }] })).toBe("10.0.0.3");
    expect(allocate({ ...base, family: 4, used: [{ entry: "c2.eth0", hwaddr: "00:16:3e:00:00:01", address: "10.0.0.2" }] })).toBe("10.0.0.3");
  });

  it("moves into new DHCP ranges, and never hands out the range's last address", () => {
    const ranged = { ...net, "ipv4.dhcp.ranges": "10.0.0.100-10.0.0.101" };
    expect(allocate({ ...base, network: ranged, family: 4, current: "10.0.0.3" })).toBe("10.0.0.100");
    expect(() => allocate({ ...base, network: ranged, family: 4, used: [{ address: "10.0.0.100" }] })).toThrow("No available IP could not be found");
  });

  it("IPv6: the SLAAC address when free, else the first free address; no DHCP means none", () => {
    expect(formatIp(6, eui64(parseCidr("2001:db8:1::1/64")!, MAC))).toBe("2001:db8:1:0:216:3eff:fe92:f3c1");
    expect(allocate({ ...base, family: 6 })).toBe("2001:db8:1:0:216:3eff:fe92:f3c1");
    expect(allocate({ ...base, family: 6, used: [{ address: "2001:db8:1:0:216:3eff:fe92:f3c1" }] })).toBe("2001:db8:1::2");
    expect(() => allocate({ ...base, network: { "ipv4.address": "none" }, family: 4 })).toThrow(DhcpNotSupported);
    expect(() => allocate({ ...base, network: { ...net, "ipv4.dhcp": "false" }, family: 4 })).toThrow(DhcpNotSupported);
  });
});
