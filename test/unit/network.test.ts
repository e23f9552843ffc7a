// Pure network logic: subnet choice from local facts, fan math, key validation, and the
// exact dnsmasq / nft / ip arguments the bridge driver will run.
import { describe, expect, it } from "vitest";
import { formatIp, parseCidr, parseIp, overlaps } from "../../src/network/ipnet.js";
import { chooseIPv4Subnet, chooseIPv6Subnet, defaultUnderlay, fanAddress, fanHostRange, fanVxlanId, isSubnetFree } from "../../src/network/subnets.js";
import { bridgeKeys, macvlanKeys, tunnelKeyValidator, validateNetworkConfig } from "../../src/network/keys.js";
import { bridgeCompositeErrors, bridgeMac } from "../../src/network/drivers/bridge.js";
import { dnsmasqArgs, dnsmasqFiles, hostsLine, parseHostsLine, parseLeases } from "../../src/network/host/dnsmasq.js";
import { firewallScript } from "../../src/network/host/nft.js";
import { tunnelLinkArgs } from "../../src/network/drivers/tunnels.js";
import { planFan } from "../../src/network/drivers/fan.js";
import { networkNameError } from "../../src/network/service.js";

describe("ip arithmetic", () => {
  it("parses and formats both families", () => {
    expect(formatIp(4, parseIp("10.1.2.3")!.ip)).toBe("10.1.2.3");
    expect(formatIp(6, parseIp("fd42:0:0:1::1")!.ip)).toBe("fd42:0:0:1::1");
    expect(formatIp(6, parseIp("::")!.ip)).toBe("::");
    expect(formatIp(6, parseIp("::ffff:1.2.3.4")!.ip)).toBe("::ffff:102:304");
    expect(parseCidr("10.0.0.1/33")).toBeUndefined();
    expect(parseCidr("nope/24")).toBeUndefined();
  });
  it("detects overlap", () => {
    expect(overlaps(parseCidr("10.0.0.0/8")!, parseCidr("10.5.6.0/24")!)).toBe(true);
    expect(overlaps(parseCidr("10.0.0.0/24")!, parseCidr("10.0.1.0/24")!)).toBe(false);
    expect(overlaps(parseCidr("10.0.0.0/24")!, parseCidr("fd00::/8")!)).toBe(false);
  });
});

describe("auto subnet chooser (local facts only)", () => {
  const facts = { routes: ["default", "0.0.0.0/0", "192.0.2.0/24", "10.98.32.0/24", "fd00::/64", "fe80::/64"], addresses: ["192.0.2.2/24", "fd00::2/64", "127.0.0.1/8"], networks: ["10.97.5.1/24"] };

  it("never picks a subnet in use by a route, an address or another network", () => {
    // A random source that always proposes the taken 10.98.32.0/24 first, then 10.97.5.0/24.
    const seq = [98 / 255, 32 / 255, 97 / 255, 5 / 255, 97 / 255, 6 / 255];
    let i = 0;
    const pick = chooseIPv4Subnet(facts, () => seq[i++ % seq.length]);
    expect(pick).toBe("10.97.6.1/24");
    expect(isSubnetFree("10.98.32.0/24", facts)).toBe(false);
    expect(isSubnetFree("10.97.5.0/24", facts)).toBe(false);
    expect(isSubnetFree("10.97.6.0/24", facts)).toBe(true);
  });

  it("never overlaps the uplink 192.0.2.0/24, even without a route for it", () => {
    expect(isSubnetFree("192.0.2.0/25", { routes: [], addresses: [], networks: [] })).toBe(false);
  });

  it("ignores default routes and scans when random picks keep colliding", () => {
    const crowded = { routes: ["10.0.0.0/9", "10.128.0.0/10", "10.192.0.0/11"], addresses: [], networks: [] };
    const pick = chooseIPv4Subnet(crowded, () => 0);
    expect(pick).toBe("10.224.0.1/24");
  });

  it("fails with LXD's message when 10/8 is full", () => {
    expect(() => chooseIPv4Subnet({ routes: ["10.0.0.0/8"], addresses: [], networks: [] })).toThrow(
      "Failed to automatically find an unused IPv4 subnet, manual configuration required",
    );
  });

  it("chooses a free fd42::/64 avoiding used ULAs", () => {
    const seq = [0x1234 / 0x10000, 0, 0, 0x1234 / 0x10000, 0, 1 / 0x10000];
    let i = 0;
    const pick = chooseIPv6Subnet({ routes: ["fd42:1234::/64"], addresses: [], networks: [] }, () => seq[i++]);
    expect(pick).toBe("fd42:1234:0:1::1/64");
  });
});

