// Network zones: LXD 5.0.2's validation, zone content (SOA, NS, lease and extra records, PTR
// names) and the DNS answers' policy (SOA/AXFR/IXFR only, peers only).
import dnsPacket from "dns-packet";
import { describe, expect, it } from "vitest";
import { answer } from "../../src/network/zones/dns-server.js";
import { allowedPeer, leaseRecords, reverseName, validateEntries, validateZoneConfig, zoneNameError, zoneRecords } from "../../src/network/zones/rules.js";

describe("zone validation", () => {
  it("names, config keys and record entries as LXD checks them", () => {
    expect(zoneNameError("/lxd.example.net")).toBe('Name cannot start with "/"');
    expect(zoneNameError("lxd.example.net/withslash")).toBeUndefined();
    expect(() => validateZoneConfig({ "peers.a.address": "127.0.0.1", "peers.a.key": "k", "dns.nameservers": "ns1.example.net", "network.nat": "false", "user.x": "y" })).not.toThrow();
    expect(() => validateZoneConfig({ "peers.a": "x" })).toThrow('Invalid network zone configuration key "peers.a"');
    expect(() => validateZoneConfig({ "peers.a.address": "nope" })).toThrow('Invalid value for config option "peers.a.address"');
    expect(() => validateZoneConfig({ foo: "bar" })).toThrow('Invalid config option "foo"');
    expect(() => validateEntries([{ type: "A", value: "1.1.1.1" }, { type: "MX", value: "1 mx1.example.net." }, { type: "TXT", value: '"hello world"' }])).not.toThrow();
    expect(() => validateEntries([{ type: "A", value: "1.1.1.1" }, { type: "A", value: "1.1.1.1" }])).toThrow('Duplicate record for type "A" and value "1.1.1.1"');
    expect(() => validateEntries([{ type: "A", value: "::1" }])).toThrow("Bad zone record entry");
    expect(() => validateEntries([{ type: "BOGUS", value: "x" }])).toThrow('Bad zone record entry: dns: unknown RR type: "BOGUS"');
  });
});

describe("zone content", () => {
  it("follows LXD's template: SOA, NS, records, SOA", () => {
    const rrs = zoneRecords("lxd.example.net", {
      records: [{ name: "c1", type: "A", value: "10.0.0.42" }],
      extra: [{ name: "demo", entries: [{ type: "A", value: "1.1.1.1", ttl: 900 }, { type: "MX", value: "10 mx2.example.net." }] }],
      nameservers: ["ns1.example.net"],
      serial: 42,
    });
    expect(rrs.map((r) => `${r.name} ${r.ttl} ${r.type}`)).toEqual([
      "lxd.example.net 3600 SOA",
      "lxd.example.net 300 NS",
      "c1.lxd.example.net 300 A",
      "demo.lxd.example.net 900 A",
      "demo.lxd.example.net 300 MX",
      "lxd.example.net 3600 SOA",
    ]);
    expect(rrs[0].data).toMatchObject({ mname: "lxd.example.net", rname: "ns1.example.net", serial: 42 });
  });

  it("gives reverse zones PTR records named within the zone", () => {
    expect(reverseName("10.0.0.42")).toBe("42.0.0.10.in-addr.arpa");
    expect(reverseName("fd42::1").startsWith("1.0.0.0.")).toBe(true);
    const leases = [{ hostname: "c1", address: "10.0.0.42" }, { hostname: "c1", address: "fd42:4242:4242:1010::42" }];
    expect(leaseRecords("0.0.10.in-addr.arpa", leases, { includeV4: true, includeV6: true, forwardZone: "lxd.example.net" })).toEqual([
      { name: "42", type: "PTR", value: "c1.lxd.example.net" },
    ]);
    expect(leaseRecords("lxd.example.net", leases, { includeV4: true, includeV6: false })).toEqual([{ name: "c1", type: "A", value: "10.0.0.42" }]);
    const v6 = leaseRecords("0.1.0.1.2.4.2.4.2.4.2.4.2.4.d.f.ip6.arpa", leases, { includeV4: true, includeV6: true, forwardZone: "z" });
    expect(v6).toEqual([{ name: "2.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0", type: "PTR", value: "c1.z" }]);
  });

  it("allows transfers only to listed peers", () => {
    expect(allowedPeer({ "peers.t.address": "127.0.0.1" }, "z", "127.0.0.1")).toBe(true);
    expect(allowedPeer({ "peers.t.address": "127.0.0.1" }, "z", "127.0.0.2")).toBe(false);
    expect(allowedPeer({}, "z", "127.0.0.1")).toBe(false);
    expect(allowedPeer({ "peers.t.address": "127.0.0.1", "peers.t.key": "secret" }, "z", "127.0.0.1")).toBe(false);
  });
});

describe("DNS answers", () => {
  const lookup = async (zone: string, full: boolean) =>
    zone === "z.test"
      ? { config: { "peers.t.address": "127.0.0.1" }, records: zoneRecords("z.test", { records: [{ name: "a", type: "A" as const, value: "10.1.2.3" }], extra: [], nameservers: [], serial: 1 }).slice(0, full ? undefined : 1) }
      : undefined;
  const ask = async (type: string, name: string, remote = "127.0.0.1") =>
    dnsPacket.decode((await answer(dnsPacket.encode({ type: "query", id: 7, questions: [{ type: type as "A", name }] }), remote, lookup))!);

  it("transfers the zone to a peer and refuses everything else as LXD does", async () => {
    const axfr = await ask("AXFR", "z.test");
    expect(axfr.id).toBe(7);
    expect(axfr.flags! & 0xf).toBe(0);
    expect(axfr.answers!.map((a) => `${a.name} ${a.type}`)).toEqual(["z.test SOA", "a.z.test A", "z.test SOA"]);
    expect((await ask("SOA", "z.test")).answers!.map((a) => a.type)).toEqual(["SOA"]);
    expect((await ask("A", "a.z.test")).flags! & 0xf).toBe(4);
    expect((await ask("AXFR", "other.test")).flags! & 0xf).toBe(3);
    expect((await ask("AXFR", "z.test", "127.0.0.9")).flags! & 0xf).toBe(3);
    expect(await answer(Buffer.from("garbage"), "127.0.0.1", lookup)).toBeUndefined();
  });
});
