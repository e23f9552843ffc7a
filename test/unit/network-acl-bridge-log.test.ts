import { describe, expect, it } from "vitest";
import { parseKmsgRecord } from "../../src/os/kmsg.js";
import { bridgeAclLog, loggedRules } from "../../src/network/acls/bridge-log.js";
import type { AclRule } from "../../src/network/acls/rules.js";

const BOOT = Date.parse("2026-12-05T10:00:00Z");
const tcp22 = "br0-ingress-0 IN=br0 OUT=br0 PHYSIN=veth1 PHYSOUT=veth2 MAC=00:16 SRC=10.1.0.9 DST=10.1.0.160 LEN=60 TOS=0x00 TTL=64 ID=5 DF PROTO=TCP SPT=34818 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0";
const ping = "br0-egress-1 IN=br0 OUT=eth9 SRC=10.1.0.9 DST=10.2.0.1 LEN=84 PROTO=ICMP TYPE=8 CODE=0 ID=7 SEQ=1";

describe("kernel log records", () => {
  it("parses /dev/kmsg records into wall-clock time and the first message line", () => {
    const rec = parseKmsgRecord(`4,1200,3723500000,-;${tcp22}\n SUBSYSTEM=net\n`, BOOT);
    expect(rec?.message).toBe(tcp22);
    expect(rec?.time.toISOString()).toBe("2026-12-05T11:02:03.500Z");
    expect(parseKmsgRecord("garbage", BOOT)).toBeUndefined();
  });
});

describe("bridge ACL log entries", () => {
  const acl: Record<"ingress" | "egress", AclRule[]> = {
    ingress: [{ action: "allow", protocol: "tcp", destination_port: "20-22", state: "logged" }],
    egress: [
      { action: "drop", protocol: "udp", state: "logged" },
      { action: "reject", protocol: "icmp4", icmp_type: "8", state: "logged" },
      { action: "allow", state: "enabled" },
    ],
  };
  const time = new Date("2026-12-05T11:00:00.700Z");

  it("formats the packets of the ACL's logged rules as LXD's log entries, sorted", () => {
    const rules = loggedRules(["br0"], acl);
    expect(rules.map((r) => r.prefix)).toEqual(["br0-ingress-0 ", "br0-egress-0 ", "br0-egress-1 "]);
    const out = bridgeAclLog(rules, [
      { time, message: tcp22 },
      { time, message: ping },
    ]);
    expect(out).toBe(
      '{"time":"2026-12-05T11:00:00Z","proto":"icmp","src":"10.1.0.9","dst":"10.2.0.1","icmp_type":"8","icmp_code":"0","action":"reject"}\n' +
        '{"time":"2026-12-05T11:00:00Z","proto":"tcp","src":"10.1.0.9","dst":"10.1.0.160","src_port":"34818","dst_port":"22","action":"allow"}\n',
    );
  });

  it("leaves out packets that do not fit the rule behind their prefix, and other prefixes", () => {
    const rules = loggedRules(["br0"], acl);
    const records = [
      { time, message: tcp22.replace("DPT=22", "DPT=80") }, // another ACL's ingress rule 0
      { time, message: tcp22.replace("br0-ingress-0", "br0-ingress-00") },
      { time, message: tcp22.replace("br0-ingress-0", "br0-ingress") }, // the network's default rule
      { time, message: ping.replace("TYPE=8", "TYPE=0") },
    ];
    expect(bridgeAclLog(rules, records)).toBe("");
  });
});