describe("fan overlay math", () => {
  it("computes LXD's fan address for /16 and /24 underlays", () => {
    expect(fanAddress("10.1.0.0/16", "240.0.0.0/8", "10.1.2.3")).toEqual({ address: "240.2.3.1", cidr: "240.2.3.1/8" });
    expect(fanAddress("192.168.1.0/24", "240.0.0.0/8", "192.168.1.5")).toEqual({ address: "240.5.0.1", cidr: "240.5.0.1/8" });
    expect(fanAddress("192.168.1.0/24", "250.1.0.0/16", "192.168.1.7")).toEqual({ address: "250.1.7.1", cidr: "250.1.7.1/16" });
  });
  it("refuses unsupported sizes with LXD's messages", () => {
    expect(() => fanAddress("10.0.0.0/8", "240.0.0.0/8", "10.1.2.3")).toThrow("Only /16 or /24 underlays are supported at this time");
    expect(() => fanAddress("10.1.0.0/16", "240.0.0.0/4", "10.1.2.3")).toThrow("Only /8 or /16 overlays are supported at this time");
    expect(() => fanAddress("10.1.0.0/16", "250.1.0.0/16", "10.1.2.3")).toThrow("Underlay or overlay networks too large to accommodate the FAN");
    expect(() => fanAddress("10.1.0.0/16", "240.0.0.0/8", "10.2.0.1")).toThrow("not in the underlay");
  });
  it("derives the VXLAN id, DHCP range and auto underlay", () => {
    expect(fanVxlanId("240.0.0.0/8")).toBe(0xf00000);
    expect(fanHostRange("240.2.3.1")).toEqual({ first: "240.2.3.2", last: "240.2.3.254" });
    expect(defaultUnderlay("eth0", [{ dev: "eth0", cidr: "192.0.2.2/24" }, { dev: "lo", cidr: "127.0.0.1/8" }])).toBe("192.0.2.0/24");
  });
  it("plans the fan-map tunnel commands as LXD runs them", () => {
    const plan = planFan("fanbr", { "bridge.mode": "fan", "fan.underlay_subnet": "192.0.2.0/24" }, [{ dev: "eth0", cidr: "192.0.2.2/24" }], () => 1400);
    expect(plan.bridgeCidr).toBe("240.2.0.1/8");
    expect(plan.mtu).toBe(1350);
    expect(plan.commands).toEqual([
      ["link", "add", "fanbr-fan", "type", "vxlan", "id", "15728640", "dev", "eth0", "dstport", "0", "local", "192.0.2.2", "fan-map", "240.0.0.0/8:192.0.2.0/24"],
    ]);
    const ipip = planFan("fanbr", { "bridge.mode": "fan", "fan.type": "ipip", "fan.underlay_subnet": "192.0.2.0/24" }, [{ dev: "eth0", cidr: "192.0.2.2/24" }], () => 1400);
    expect(ipip.bridgeCidr).toBe("240.2.0.1/24");
    expect(ipip.commands[2]).toEqual(["link", "change", "dev", "tunl0", "type", "ipip", "fan-map", "240.0.0.0/8:192.0.2.0/24"]);
  });
});

