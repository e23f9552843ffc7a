// Managed networks with real containers (the busybox image's init runs udhcpc on eth0):
// DHCP leases in `lxc list` and list-leases, containers pinging each other on a Linux
// bridge and on an Open vSwitch bridge (userspace datapath, private ovsdb), NIC hot-plug,
// changing a bridge's subnet under running containers, daemon restarts (SIGTERM and
// kill -9) keeping their networking, and deletes that leave nothing behind.
// Traffic stays between our own containers and bridges; NAT is off everywhere.
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { dnsmasqPids, freeSubnet, linkExists, nftChainsOf, runId, sh, startOvs, waitFor } from "../helpers/net.js";

const id = runId();
const netName = (s: string) => `ni${id}${s}`; // <= 15 characters
const taken = new Set<number>();
let d: InitialisedDaemon;
let ovs: ReturnType<typeof startOvs> | undefined;
const networks: string[] = [];

beforeAll(async () => {
  // The daemon finds our private Open vSwitch through OVS_RUNDIR (it inherits the environment).
  ovs = startOvs();
  process.env.OVS_RUNDIR = ovs.dir;
  d = await startInitialisedDaemon();
});

afterAll(async () => {
  await d?.teardown();
  for (const n of networks) {
    for (const kind of nftChainsOf(n)) sh("nft", ["delete", "chain", "inet", "lxd", `${kind}.${n}`]);
    for (const pid of dnsmasqPids(n)) process.kill(pid, "SIGKILL");
  }
  for (const v of seenVeths) if (linkExists(v)) sh("ip", ["link", "del", v]);
  // Whatever a failed test left: our links by their unique names.
  for (const l of sh("ip", ["-j", "link"]).stdout.match(new RegExp(`"ni${id}[^"]*"`, "g")) ?? []) sh("ip", ["link", "del", JSON.parse(l)]);
  await ovs?.stop();
  delete process.env.OVS_RUNDIR;
});

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

function createNetwork(suffix: string, extra: string[] = []): { name: string; n: number } {
  const name = netName(suffix);
  const n = freeSubnet(taken);
  networks.push(name);
  ok("network", "create", name, `ipv4.address=10.97.${n}.1/24`, "ipv4.nat=false", "ipv6.address=none", ...extra);
  return { name, n };
}

/** The instance's eth0 IPv4 address as `lxc list` shows it (IPV4 column). */
function listedIpv4(inst: string, dev = "eth0"): string | undefined {
  const out = ok("list", "-c", "4", "-f", "csv", inst);
  return new RegExp(`(\\d+\\.\\d+\\.\\d+\\.\\d+) \\(${dev}\\)`).exec(out)?.[1];
}

async function leasedIpv4(inst: string, n: number, timeoutMs = 60_000): Promise<string> {
  return waitFor(() => {
    const ip = listedIpv4(inst);
    return ip?.startsWith(`10.97.${n}.`) ? ip : undefined;
  }, timeoutMs, 500);
}

const exec = (inst: string, ...cmd: string[]) => d.lxc("exec", inst, "--", ...cmd);

function pings(from: string, to: string): boolean {
  return exec(from, "ping", "-c", "1", "-W", "2", to).code === 0;
}

/** A one-shot DHCP exchange from inside the container; the address dnsmasq answered with. */
function dhcpAnswer(inst: string, dev = "eth0"): string | undefined {
  const r = exec(inst, "udhcpc", "-i", dev, "-n", "-q", "-f", "-t", "5", "-T", "2", "-s", "/bin/true");
  return /lease of (\d+\.\d+\.\d+\.\d+) obtained/.exec(r.stdout + r.stderr)?.[1];
}

const leasesCsv = (net: string) => ok("network", "list-leases", net, "-f", "csv");
/** Every host veth name the test saw, removed in afterAll if a failure left one. */
const seenVeths = new Set<string>();
function hostName(inst: string, dev = "eth0"): string {
  const v = ok("config", "get", inst, `volatile.${dev}.host_name`).trim();
  if (v) seenVeths.add(v);
  return v;
}
const networkDir = (net: string) => join(d.dir, "networks", net);

