// Network forwards: LXD 5.0.2's validation and the nft rules it generates (the upstream
// network_forward expectations, on the rule text).
import { describe, expect, it } from "vitest";
import { forwardNftRules, normaliseForward, parseListenAddress, validateForward, type ForwardPut } from "../../src/network/forwards/rules.js";

const put = (p: Partial<ForwardPut> = {}): ForwardPut => ({ description: "", config: {}, ports: [], ...p });
const port = (protocol: string, listen_port: string, target_address: string, target_port = "") => ({ description: "", protocol, listen_port, target_port, target_address });
const v4 = { family: 4 as const };
const subnets = { 4: "192.0.2.1/24" };
const fail = (p: ForwardPut) => {
  try {
    validateForward(v4, p, subnets);
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
};

describe("forward validation", () => {
  it("refuses what upstream's suite refuses", () => {
    expect(fail(put({ config: { target_address: "192.0.2.2" }, ports: [port("tcp", "80", "192.0.2.2")] }))).toBe("Target address is same as default target address in port specification 0");
    expect(fail(put({ ports: [port("tcp", "80", "192.0.2.3", "80-81")] }))).toBe("Mismatch of listen port(s) and target port(s) count in port specification 0");
    expect(fail(put({ ports: [port("tcp", "80-81", "192.0.2.3"), port("tcp", "80", "192.0.2.3", "90")] }))).toBe('Duplicate listen port 80 for protocol "tcp" in port specification 1');
    expect(fail(put({ ports: [port("tcp", "82,83,84", "192.0.2.3", "90,91")] }))).toBe("Mismatch of listen port(s) and target port(s) count in port specification 0");
    expect(fail(put({ config: { x: "y" } }))).toBe('Invalid option "x"');
    expect(fail(put({ config: { target_address: "10.0.0.1" } }))).toBe("Default target address is not within the network subnet");
    expect(fail(put({ config: { target_address: "fd00::1" } }))).toBe("Cannot mix IP versions in listen address and default target address");
    expect(fail(put({ ports: [port("sctp", "80", "192.0.2.3")] }))).toBe("Invalid port protocol in port specification 0, protocol must be one of: tcp, udp");
    expect(fail(put({ ports: [port("tcp", "", "192.0.2.3")] }))).toBe("Missing listen port in port specification 0");
    expect(fail(put({ ports: [port("tcp", "90-80", "192.0.2.3")] }))).toBe("Invalid listen port in port specification 0: End port should be higher than start port");
    expect(fail(put({ ports: [port("tcp", "70000", "192.0.2.3")] }))).toBe('Out of port number range (0-65535) "70000"');
    expect(() => parseListenAddress("foo")).toThrow('Failed parsing address forward listen address "foo": invalid CIDR address: foo/32');
  });

  it("normalises spaces and address forms", () => {
    expect(normaliseForward(put({ config: { target_address: "fd00:0::1" }, ports: [port(" tcp ", "80, 81", " 192.0.2.3 ", "90 ,91")] }))).toEqual({
      description: "",
      config: { target_address: "fd00::1" },
      ports: [port("tcp", "80,81", "192.0.2.3", "90,91")],
    });
  });
});

describe("forward firewall rules", () => {
  it("are LXD's: port rules first, one hairpin rule per target port, default targets last", () => {
    const p = put({
      config: { target_address: "192.0.2.2" },
      ports: [port("tcp", "80-81", "192.0.2.3"), port("udp", "80", "192.0.2.3", "90"), port("tcp", "82-83,84", "192.0.2.3", "90,91-92"), port("tcp", "85-86", "192.0.2.4", "99")],
    });
    const ports = validateForward(v4, p, subnets);
    const { dnat, snat } = forwardNftRules([{ listen: "198.51.100.1", family: 4, defaultTarget: "192.0.2.2", ports }]);
    expect(dnat).toEqual([
      "ip daddr 198.51.100.1 tcp dport 80 dnat to 192.0.2.3:80",
      "ip daddr 198.51.100.1 tcp dport 81 dnat to 192.0.2.3:81",
      "ip daddr 198.51.100.1 udp dport 80 dnat to 192.0.2.3:90",
      "ip daddr 198.51.100.1 tcp dport 82 dnat to 192.0.2.3:90",
      "ip daddr 198.51.100.1 tcp dport 83 dnat to 192.0.2.3:91",
      "ip daddr 198.51.100.1 tcp dport 84 dnat to 192.0.2.3:92",
      "ip daddr 198.51.100.1 tcp dport 85 dnat to 192.0.2.4:99",
      "ip daddr 198.51.100.1 tcp dport 86 dnat to 192.0.2.4:99",
      "ip daddr 198.51.100.1 dnat to 192.0.2.2",
    ]);
    expect(snat).toEqual([
      "ip saddr 192.0.2.3 ip daddr 192.0.2.3 tcp dport 80 masquerade",
      "ip saddr 192.0.2.3 ip daddr 192.0.2.3 tcp dport 81 masquerade",
      "ip saddr 192.0.2.3 ip daddr 192.0.2.3 udp dport 90 masquerade",
      "ip saddr 192.0.2.3 ip daddr 192.0.2.3 tcp dport 90 masquerade",
      "ip saddr 192.0.2.3 ip daddr 192.0.2.3 tcp dport 91 masquerade",
      "ip saddr 192.0.2.3 ip daddr 192.0.2.3 tcp dport 92 masquerade",
      "ip saddr 192.0.2.4 ip daddr 192.0.2.4 tcp dport 99 masquerade",
      "ip saddr 192.0.2.2 ip daddr 192.0.2.2 masquerade",
    ]);
  });

  it("brackets IPv6 targets", () => {
    const ports = validateForward({ family: 6 }, put({ ports: [port("tcp", "80", "fd00::3", "8080")] }), { 6: "fd00::1/64" });
    expect(forwardNftRules([{ listen: "fd00::100", family: 6, defaultTarget: "fd00::2", ports }]).dnat).toEqual([
      "ip6 daddr fd00::100 tcp dport 80 dnat to [fd00::3]:8080",
      "ip6 daddr fd00::100 dnat to [fd00::2]",
    ]);
  });
});
