// Network zones with the stock client (the upstream network_zone flow) and `dig` against the
// daemon's own DNS listener on core.dns_address: AXFR of forward and reverse zones with a
// running container's records, extra records, refusals for non-peers. Only loopback traffic,
// and between our container and our bridge (NAT off).
import { describe, expect, it } from "vitest";
import { useNetworkDaemon } from "../helpers/network-daemon.js";
import { freeSubnet, runId, sh, waitFor } from "../helpers/net.js";

const id = runId();
const t = useNetworkDaemon();
const { ok, fails, networks } = t;
const port = 20000 + Math.floor(Math.random() * 20000);

const dig = (...args: string[]) => sh("dig", ["@127.0.0.1", "-p", String(port), "+tries=1", "+time=3", ...args]).stdout;

describe("network zones", () => {
  it("serve a bridge's instances and extra records to peers over AXFR, as upstream's suite checks", async () => {
    const n = freeSubnet();
    const net = `nz${id}`;
    networks.push(net);
    const fwd = `z${id}.example.net`;
    const rev4 = `${n}.97.10.in-addr.arpa`;
    ok("config", "set", "core.dns_address", `127.0.0.1:${port}`);
    ok("network", "create", net, `ipv4.address=10.97.${n}.1/24`, "ipv4.nat=false", "ipv6.address=none");

    expect(fails("network", "zone", "create", "/lxd.example.net")).toContain('Name cannot start with "/"');
    ok("network", "zone", "create", `${fwd}/withslash`);
    ok("network", "zone", "delete", `${fwd}/withslash`);
    ok("network", "zone", "create", fwd);
    ok("network", "zone", "create", rev4);
    expect(fails("network", "zone", "create", fwd)).toContain("The network zone already exists");
    expect(fails("network", "set", net, "dns.zone.forward=nosuch.example.net")).toContain('Network zone "nosuch.example.net" doesn\'t exist');
    ok("network", "set", net, `dns.zone.forward=${fwd}`, `dns.zone.reverse.ipv4=${rev4}`);
    expect(JSON.parse(ok("query", `/1.0/network-zones/${fwd}`)).used_by).toEqual([`/1.0/networks/${net}`]);
    expect(fails("network", "zone", "delete", fwd)).toContain("Cannot delete a zone that is in use");

    const c = t.d.instanceName("dns");
    ok("init", "busybox", c, "-n", net, "-q");
    ok("config", "device", "set", c, "eth0", `ipv4.address=10.97.${n}.42`);
    ok("start", c);
    await waitFor(() => ok("list", "-c", "4", "-f", "csv", c).includes(`10.97.${n}.42`), 60_000, 500);
    const host = c;

    // Not a peer yet: the zone is not served.
    expect(dig("axfr", fwd)).not.toContain(`10.97.${n}.42`);
    ok("network", "zone", "set", fwd, "peers.test.address=127.0.0.1");
    ok("network", "zone", "set", rev4, "peers.test.address=127.0.0.1");
    const axfr = dig("axfr", fwd);
    expect(axfr).toMatch(new RegExp(`${host}\\.${fwd.replace(/\./g, "\\.")}\\.\\s+300\\s+IN\\s+A\\s+10\\.97\\.${n}\\.42`));
    expect(axfr.match(/\tSOA\t/g)?.length).toBe(2);
    expect(dig("axfr", rev4)).toMatch(new RegExp(`42\\.${rev4.replace(/\./g, "\\.")}\\.\\s+300\\s+IN\\s+PTR\\s+${host}\\.${fwd.replace(/\./g, "\\.")}\\.`));
    expect(dig("SOA", fwd)).toContain("status: NOERROR");
    expect(dig("A", `${host}.${fwd}`)).toContain("status: NOTIMP");
    expect(dig("axfr", "unknown.example.net")).not.toContain("IN\tSOA");

    // A peer with a TSIG key: only signed transfers with that key get the zone, and the answer is signed.
    const secret = Buffer.from(`secret-${id}-secret`).toString("base64");
    ok("network", "zone", "unset", rev4, "peers.test.address");
    ok("network", "zone", "set", rev4, `peers.k.key=${secret}`);
    const unsignedOut = dig("axfr", rev4);
    expect(unsignedOut, unsignedOut).not.toMatch(/IN\s+PTR/);
    expect(dig("-y", `hmac-sha256:${rev4}_k:${Buffer.from("wrong-key").toString("base64")}`, "axfr", rev4)).not.toContain("PTR");
    const signed = dig("-y", `hmac-sha256:${rev4}_k:${secret}`, "axfr", rev4);
    expect(signed).toMatch(/IN\s+PTR/);
    expect(signed).not.toMatch(/tsig verify failure|failed|couldn't verify/i);
    expect(dig("-y", `hmac-sha512:${rev4}_k:${secret}`, "SOA", rev4)).toContain("status: NOERROR");

    ok("network", "zone", "record", "create", fwd, "demo", "user.foo=bar");
    ok("network", "zone", "record", "entry", "add", fwd, "demo", "A", "1.1.1.1", "--ttl", "900");
    ok("network", "zone", "record", "entry", "add", fwd, "demo", "AAAA", "1111::1111");
    ok("network", "zone", "record", "entry", "add", fwd, "demo", "MX", "1 mx1.example.net.", "--ttl", "900");
    expect(fails("network", "zone", "record", "entry", "add", fwd, "demo", "A", "1.1.1.1")).toContain("Duplicate record");
    expect(fails("network", "zone", "record", "entry", "add", fwd, "demo", "A", "not-an-ip")).toContain("Bad zone record entry");
    expect(ok("network", "zone", "record", "list", fwd)).toContain("demo");
    const withDemo = dig("axfr", fwd);
    expect(withDemo).toMatch(new RegExp(`demo\\.${fwd.replace(/\./g, "\\.")}\\.\\s+900\\s+IN\\s+A\\s+1\\.1\\.1\\.1`));
    expect(withDemo).toMatch(/IN\s+AAAA\s+1111::1111/);
    expect(withDemo).toMatch(/IN\s+MX\s+1 mx1\.example\.net\./);

    // The listener follows core.dns_address and survives a restart.
    await t.d.restart();
    expect(dig("axfr", fwd)).toContain("demo.");
    ok("config", "unset", "core.dns_address");
    expect(dig("axfr", fwd)).not.toContain("demo.");

    ok("delete", "-f", c);
    ok("network", "delete", net);
    networks.pop();
    ok("network", "zone", "delete", fwd);
    ok("network", "zone", "delete", rev4);
    expect(JSON.parse(ok("query", "/1.0/network-zones"))).toEqual([]);
  });

  it("give instances on a SLAAC subnet AAAA and PTR records from their EUI-64 address, as LXD's leases do", async () => {
    const n = freeSubnet();
    const net = `nz${id}6`;
    networks.push(net);
    const fwd = `z${id}6.example.net`;
    const prefix = `fd42:97:${n.toString(16)}:1`;
    // The reverse zone of fd42:97:<n>:1::/64: its 16 nibbles, reversed.
    const nibbles = ["fd42", "0097", n.toString(16).padStart(4, "0"), "0001"].join("").split("").reverse().join(".");
    const rev6 = `${nibbles}.ip6.arpa`;
    ok("config", "set", "core.dns_address", `127.0.0.1:${port}`);
    ok("network", "create", net, "ipv4.address=none", `ipv6.address=${prefix}::1/64`, "ipv6.nat=false");
    ok("network", "zone", "create", fwd, "peers.test.address=127.0.0.1");
    ok("network", "zone", "create", rev6, "peers.test.address=127.0.0.1");
    ok("network", "set", net, `dns.zone.forward=${fwd}`, `dns.zone.reverse.ipv6=${rev6}`);

    const c = t.d.instanceName("dns6");
    ok("init", "busybox", c, "-n", net, "-q");
    const mac = ok("config", "get", c, "volatile.eth0.hwaddr").trim();
    const b = mac.split(":").map((x) => parseInt(x, 16));
    const hex = (hi: number, lo: number) => ((hi << 8) | lo).toString(16);
    const slaac = `${prefix}:${hex(b[0] ^ 2, b[1])}:${hex(b[2], 0xff)}:${hex(0xfe, b[3])}:${hex(b[4], b[5])}`;

    const leases = JSON.parse(ok("query", `/1.0/networks/${net}/leases`)) as { hostname: string; address: string; hwaddr: string; type: string }[];
    expect(leases).toContainEqual(expect.objectContaining({ hostname: c, address: slaac, hwaddr: mac, type: "dynamic" }));
    expect(dig("axfr", fwd)).toMatch(new RegExp(`${c}\\.${fwd.replace(/\./g, "\\.")}\\.\\s+300\\s+IN\\s+AAAA\\s+${slaac}`));
    expect(dig("axfr", rev6)).toMatch(new RegExp(`IN\\s+PTR\\s+${c}\\.${fwd.replace(/\./g, "\\.")}\\.`));

    ok("delete", "-f", c);
    expect(dig("axfr", fwd)).not.toContain(slaac);
    ok("network", "delete", net);
    networks.pop();
    ok("network", "zone", "delete", fwd);
    ok("network", "zone", "delete", rev6);
    ok("config", "unset", "core.dns_address");
  });
});