describe("network config validation (LXD messages)", () => {
  const v = (config: Record<string, string>, name = "br0") => () => validateNetworkConfig(name, bridgeKeys, config, tunnelKeyValidator);
  it("accepts a typical bridge config", () => {
    expect(v({ "ipv4.address": "10.97.1.1/24", "ipv4.nat": "false", "ipv6.address": "none", "user.x": "y", "tunnel.t1.protocol": "vxlan", "tunnel.t1.id": "5" })).not.toThrow();
  });
  it.each([
    [{ foo: "bar" }, 'Invalid option for network "br0" option "foo"'],
    [{ "ipv4.nat": "maybe" }, 'Invalid value for network "br0" option "ipv4.nat": Invalid value for a boolean "maybe"'],
    [{ "ipv4.address": "bogus" }, 'Invalid value for network "br0" option "ipv4.address": invalid CIDR address: bogus'],
    [{ "ipv4.address": "10.97.253.0/24" }, 'option "ipv4.address": Not a usable IPv4 address "10.97.253.0/24"'],
    [{ "ipv4.address": "fd00::1/64" }, 'option "ipv4.address": Not an IPv4 address "fd00::1/64"'],
    [{ "ipv6.address": "10.0.0.1/24" }, 'option "ipv6.address": Not an IPv6 address "10.0.0.1/24"'],
    [{ "ipv4.dhcp.ranges": "x" }, 'option "ipv4.dhcp.ranges": Item "x": IP range must contain start and end IP addresses'],
    [{ "bridge.mtu": "abc" }, 'option "bridge.mtu": Invalid MTU "abc"'],
    [{ "bridge.mtu": "100" }, 'option "bridge.mtu": Out of MTU range (1280-16384) "100"'],
    [{ "bridge.hwaddr": "zz" }, "Invalid MAC address, must be 6 bytes of hex separated by colons"],
    [{ "dns.mode": "x" }, 'Invalid value "x" (not one of [dynamic managed none])'],
    [{ "bridge.driver": "x" }, 'Invalid value "x" (not one of [native openvswitch])'],
    [{ "tunnel.t1.protocol": "x" }, 'option "tunnel.t1.protocol": Invalid value "x" (not one of [gre vxlan])'],
    [{ "tunnel.t1.id": "x" }, 'Invalid value for an integer "x"'],
    [{ "tunnel.t1.ttl": "x" }, 'Invalid value for an integer "x". Must be between 0 and 255'],
    [{ "tunnel.t1.port": "x" }, "Invalid value for an integer: x"],
    [{ "tunnel.t1.local": "x" }, 'Not an IP address "x"'],
    [{ "tunnel.t1.bogus": "x" }, 'Invalid option for network "br0" option "tunnel.t1.bogus"'],
    [{ "fan.type": "x" }, 'Invalid value "x" (not one of [vxlan ipip])'],
    [{ "bridge.external_interfaces": "a b" }, 'Invalid interface name "a b": Network interface contains invalid characters'],
    [{ "ipv4.routes": "x" }, 'Item "x": invalid CIDR address: x'],
  ])("%j → %s", (config, message) => {
    expect(v(config)).toThrow(message);
  });
  it("applies LXD's composite fan rules", () => {
    expect(bridgeCompositeErrors("br0", { "bridge.mode": "fan", "ipv4.address": "10.0.0.1/24" })).toBe("IPv4 configuration may not be set when in 'fan' mode");
    expect(bridgeCompositeErrors("br0", { "bridge.mode": "fan", "ipv6.address": "none" })).toBe("IPv6 configuration may not be set when in 'fan' mode");
    expect(bridgeCompositeErrors("br0", { "fan.type": "ipip" })).toBe("FAN configuration may only be set when in 'fan' mode");
    expect(bridgeCompositeErrors("averylongnam", { "bridge.mode": "fan" })).toBe("Network name too long to use with the FAN (must be 11 characters or less)");
    expect(bridgeCompositeErrors("br0", { "bridge.mode": "fan", "bridge.mtu": "1480" })).toBe("Maximum MTU for a VXLAN FAN bridge is 1450");
    expect(bridgeCompositeErrors("br0", { "bridge.mode": "fan", "ipv4.nat": "true", "fan.underlay_subnet": "10.0.0.0/16" })).toBeUndefined();
  });
  it("requires a parent for macvlan networks", () => {
    expect(() => validateNetworkConfig("mv", macvlanKeys, {})).toThrow('Invalid value for network "mv" option "parent": Required value');
  });
  it("checks network names like LXD", () => {
    expect(networkNameError("bad/name")).toBe("Network interface contains invalid characters");
    expect(networkNameError("waytoolongname12345")).toBe("Network interface is too long (maximum 15 characters)");
    expect(networkNameError("br-0.x_y")).toBeUndefined();
  });
  it("generates stable LXD-style bridge MACs", () => {
    expect(bridgeMac("a")).toMatch(/^00:16:3e(:[0-9a-f]{2}){3}$/);
    expect(bridgeMac("a")).toBe(bridgeMac("a"));
    expect(bridgeMac("a")).not.toBe(bridgeMac("b"));
  });
});

