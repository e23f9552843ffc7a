// Proxy device addresses, validation and nat=true rules, as LXD 5.0.2 has them.
import { describe, expect, it } from "vitest";
import { dnatRanges, natRemoveScript, natScript, parseProxyAddr, portRanges, splitHostPort, validateProxyConfig } from "../../src/devices/proxy-addr.js";

describe("parseProxyAddr", () => {
  it("parses tcp/udp with port lists and ranges, unix and abstract sockets", () => {
    expect(parseProxyAddr("tcp:127.0.0.1:80,8080-8082")).toEqual({ connType: "tcp", address: "127.0.0.1", ports: [80, 8080, 8081, 8082], abstract: false });
    expect(parseProxyAddr("udp:[::1]:53")).toEqual({ connType: "udp", address: "::1", ports: [53], abstract: false });
    expect(parseProxyAddr("unix:/run/x.sock")).toEqual({ connType: "unix", address: "/run/x.sock", ports: [], abstract: false });
    expect(parseProxyAddr("unix:@abstract")).toMatchObject({ connType: "unix", address: "@abstract", abstract: true });
  });
  it("gives LXD's errors", () => {
    expect(() => parseProxyAddr("sctp:1.2.3.4:5")).toThrow('Unknown protocol type "sctp"');
    expect(() => parseProxyAddr("tcp:")).toThrow("Missing address");
    expect(() => parseProxyAddr("tcp")).toThrow("Missing address");
    expect(() => parseProxyAddr("tcp:localhost:80")).toThrow('Not an IP address "localhost"');
    expect(() => parseProxyAddr("tcp:1.2.3.4")).toThrow("address 1.2.3.4: missing port in address");
    expect(() => parseProxyAddr("tcp:::1:80")).toThrow("address ::1:80: too many colons in address");
    expect(() => parseProxyAddr("tcp:1.2.3.4:90-80")).toThrow("End port should be higher than start port");
    expect(() => parseProxyAddr("tcp:1.2.3.4:http")).toThrow('strconv.ParseInt: parsing "http": invalid syntax');
    expect(() => parseProxyAddr("tcp:1.2.3.4:1-100000")).toThrow("Too many ports");
  });
  it("splits host and port as Go does", () => {
    expect(splitHostPort("[::1]:80")).toEqual(["::1", "80"]);
    expect(splitHostPort(":80")).toEqual(["", "80"]);
    expect(() => splitHostPort("[::1:80")).toThrow("missing ']' in address");
  });
});

