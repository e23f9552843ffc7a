// ovnParseLogEntry (lxd/network/acl/acl_ovn.go): ovn-controller ACL log lines → LXD's entries.
import { describe, expect, it } from "vitest";
import { ovnAclLog, parseOvnLogEntry } from "../../src/network/acls/ovn-log.js";

const line = (name: string, rest = "severity=info: tcp,nw_src=10.0.0.2,nw_dst=10.0.0.1,tp_src=4,tp_dst=22") =>
  `2023-01-05T10:00:01.999+01:00|00010|acl_log(ovn_pinctrl0)|INFO|name="${name}", verdict=allow, ${rest}`;

describe("OVN ACL log entries", () => {
  it("keeps only this ACL's acl_log lines, in UTC to the second, with LXD's field order", () => {
    expect(parseOvnLogEntry(line("lxd_acl3-egress-0"), "lxd_acl3-")).toBe(
      '{"time":"2023-01-05T09:00:01Z","proto":"tcp","src":"10.0.0.2","dst":"10.0.0.1","src_port":"4","dst_port":"22","action":"allow"}',
    );
    expect(parseOvnLogEntry(line("lxd_acl33-egress-0"), "lxd_acl3-")).toBeUndefined();
    expect(parseOvnLogEntry(line("lxd_acl3-egress-0").replace("acl_log", "binding"), "lxd_acl3-")).toBeUndefined();
  });
  it("skips entries without a protocol or addresses, or with a bad time", () => {
    expect(parseOvnLogEntry(line("lxd_acl3-x", "severity=info,nw_src=1,nw_dst=2"), "lxd_acl3-")).toBeUndefined();
    expect(parseOvnLogEntry(line("lxd_acl3-x", "severity=info: tcp,nw_src=1"), "lxd_acl3-")).toBeUndefined();
    expect(parseOvnLogEntry(line("lxd_acl3-x").replace("2023-01-05T10", "2023-01-05 10"), "lxd_acl3-")).toBeUndefined();
  });
  it("answers LXD's error when the host has no ovn-controller log", () => {
    expect(() => ovnAclLog(1, "/nonexistent/ovn-controller.log")).toThrow("Only OVN log entries may be retrieved at this time");
  });
});