function assertNetworkGone(net: string) {
  expect(linkExists(net)).toBe(false);
  expect(nftChainsOf(net)).toEqual([]);
  expect(dnsmasqPids(net)).toEqual([]);
  expect(existsSync(networkDir(net))).toBe(false);
}

/** Stop the daemon without tearing anything down: SIGTERM (a plain stop) or kill -9. */
async function stopDaemon(how: "SIGTERM" | "SIGKILL"): Promise<void> {
  if (how === "SIGKILL") return d.kill9();
  const p = d.proc;
  const exited = new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once("exit", () => r())));
  p.kill("SIGTERM");
  await exited;
}

/** Wait for every listed instance to have eth0 in subnet n and be reachable from the first. */
async function allReachable(insts: string[], n: number): Promise<string[]> {
  const ips = [];
  for (const i of insts) ips.push(await leasedIpv4(i, n));
  await waitFor(() => pings(insts[0], ips[1]), 20_000, 500);
  expect(pings(insts[1], ips[0])).toBe(true);
  return ips;
}

describe("containers on a Linux bridge", () => {
  let br: { name: string; n: number };
  let c1: string;
  let c2: string;
  const veths: string[] = [];

  it("DHCP leases show in lxc list and list-leases; two containers ping each other; network info", async () => {
    br = createNetwork("a");
    c1 = d.launch("c1", { network: br.name });
    c2 = d.launch("c2", { network: br.name });
    expect(ok("config", "device", "get", c1, "eth0", "network").trim()).toBe(br.name);
    const [ip1, ip2] = await allReachable([c1, c2], br.n);
    expect(ip1).not.toBe(ip2);
    const listed = JSON.parse(ok("query", "/1.0/instances?recursion=2"));
    expect(listed.find((i: { name: string }) => i.name === c1).state.network.eth0.addresses).toContainEqual({ family: "inet", address: ip1, netmask: "24", scope: "global" });
    veths.push(hostName(c1), hostName(c2));
    for (const v of veths) expect(readFileSync(`/sys/class/net/${v}/master/uevent`, "utf8")).toContain(`INTERFACE=${br.name}`);

    const leases = leasesCsv(br.name);
    expect(leases).toContain(`${c1},${ok("config", "get", c1, "volatile.eth0.hwaddr").trim()},${ip1},DYNAMIC`);
    expect(leases).toContain(`${c2},`);
    expect(leases).toContain(ip2);
    expect(leases).toContain(`10.97.${br.n}.1,GATEWAY`);

    // The bridge's upper devices (LXD lists its ports) are the containers' veths.
    const state = JSON.parse(ok("query", `/1.0/networks/${br.name}/state`));
    expect(state.bridge.upper_devices).toEqual([...veths].sort());
    const info = ok("network", "info", br.name);
    expect(info).toContain(`inet\t10.97.${br.n}.1/24 (global)`);
    expect(info).toMatch(/State: up/);
    const used = JSON.parse(ok("query", `/1.0/networks/${br.name}`)).used_by;
    expect(used).toEqual(expect.arrayContaining([`/1.0/instances/${c1}`, `/1.0/instances/${c2}`]));
  });

  it("hot-plugs a NIC on a second bridge into a running container and takes it away again", async () => {
    const br2 = createNetwork("b", ["bridge.mtu=1400"]);
    ok("config", "device", "add", c1, "eth1", "nic", `network=${br2.name}`);
    expect(exec(c1, "ip", "link", "show", "eth1").code).toBe(0);
    // The hot-plugged veth takes the bridge's MTU, as the ones liblxc creates do.
    expect(exec(c1, "cat", "/sys/class/net/eth1/mtu").stdout.trim()).toBe("1400");
    const veth = hostName(c1, "eth1");
    expect(readFileSync(`/sys/class/net/${veth}/master/uevent`, "utf8")).toContain(`INTERFACE=${br2.name}`);
    // dnsmasq on the second bridge answers on the hot-plugged NIC.
    expect(dhcpAnswer(c1, "eth1")).toMatch(new RegExp(`^10\\.97\\.${br2.n}\\.`));
    const state = JSON.parse(ok("query", `/1.0/instances/${c1}/state`));
    expect(state.network.eth1.host_name).toBe(veth);
    // The state is read from inside the container's namespace: what the container itself sees.
    expect(state.network.eth1).toMatchObject({ mtu: 1400, state: "up", type: "broadcast", hwaddr: ok("config", "get", c1, "volatile.eth1.hwaddr").trim() });
    expect(state.network.eth1.counters.packets_received).toBeGreaterThan(0);
    expect(state.network.lo).toMatchObject({ type: "loopback", hwaddr: "", mtu: 65536 });
    expect(state.network.lo.addresses).toContainEqual({ family: "inet", address: "127.0.0.1", netmask: "8", scope: "local" });

    ok("config", "device", "remove", c1, "eth1");
    expect(exec(c1, "ip", "link", "show", "eth1").code).not.toBe(0);
    expect(linkExists(veth)).toBe(false);
    expect(ok("config", "show", c1)).not.toContain("volatile.eth1");
    ok("network", "delete", br2.name);
    assertNetworkGone(br2.name);
  });

  it("survives a daemon restart (SIGTERM) and a kill -9: ping, DHCP renewal and leases keep working", async () => {
    const [ip1, ip2] = [listedIpv4(c1)!, listedIpv4(c2)!];
    for (const how of ["SIGTERM", "SIGKILL"] as const) {
      await stopDaemon(how);
      // While the daemon is down the containers keep their link and dnsmasq keeps serving.
      expect(linkExists(br.name)).toBe(true);
      for (const v of veths) expect(linkExists(v)).toBe(true);
      await d.restart();
      expect(ok("list", "-c", "s", "-f", "csv", c1).trim()).toBe("RUNNING");
      expect(pings(c1, ip2)).toBe(true);
      expect(pings(c2, ip1)).toBe(true);
      // Exactly one dnsmasq serves the bridge, and it answers a renewal with the same address.
      await waitFor(() => dnsmasqPids(br.name).length === 1, 10_000);
      expect(dhcpAnswer(c1)).toBe(ip1);
      expect(dnsmasqPids(br.name)).toHaveLength(1);
      const leases = leasesCsv(br.name);
      expect(leases).toContain(ip1);
      expect(leases).toContain(ip2);
      expect(listedIpv4(c1)).toBe(ip1);
    }
  });

  it("a static ipv4.address and limits set on a running container's NIC apply in place; a renewal gets the address", async () => {
    const ifindex = () => exec(c2, "cat", "/sys/class/net/eth0/ifindex").stdout.trim();
    const before = ifindex();
    const veth = hostName(c2);
    const staticIp = `10.97.${br.n}.200`;
    ok("config", "device", "set", c2, "eth0", `ipv4.address=${staticIp}`, "limits.ingress=10Mbit");
    // The interface stays (no re-plug), so the container keeps its address until it renews.
    expect(ifindex()).toBe(before);
    expect(hostName(c2)).toBe(veth);
    expect(sh("tc", ["class", "show", "dev", veth]).stdout).toContain("rate 10Mbit");
    expect(leasesCsv(br.name)).toContain(`${staticIp},STATIC`);
    expect(exec(c2, "sh", "-c", "kill -USR1 $(ps -o pid,args | awk '/[u]dhcpc -f -i eth0/ { print $1 }')").code).toBe(0);
    await waitFor(() => listedIpv4(c2) === staticIp, 60_000, 500);
    expect(pings(c1, staticIp)).toBe(true);
    // A reboot from inside: liblxc recreates the veth under the same name; the limit comes back.
    const pid = () => JSON.parse(ok("query", `/1.0/instances/${c2}/state`)).pid;
    const oldPid = pid();
    exec(c2, "reboot");
    await waitFor(() => pid() > 0 && pid() !== oldPid, 30_000, 500);
    await waitFor(() => sh("tc", ["class", "show", "dev", veth]).stdout.includes("rate 10Mbit"), 15_000, 250);
    await waitFor(() => pings(c1, staticIp), 30_000, 500);
    const rebooted = ifindex();
    ok("config", "device", "unset", c2, "eth0", "ipv4.address");
    ok("config", "device", "unset", c2, "eth0", "limits.ingress");
    expect(ifindex()).toBe(rebooted);
    expect(sh("tc", ["class", "show", "dev", veth]).stdout).not.toContain("rate 10Mbit");
    expect(leasesCsv(br.name)).not.toContain("STATIC");
  });

  it("changing ipv4.address moves the bridge; dnsmasq serves the new range after a renewal or restart", async () => {
    const m = freeSubnet(taken);
    ok("network", "set", br.name, "ipv4.address", `10.97.${m}.1/24`);
    const addrs = sh("ip", ["-4", "addr", "show", "dev", br.name]).stdout;
    expect(addrs).toContain(`inet 10.97.${m}.1/24`);
    expect(addrs).not.toContain(`10.97.${br.n}.1`);
    const pids = dnsmasqPids(br.name);
    expect(pids).toHaveLength(1);
    expect(readFileSync(`/proc/${pids[0]}/cmdline`, "utf8").split("\0")).toContain(`10.97.${m}.2,10.97.${m}.254,1h`);
    // c1 renews (its udhcpc is told to, as at lease renewal time): dnsmasq refuses the old
    // address and hands out one in the new subnet. c2 is restarted.
    // (init runs it as "/bin/busybox udhcpc -f -i eth0 ...", which pidof does not match)
    const renew = exec(c1, "sh", "-c", "kill -USR1 $(ps -o pid,args | awk '/[u]dhcpc -f -i eth0/ { print $1 }')");
    expect(renew.stderr + renew.stdout).toBe("");
    expect(renew.code).toBe(0);
    ok("restart", c2);
    const ips = await allReachable([c1, c2], m);
    expect(leasesCsv(br.name)).toContain(ips[0]);
    expect(ok("network", "info", br.name)).toContain(`inet\t10.97.${m}.1/24 (global)`);
    br.n = m;
  });

  it("a full shutdown (nodelxd shutdown) takes containers and the bridge down; the next start brings both back", async () => {
    const p = d.proc;
    const exited = new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once("exit", () => r())));
    expect(d.cli("shutdown").code).toBe(0);
    await exited;
    expect(linkExists(br.name)).toBe(false);
    expect(dnsmasqPids(br.name)).toEqual([]);
    expect(nftChainsOf(br.name)).toEqual([]);
    await d.restart();
    await waitFor(() => [c1, c2].every((c) => ok("list", "-c", "s", "-f", "csv", c).trim() === "RUNNING"), 60_000, 500);
    await allReachable([c1, c2], br.n);
    expect(dnsmasqPids(br.name)).toHaveLength(1);
  });

  it("a network in use cannot be deleted; afterwards the delete leaves nothing behind", async () => {
    let r = d.lxc("network", "delete", br.name);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("The network is currently in use");
    expect(linkExists(br.name)).toBe(true);
    veths.splice(0, veths.length, hostName(c1), hostName(c2));
    ok("delete", "-f", c1);
    ok("delete", "-f", c2);
    for (const v of veths) expect(linkExists(v)).toBe(false);
    r = d.lxc("network", "delete", br.name);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    assertNetworkGone(br.name);
    // No veth of ours is left on any bridge.
    for (const v of veths) expect(linkExists(v)).toBe(false);
  });
});