describe("host command generation", () => {
  const files = dnsmasqFiles("/x/networks/br0");
  it("builds dnsmasq's command line as LXD does", () => {
    const args = dnsmasqArgs("br0", { "ipv4.address": "10.98.32.1/24", "ipv4.nat": "false", "ipv6.address": "none" }, files, { group: "lxd" });
    expect(args.join(" ")).toBe(
      "--keep-in-foreground --strict-order --bind-interfaces --except-interface=lo --pid-file= --no-ping --interface=br0 --dhcp-rapid-commit --quiet-dhcp --quiet-dhcp6 --quiet-ra " +
        "--listen-address=10.98.32.1 --dhcp-no-override --dhcp-authoritative --dhcp-leasefile=/x/networks/br0/dnsmasq.leases --dhcp-hostsfile=/x/networks/br0/dnsmasq.hosts " +
        "--dhcp-range 10.98.32.2,10.98.32.254,1h -s lxd --interface-name _gateway.lxd,br0 -S /lxd/ --conf-file=/x/networks/br0/dnsmasq.raw -u nobody -g lxd",
    );
  });
  it("honours ranges, expiry, dhcp=false, IPv6 modes and dns.mode=none", () => {
    const a = dnsmasqArgs("br0", { "ipv4.address": "10.0.0.1/24", "ipv4.dhcp.ranges": "10.0.0.10-10.0.0.20", "ipv4.dhcp.expiry": "2h", "dns.mode": "none" }, files, { group: "g" });
    expect(a).toContain("10.0.0.10,10.0.0.20,2h");
    expect(a).not.toContain("-s");
    const b = dnsmasqArgs("br0", { "ipv4.address": "10.0.0.1/24", "ipv4.dhcp": "false", "ipv6.address": "fd42::1/64" }, files, { group: "g" });
    expect(b).not.toContain("--dhcp-leasefile=/x/networks/br0/dnsmasq.leases");
    expect(b).toContain("::,constructor:br0,ra-stateless,ra-names");
    const c = dnsmasqArgs("br0", { "ipv6.address": "fd42::1/64", "ipv6.dhcp.stateful": "true" }, files, { group: "g" });
    expect(c).toContain("fd42::2,fd42::ffff:ffff:ffff:ffff,64,1h");
  });
  it("reads and writes dnsmasq host and lease files", () => {
    expect(hostsLine({ hwaddr: "00:16:3e:00:00:01", ipv4: "10.0.0.5", hostname: "c1" })).toBe("00:16:3e:00:00:01,10.0.0.5,c1");
    expect(parseHostsLine("00:16:3e:00:00:01,10.0.0.5,[fd42::5],c1")).toEqual({ hwaddr: "00:16:3e:00:00:01", ipv4: "10.0.0.5", ipv6: "fd42::5", hostname: "c1" });
    expect(parseLeases("1795823048 00:16:3e:61:f1:5a 10.98.32.124 hx-instref 01:00:16:3e:61:f1:5a\nduid 00:01\n1795823048 1234 fd42::9 c2 00:02\n")).toEqual([
      { expiry: 1795823048, hwaddr: "00:16:3e:61:f1:5a", address: "10.98.32.124", hostname: "hx-instref" },
      { expiry: 1795823048, hwaddr: "", address: "fd42::9", hostname: "c2" },
    ]);
  });
  it("writes the network's chains in LXD's inet lxd table, NAT only when asked", () => {
    const s = firewallScript("br0", { bridge: "br0", nat4: { subnet: "10.0.0.0/24" }, firewall4: true, firewall6: false });
    expect(s).toContain("table inet lxd {\n\tchain in.br0 {\n\t\ttype filter hook input priority 0; policy accept;\n");
    expect(s).toContain("\tchain pstrt.br0 {\n\t\ttype nat hook postrouting priority 100; policy accept;\n\t\tip saddr 10.0.0.0/24 ip daddr != 10.0.0.0/24 masquerade\n");
    expect(s).toContain('ip version 4 oifname "br0" accept');
    // The old chains go first (flushed, so "acl" is unreferenced when deleted), in one transaction.
    expect(s.indexOf("delete chain inet lxd aclin.br0")).toBeLessThan(s.indexOf("delete chain inet lxd acl.br0"));
    expect(s.indexOf("flush chain inet lxd aclin.br0")).toBeLessThan(s.indexOf("delete chain inet lxd aclin.br0"));
    expect(s).not.toContain("chain acl.br0 {");
    expect(firewallScript("br0", { bridge: "br0", firewall4: true, firewall6: false })).not.toContain("masquerade");
    const acl = firewallScript("br0", { bridge: "br0", firewall4: false, firewall6: false, acl: ["reject"] });
    expect(acl).toContain('iifname "br0" jump acl.br0');
    expect(acl).toContain("\tchain acl.br0 {\n\t\tct state established,related accept\n\t\treject\n\t}");
    expect(() => firewallScript("br 0", { bridge: "br 0", firewall4: true, firewall6: false })).toThrow(/Invalid nftables chain name part/);
  });
  it("builds VXLAN and GRE tunnel links like LXD", () => {
    expect(tunnelLinkArgs("br0", "t1", { protocol: "vxlan", local: "10.0.0.1", remote: "10.0.0.2", id: "7" })).toEqual(
      ["link", "add", "dev", "br0-t1", "type", "vxlan", "local", "10.0.0.1", "remote", "10.0.0.2", "dstport", "0", "id", "7", "ttl", "1"],
    );
    expect(tunnelLinkArgs("br0", "t2", { protocol: "vxlan" }, "eth0")).toEqual(
      ["link", "add", "dev", "br0-t2", "type", "vxlan", "group", "239.0.0.1", "dev", "eth0", "dstport", "0", "id", "1", "ttl", "1"],
    );
    expect(tunnelLinkArgs("br0", "g", { protocol: "gre", local: "1.1.1.1", remote: "2.2.2.2" })).toEqual(["link", "add", "dev", "br0-g", "type", "gretap", "local", "1.1.1.1", "remote", "2.2.2.2"]);
    expect(tunnelLinkArgs("br0", "g", { protocol: "gre", local: "1.1.1.1" })).toBeUndefined();
  });
});