describe("validateProxyConfig", () => {
  const v = (c: Record<string, string>) => () => validateProxyConfig({ type: "proxy", ...c });
  it("accepts LXD's valid forms", () => {
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "tcp:127.0.0.1:80" })).not.toThrow();
    expect(v({ listen: "unix:/tmp/a", connect: "tcp:127.0.0.1:80", uid: "1", gid: "2", mode: "0600", "security.uid": "3", "security.gid": "4" })).not.toThrow();
    expect(v({ listen: "tcp:127.0.0.1:80-81", connect: "tcp:10.0.0.2:80", nat: "true" })).not.toThrow();
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "tcp:127.0.0.1:80", bind: "instance", "user.x": "y" })).not.toThrow();
  });
  it("refuses with LXD's messages", () => {
    expect(v({ connect: "tcp:127.0.0.1:80" })).toThrow('Invalid value for device option "listen": Unknown protocol type ""');
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "tcp:127.0.0.1:80", bind: "x" })).toThrow('Invalid value for device option "bind": Invalid binding side given. Must be "host" or "instance"');
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "tcp:127.0.0.1:80", mode: "999" })).toThrow("Invalid value for an octal file mode");
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "tcp:127.0.0.1:80", "security.uid": "-1" })).toThrow("Invalid value for a UNIX ID");
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "tcp:127.0.0.1:80", foo: "1" })).toThrow('Invalid device option "foo"');
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "tcp:127.0.0.1:80-81" })).toThrow("Mismatch between listen port(s) and connect port(s) count");
    expect(v({ listen: "unix:/a", connect: "tcp:127.0.0.1:80-81" })).toThrow("Mismatch between listen port(s) and connect port(s) count");
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "udp:127.0.0.1:80", proxy_protocol: "true" })).toThrow("The PROXY header can only be sent to tcp servers in non-nat mode");
    expect(v({ listen: "unix:@a", connect: "tcp:127.0.0.1:80", uid: "1" })).toThrow("Only proxy devices for non-abstract unix sockets can carry uid, gid, or mode properties");
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "tcp:10.0.0.2:80", nat: "true", bind: "instance" })).toThrow("Only host-bound proxies can use NAT");
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "unix:/a", nat: "true" })).toThrow("Proxying tcp <-> unix is not supported when using NAT");
    expect(v({ listen: "tcp:0.0.0.0:80", connect: "tcp:10.0.0.2:80", nat: "true" })).toThrow('Cannot listen on wildcard address "0.0.0.0" when in nat mode');
    expect(v({ listen: "tcp:[::]:80", connect: "tcp:10.0.0.2:80", nat: "true" })).toThrow('Cannot listen on wildcard address "::" when in nat mode');
    expect(v({ listen: "tcp:127.0.0.1:80", connect: "tcp:[::]:80", nat: "true" })).toThrow("Cannot mix IP versions between listen and connect in nat mode");
    expect(() => validateProxyConfig({ listen: "tcp:127.0.0.1:80", connect: "tcp:10.0.0.2:80", nat: "true" }, { natForbiddenByProject: true })).toThrow("NAT mode cannot be used in projects that have the networks feature");
  });
});

describe("nat rules", () => {
  it("optimises port ranges as LXD", () => {
    expect(portRanges([80, 81, 82, 90])).toEqual([[80, 3], [90, 1]]);
    expect(dnatRanges({ protocol: "tcp", listenAddress: "1.1.1.1", listenPorts: [1234, 1235], targetAddress: "2.2.2.2", targetPorts: [1234] })).toEqual([[[1234, 2], [1234, 1]]]);
    expect(dnatRanges({ protocol: "tcp", listenAddress: "1.1.1.1", listenPorts: [1234, 1235], targetAddress: "2.2.2.2", targetPorts: [1234, 1235] })).toEqual([[[1234, 2], [1234, 2]]]);
    expect(dnatRanges({ protocol: "tcp", listenAddress: "1.1.1.1", listenPorts: [80, 81], targetAddress: "2.2.2.2", targetPorts: [90, 91] })).toEqual([[[80, 1], [90, 1]], [[81, 1], [91, 1]]]);
  });
  it("writes LXD's chains in inet lxd", () => {
    const s = natScript("c1.web", { protocol: "tcp", listenAddress: "::1", listenPorts: [1234], targetAddress: "fd42::10", targetPorts: [1234] });
    expect(s).toContain("add chain inet lxd prert.c1.web {type nat hook prerouting priority -100; policy accept;}");
    expect(s).toContain("ip6 daddr ::1 tcp dport 1234 dnat to [fd42::10]:1234");
    expect(s).toContain("ip6 saddr fd42::10 ip6 daddr fd42::10 tcp dport 1234 masquerade");
    expect(natScript("c1.web", { protocol: "udp", listenAddress: "127.0.0.1", listenPorts: [1, 2], targetAddress: "10.0.0.2", targetPorts: [1, 2] })).toContain("ip daddr 127.0.0.1 udp dport 1-2 dnat to 10.0.0.2\n");
    expect(natRemoveScript("c1.web")).toContain("delete chain inet lxd out.c1.web");
    expect(natRemoveScript("c1.a b")).toContain('delete chain inet lxd "pstrt.c1.a b"');
  });
});