describe("containers on an Open vSwitch bridge (userspace datapath)", () => {
  it("ping each other, survive daemon restarts, and stop/delete cleanly", async () => {
    const br = createNetwork("o", ["bridge.driver=openvswitch", "bridge.mtu=1400"]);
    expect(ovs!.vsctl("get", "bridge", br.name, "datapath_type").stdout.trim()).toBe("netdev");
    const c3 = d.launch("c3", { network: br.name });
    const c4 = d.launch("c4", { network: br.name });
    const [ip3, ip4] = await allReachable([c3, c4], br.n);
    // The veth the NIC makes for OVS takes the bridge's MTU on both ends.
    expect(exec(c3, "cat", "/sys/class/net/eth0/mtu").stdout.trim()).toBe("1400");
    const ports = () => ovs!.vsctl("list-ports", br.name).stdout.split("\n").filter(Boolean).sort();
    const veths = [hostName(c3), hostName(c4)].sort();
    expect(ports()).toEqual(veths);
    expect(leasesCsv(br.name)).toContain(ip3);

    for (const how of ["SIGTERM", "SIGKILL"] as const) {
      await stopDaemon(how);
      expect(ovs!.vsctl("br-exists", br.name).code).toBe(0);
      await d.restart();
      expect(ports()).toEqual(veths);
      expect(pings(c3, ip4)).toBe(true);
      expect(pings(c4, ip3)).toBe(true);
      await waitFor(() => dnsmasqPids(br.name).length === 1, 10_000);
      expect(dhcpAnswer(c4)).toBe(ip4);
      expect(leasesCsv(br.name)).toContain(ip4);
    }

    // A reboot from inside (liblxc restarts it in place) keeps the OVS-side veth working.
    const pid = () => JSON.parse(ok("query", `/1.0/instances/${c4}/state`)).pid;
    const oldPid = pid();
    exec(c4, "reboot");
    await waitFor(() => pid() > 0 && pid() !== oldPid, 30_000, 500);
    await waitFor(() => pings(c3, ip4), 30_000, 500);
    expect(ports()).toEqual(veths);

    // Hot-plug into a running container on the OVS bridge, through ovs-vsctl.
    ok("config", "device", "add", c3, "eth1", "nic", `network=${br.name}`, "name=eth1");
    expect(exec(c3, "ip", "link", "show", "eth1").code).toBe(0);
    const hot = hostName(c3, "eth1");
    expect(ports()).toEqual([...veths, hot].sort());
    expect(dhcpAnswer(c3, "eth1")).toMatch(new RegExp(`^10\\.97\\.${br.n}\\.`));
    ok("config", "device", "remove", c3, "eth1");
    expect(exec(c3, "ip", "link", "show", "eth1").code).not.toBe(0);
    expect(ports()).toEqual(veths);
    expect(linkExists(hot)).toBe(false);

    // A stop after the restarts removes the OVS port and the veth; a start makes new ones.
    ok("stop", "-f", c4);
    expect(ports()).toEqual([hostName(c3)]);
    expect(linkExists(veths.find((v) => v !== hostName(c3))!)).toBe(false);
    ok("start", c4);
    await leasedIpv4(c4, br.n);
    await waitFor(() => pings(c3, listedIpv4(c4)!), 20_000, 500);
    expect(ports()).toHaveLength(2);

    expect(d.lxc("network", "delete", br.name).stderr).toContain("The network is currently in use");
    const all = [hostName(c3), hostName(c4)];
    ok("delete", "-f", c3);
    ok("delete", "-f", c4);
    for (const v of all) expect(linkExists(v)).toBe(false);
    expect(ports()).toEqual([]);
    ok("network", "delete", br.name);
    assertNetworkGone(br.name);
    expect(ovs!.vsctl("br-exists", br.name).code).toBe(2);
  });
});

