// Bridged NIC filtering with the stock client, on real containers on our own bridge (NAT off,
// traffic only between our containers and the bridge): MAC and IPv4 filters as nft chains in
// "bridge lxd" that really drop spoofed frames, applied live and gone when the instance stops,
// and the static DHCP allocation a filtered NIC without an address gets (LXD's
// container_devices_nic_bridged_filtering flow).
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useNetworkDaemon } from "../helpers/network-daemon.js";
import { freeSubnet, runId, sh } from "../helpers/net.js";

const id = runId();
const t = useNetworkDaemon();
const { ok, fails, networks } = t;

const chain = (kind: string, label: string) => sh("nft", ["-nn", "list", "chain", "bridge", "lxd", `${kind}.${label}`]);
const pings = (c: string, to: string) => t.d.lxc("exec", c, "--", "ping", "-c2", "-W2", to).code === 0;

describe("bridged NIC filtering", () => {
  it("MAC and IPv4 filters drop spoofed traffic, follow live changes, and go away on stop", async () => {
    const net = `nfl${id}`;
    const n = freeSubnet();
    const base = `10.97.${n}`;
    networks.push(net);
    ok("network", "create", net, `ipv4.address=${base}.1/24`, "ipv4.nat=false", "ipv6.address=none");
    const a = t.d.launch("fa", { network: net });
    const b = t.d.launch("fb", { network: net });
    for (const [c, ip] of [[a, `${base}.2`], [b, `${base}.3`]]) {
      // init respawns udhcpc, whose script re-addresses eth0 on every lease: make it a no-op first.
      ok("exec", c, "--", "sh", "-c", `printf '#!/bin/sh\nexit 0\n' > /etc/udhcpc.script; pkill udhcpc; ip -4 addr flush dev eth0; ip addr add ${ip}/24 dev eth0`);
    }
    expect(pings(a, `${base}.1`)).toBe(true);
    expect(pings(a, `${base}.3`)).toBe(true);

    // MAC filtering, set on the running instance.
    ok("config", "device", "set", a, "eth0", "security.mac_filtering=true");
    const mac = ok("config", "get", a, "volatile.eth0.hwaddr").trim();
    const host = ok("config", "get", a, "volatile.eth0.host_name").trim();
    for (const kind of ["in", "fwd"]) {
      const rules = chain(kind, `${a}.eth0`).stdout;
      expect(rules).toContain(`iifname "${host}" ether saddr != ${mac} drop`);
      expect(rules).toContain(`iifname "${host}" arp saddr ether != ${mac} drop`);
    }
    ok("exec", a, "--", "ip", "link", "set", "dev", "eth0", "address", "00:11:22:33:44:56", "up");
    expect(pings(a, `${base}.1`)).toBe(false);
    expect(pings(a, `${base}.3`)).toBe(false);
    ok("exec", a, "--", "ip", "link", "set", "dev", "eth0", "address", mac, "up");
    expect(pings(a, `${base}.1`)).toBe(true);

    // IPv4 filtering with a static address and a routed subnet; MAC filtering off still filters MACs.
    ok("config", "device", "set", a, "eth0", `ipv4.address=${base}.2`, "security.mac_filtering=false", "security.ipv4_filtering=true", "ipv4.routes=198.51.100.0/24");
    const rules = chain("in", `${a}.eth0`).stdout;
    expect(rules).toContain(`iifname "${host}" ether saddr != ${mac} drop`);
    expect(rules).toContain(`iifname "${host}" ip saddr ${base}.2 accept`);
    expect(rules).toContain(`iifname "${host}" arp saddr ip 198.51.100.0/24 accept`);
    expect(pings(a, `${base}.3`)).toBe(true);
    ok("exec", a, "--", "sh", "-c", `ip -4 addr flush dev eth0; ip addr add ${base}.254/24 dev eth0`);
    expect(pings(a, `${base}.1`)).toBe(false);
    expect(pings(a, `${base}.3`)).toBe(false);

    // A bad value changes nothing.
    expect(fails("config", "device", "set", a, "eth0", "security.ipv4_filtering=maybe")).toContain('Invalid value for device option "security.ipv4_filtering"');

    ok("stop", "-f", a);
    expect(chain("in", `${a}.eth0`).stdout).not.toContain(host);
    expect(chain("fwd", `${a}.eth0`).stdout).not.toContain(host);

    // Without a fixed address, the filtered NIC gets a static allocation: the first free one.
    const hosts = join(t.d.dir, "networks", net, "dnsmasq.hosts", `${a}.eth0`);
    ok("config", "device", "unset", a, "eth0", "ipv4.address");
    if (existsSync(hosts)) rmSync(hosts);
    ok("start", a);
    const line = readFileSync(hosts, "utf8");
    expect(line).toMatch(new RegExp(`^${mac},${base.replace(/\./g, "\\.")}\\.\\d+,`));
    const allocated = line.split(",")[1];
    expect(chain("in", `${a}.eth0`).stdout).toContain(`ip saddr ${allocated} accept`);

    // "none": the family is dropped whole.
    ok("stop", "-f", a);
    ok("config", "device", "set", a, "eth0", "ipv4.address=none");
    ok("start", a);
    const none = chain("in", `${a}.eth0`).stdout;
    expect(none).not.toContain("ip saddr");
    const host2 = ok("config", "get", a, "volatile.eth0.host_name").trim();
    expect(none).toContain(`iifname "${host2}" ether type 0x0800 drop`);
    expect(fails("config", "device", "set", a, "eth0", "security.ipv4_filtering=false")).toContain("Cannot have ipv4.address as none unless using security.ipv4_filtering");

    // Without DHCP on the network, a static address needs IP filtering (LXD's rule).
    ok("stop", "-f", a);
    ok("network", "set", net, "ipv4.dhcp=false");
    expect(fails("config", "device", "set", a, "eth0", `ipv4.address=${base}.5`, "security.ipv4_filtering=false")).toContain(
      `Cannot specify "ipv4.address" when DHCP is disabled (unless using security.ipv4_filtering) on network "${net}"`,
    );
    ok("config", "device", "set", a, "eth0", `ipv4.address=${base}.5`);
    expect(fails("config", "device", "set", a, "eth0", `ipv4.address=${base}.1`)).toContain(`IP address "${base}.1" is assigned to parent managed network device "${net}"`);
  });
});
