// Network ACL rules: LXD 5.0.2's validation messages and the nftables rules a bridge gets.
import { describe, expect, it } from "vitest";
import { aclNameError, aclNftRules, networkAclRules, normaliseRule, validateAcl, validateRule, type AclRule } from "../../src/network/acls/rules.js";

const allow = (extra: Partial<AclRule> = {}): AclRule => ({ action: "allow", state: "enabled", ...extra });
const err = (direction: "ingress" | "egress", rule: AclRule, names: string[] = []) => {
  try {
    validateRule(direction, rule, names);
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
};

describe("ACL names", () => {
  it("refuses what could be read as an address or a reserved subject", () => {
    expect(aclNameError("192.168.1.1")).toBe("Name must not start with a number");
    expect(aclNameError("@internal")).toBe('Name cannot start with reserved character "@"');
    expect(aclNameError("a_b")).toBe("Name can only contain alphanumeric and hyphen characters");
    expect(aclNameError("-a")).toBe('Name must not start with "-" character');
    expect(aclNameError("")).toBe("Name is required");
    expect(aclNameError("x".repeat(64))).toBe("Name must be 1-63 characters long");
    expect(aclNameError("web-acl")).toBeUndefined();
  });
});

describe("ACL rule validation (the upstream network_acl cases)", () => {
  it("refuses bad actions, states, subjects, ports, protocols and ICMP combinations", () => {
    expect(err("ingress", allow({ action: "accept" }))).toBe("Action must be one of: allow, drop, reject");
    expect(err("ingress", allow({ state: "foo" }))).toBe("State must be one of: enabled, disabled, logged");
    expect(err("ingress", allow({ source: "foo" }))).toBe('Invalid Source: Invalid subject "foo"');
    expect(err("ingress", allow({ destination: "foo" }))).toBe('Invalid Destination: Invalid subject "foo"');
    expect(err("ingress", allow({ source_port: "foo" }))).toBe("Source port cannot be used without specifying protocol");
    expect(err("ingress", allow({ protocol: "tcp", source_port: "foo" }))).toBe('Invalid Source port: Invalid port number "foo"');
    expect(err("ingress", allow({ protocol: "tcp", destination_port: "999999999" }))).toBe('Invalid Destination port: Out of port number range (0-65535) "999999999"');
    expect(err("ingress", allow({ protocol: "tcp", destination_port: "30-20" }))).toBe("Invalid Destination port: Start port 30 must be lower than end port 20");
    expect(err("ingress", allow({ protocol: "foo" }))).toBe("Protocol must be one of: icmp4, icmp6, tcp, udp");
    expect(err("ingress", allow({ protocol: "udp", icmp_code: "1" }))).toBe("ICMP code cannot be used with non-ICMP protocol");
    expect(err("ingress", allow({ protocol: "icmp4", icmp_code: "256" }))).toBe('Invalid ICMP code: Invalid value for an integer "256". Must be between 0 and 255');
    expect(err("ingress", allow({ protocol: "icmp6", icmp_type: "-1" }))).toBe('Invalid ICMP type: Invalid value for an integer "-1". Must be between 0 and 255');
    expect(err("ingress", allow({ protocol: "icmp4", source: "fd00::1" }))).toBe('Cannot use IPv6 source addresses with "icmp4" protocol');
    expect(err("ingress", allow({ source: "10.0.0.1", destination: "fd00::1" }))).toBe("Conflicting IP family types used for Source and Destination");
    expect(err("ingress", allow({ source: "10.0.0.9-10.0.0.1" }))).toBe('Invalid Source: Invalid subject "10.0.0.9-10.0.0.1"');
  });

  it("allows names only where LXD does: ingress sources and egress destinations", () => {
    expect(err("ingress", allow({ source: "@internal,other" }), ["other"])).toBeUndefined();
    expect(err("egress", allow({ destination: "@external" }))).toBeUndefined();
    expect(err("ingress", allow({ destination: "@internal" }))).toBe('Invalid Destination: Named subjects not allowed in "Destination" for "ingress" rules');
    expect(err("egress", allow({ source: "other" }), ["other"])).toBe('Invalid Source: Named subjects not allowed in "Source" for "egress" rules');
  });

  it("accepts addresses, CIDRs and ranges, port lists and ranges", () => {
    expect(err("ingress", allow({ source: "192.168.1.2/32", destination: "192.168.1.1-192.168.1.3", protocol: "tcp", destination_port: "22,2222-2223" }))).toBeUndefined();
    expect(err("egress", allow({ destination: "fd00::/64", protocol: "icmp6", icmp_type: "128", icmp_code: "0" }))).toBeUndefined();
  });

  it("normalises spaces and refuses duplicates after normalising", () => {
    const a = normaliseRule(allow({ protocol: " tcp ", destination_port: "22, 2222-2223" }));
    expect(a).toEqual({ action: "allow", state: "enabled", protocol: "tcp", destination_port: "22,2222-2223" });
    const b = normaliseRule(allow({ protocol: "tcp", destination_port: "22,2222-2223" }));
    expect(() => validateAcl({ config: {}, ingress: [a, b], egress: [] }, [])).toThrow("Duplicate of ingress rule 0");
    expect(() => validateAcl({ config: { "non.user": "x" }, ingress: [], egress: [] }, [])).toThrow('Invalid config option "non.user"');
    expect(() => validateAcl({ config: {}, ingress: [allow({ action: "x" })], egress: [] }, [])).toThrow("Invalid ingress rule 0: Action must be one of");
  });
});

describe("bridge firewall rules", () => {
  it("orders drop, reject, allow, then the network's defaults, and splits mixed families", () => {
    const rules = networkAclRules(
      "br0",
      [
        {
          ingress: [allow({ protocol: "tcp", destination_port: "22" }), { action: "drop", state: "logged", source: "10.0.0.0/8,fd00::/8" }],
          egress: [{ action: "reject", state: "disabled" }],
        },
      ],
      { "security.acls.default.egress.action": "allow" },
    );
    expect(aclNftRules("br0", rules)).toEqual([
      'oifname "br0" ip saddr {10.0.0.0/8} log prefix "br0-ingress-1 " drop',
      'oifname "br0" ip6 saddr {fd00::/8} log prefix "br0-ingress-1 " drop',
      'oifname "br0" meta l4proto tcp th dport {22} accept',
      'iifname "br0" accept',
      'oifname "br0" reject',
    ]);
  });

  it("puts ICMP rules in the family they belong to", () => {
    const rules = networkAclRules("b", [{ ingress: [allow({ protocol: "icmp6", icmp_type: "128" })], egress: [] }], {});
    expect(aclNftRules("b", rules)[0]).toBe('oifname "b" ip6 nexthdr icmpv6 icmpv6 type 128 accept');
  });
});