describe("static DHCP host files of stopped instances (LXD's device Add/Update/Remove)", () => {
  it("are written on create, address/hwaddr changes and rename, and removed on device removal and delete, with dnsmasq kept running", async () => {
    const name = netName("s");
    const br = { name, n: freeSubnet(taken) };
    networks.push(name);
    ok("network", "create", name, `ipv4.address=10.97.${br.n}.1/24`, "ipv4.nat=false", `ipv6.address=fd42:97:${br.n}::1/64`, "ipv6.dhcp.stateful=true", "ipv6.nat=false");
    const hosts = join(networkDir(br.name), "dnsmasq.hosts");
    const file = (inst: string, dev = "eth0") => join(hosts, `${inst}.${dev}`);
    const read = (inst: string, dev = "eth0") => (existsSync(file(inst, dev)) ? readFileSync(file(inst, dev), "utf8") : undefined);
    const dnsmasqPid = dnsmasqPids(br.name)[0];

    // Created stopped with a NIC on the managed bridge: its host file exists before any start.
    const c = d.launch("s1", { init: true, network: br.name });
    const mac = () => ok("config", "get", c, "volatile.eth0.hwaddr").trim();
    expect(read(c)).toBe(`${mac()},${c}\n`);

    // Static addresses set on the stopped instance are in the file at once (LXD's line: mac,v4,[v6],host).
    ok("config", "device", "set", c, "eth0", `ipv4.address=10.97.${br.n}.50`);
    expect(read(c)).toBe(`${mac()},10.97.${br.n}.50,${c}\n`);
    const v6 = `fd42:97:${br.n}::50`;
    ok("config", "device", "set", c, "eth0", `ipv6.address=${v6}`);
    expect(read(c)).toBe(`${mac()},10.97.${br.n}.50,[${v6}],${c}\n`);
    expect(leasesCsv(br.name)).toContain(`10.97.${br.n}.50,STATIC`);
    ok("config", "device", "set", c, "eth0", "hwaddr=00:16:3e:aa:bb:cc");
    expect(read(c)).toBe(`00:16:3e:aa:bb:cc,10.97.${br.n}.50,[${v6}],${c}\n`);
    ok("config", "device", "unset", c, "eth0", "ipv6.address");
    expect(read(c)).toBe(`00:16:3e:aa:bb:cc,10.97.${br.n}.50,${c}\n`);
    // dnsmasq still runs (it was sent SIGHUP, not restarted).
    expect(dnsmasqPids(br.name)).toEqual([dnsmasqPid]);

    // Rename moves the file to the new name.
    const renamed = d.instanceName("s2");
    ok("rename", c, renamed);
    expect(read(c)).toBeUndefined();
    expect(read(renamed)).toBe(`00:16:3e:aa:bb:cc,10.97.${br.n}.50,${renamed}\n`);

    // A second NIC added while stopped gets its own file; removing the device removes it.
    ok("config", "device", "add", renamed, "eth1", "nic", `network=${br.name}`, "name=eth1", `ipv4.address=10.97.${br.n}.51`);
    expect(read(renamed, "eth1")).toMatch(new RegExp(`^[0-9a-f:]{17},10\\.97\\.${br.n}\\.51,${renamed}\\n$`));
    ok("config", "device", "remove", renamed, "eth1");
    expect(read(renamed, "eth1")).toBeUndefined();

    // The instance starts with the static address it was given while stopped.
    ok("start", renamed);
    await waitFor(() => listedIpv4(renamed) === `10.97.${br.n}.50`, 60_000, 500);
    ok("stop", "-f", renamed);

    // Delete removes the file.
    ok("delete", renamed);
    expect(read(renamed)).toBeUndefined();
    expect(existsSync(hosts) ? sh("ls", [hosts]).stdout.trim() : "").toBe("");
    ok("network", "delete", br.name);
    assertNetworkGone(br.name);
  });
});
