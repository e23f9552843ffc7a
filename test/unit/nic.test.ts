// NIC devices, pure parts: validation with LXD's messages and the RunConfig handed to liblxc.
import pino from "pino";
import { describe, expect, it } from "vitest";
import { deviceFactory } from "../../src/devices/registry.js";
import type { DeviceContext } from "../../src/devices/types.js";
import type { NetworksPort } from "../../src/ports.js";
import { parseBitRate, tcCommands } from "../../src/devices/nic/common.js";

function context(networks?: Partial<NetworksPort>) {
  const volatile = new Map<string, string>();
  const leases: unknown[][] = [];
  const port: NetworksPort = {
    get(_p, name) {
      if (name === "lxdbr0") return { name: "lxdbr0", type: "bridge", config: { "ipv4.address": "10.97.1.1/24" } };
      if (name === "mv") return { name: "lo", type: "macvlan", config: { parent: "lo", mtu: "1400" } };
      throw new Error("Network not found");
    },
    isOvs: () => false,
    parentsInUse: () => [],
    setStaticLease: async (...args) => void leases.push(args),
    removeStaticLease: async () => {},
    allocateFilterAddresses: async () => ({}),
    projectOf: (project) => project,
    advertiseNicRoutes: async () => {},
    withdrawNicRoutes: async () => {},
    ...networks,
  };
  const ctx: DeviceContext = {
    project: "default",
    instance: "c1",
    instanceConfig: {},
    volatile: { get: (k) => volatile.get(k), set: async (c) => Object.entries(c).forEach(([k, v]) => (v === "" ? volatile.delete(k) : volatile.set(k, v))) },
    devicesDir: "/nonexistent",
    rootfs: "/nonexistent",
    hostRootId: { uid: 0, gid: 0 },
    idmap: [],
    // NICs reach only the networks port.
    ports: { networks: port } as DeviceContext["ports"],
    log: pino({ level: "silent" }),
  };
  return { ctx, volatile, leases };
}

const device = (ctx: DeviceContext, name: string, config: Record<string, string>) => deviceFactory(config)(ctx, name, config);

describe("NIC validation (LXD messages)", () => {
  const { ctx } = context();
  it.each([
    [{ type: "nic", nictype: "bridged", parent: "lxdbr0", foo: "bar" }, 'Invalid device option "foo"'],
    [{ type: "nic", nictype: "bridged", parent: "lxdbr0", hwaddr: "zz" }, 'Invalid value for device option "hwaddr": Invalid MAC address, must be 6 bytes of hex separated by colons'],
    [{ type: "nic", nictype: "bridged", parent: "lxdbr0", mtu: "abc" }, 'Invalid value for device option "mtu": Invalid MTU "abc"'],
    [{ type: "nic", nictype: "bridged" }, 'Invalid value for device option "parent": Required value'],
    [{ type: "nic", network: "lxdbr0", nictype: "bridged" }, 'Cannot use "nictype" property in conjunction with "network" property'],
    [{ type: "nic", network: "lxdbr0", parent: "eth0" }, 'Cannot use "parent" property in conjunction with "network" property'],
    [{ type: "nic", network: "lxdbr0", "ipv4.address": "10.0.0.5" }, 'Device IP address "10.0.0.5" not within network "lxdbr0" subnet'],
    [{ type: "nic", nictype: "bridged", parent: "lxdbr0", name: "a/b" }, 'Invalid value for device option "name": Network interface contains invalid characters'],
    [{ type: "nic", nictype: "macvlan" }, 'Invalid value for device option "parent": Required value'],
    [{ type: "nic", nictype: "routed", "ipv4.address": "10.0.0.5/24" }, 'Invalid value for device option "ipv4.address": Item "10.0.0.5/24": Not an IPv4 address "10.0.0.5/24"'],
    [{ type: "nic", nictype: "p2p", "limits.ingress": "fast" }, 'Invalid value for device option "limits.ingress"'],
  ])("%j → %s", (config, message) => {
    expect(() => device(ctx, "eth9", config).validate()).toThrow(message);
  });
  it("accepts valid configs of every nictype", () => {
    for (const c of [
      { type: "nic", network: "lxdbr0", name: "eth0", "ipv4.address": "10.97.1.50" },
      { type: "nic", nictype: "bridged", parent: "br0", "limits.ingress": "10Mbit" },
      { type: "nic", nictype: "macvlan", parent: "eth0", mode: "bridge" },
      { type: "nic", nictype: "p2p", host_name: "vethtest", "ipv4.routes": "10.1.0.0/24" },
      { type: "nic", nictype: "routed", "ipv4.address": "10.0.0.5,10.0.0.6", parent: "eth0" },
      { type: "nic", network: "mv" },
    ]) {
      expect(() => device(ctx, "eth0", c).validate()).not.toThrow();
    }
  });
  it("fails to load a NIC on an unknown network like LXD", () => {
    expect(() => device(ctx, "eth9", { type: "nic", network: "nonexist" })).toThrow('Failed loading device "eth9": Failed to load network "nonexist" for project "default": Network not found');
  });
});

describe("NIC RunConfig for liblxc", () => {
  it("network=bridge: a veth on the bridge with a stable LXD MAC and a static lease", async () => {
    const { ctx, volatile, leases } = context();
    const nic = device(ctx, "eth0", { type: "nic", network: "lxdbr0", name: "eth0", "ipv4.address": "10.97.1.50" });
    const rc = await nic.start();
    const iface = rc.networkInterfaces![0];
    expect(iface).toMatchObject({ type: "veth", name: "eth0", link: "lxdbr0", flags: "up" });
    expect(iface.hwaddr).toMatch(/^00:16:3e(:[0-9a-f]{2}){3}$/);
    expect(iface["veth.pair"]).toMatch(/^veth[0-9a-f]{8}$/);
    expect(volatile.get("volatile.eth0.hwaddr")).toBe(iface.hwaddr);
    expect(volatile.get("volatile.eth0.host_name")).toBe(iface["veth.pair"]);
    expect(leases).toEqual([["lxdbr0", "c1", iface.hwaddr, "10.97.1.50", undefined, "eth0"]]);
    const again = await nic.start();
    expect(again.networkInterfaces![0].hwaddr).toBe(iface.hwaddr);
  });
  it("honours hwaddr, host_name and mtu from the config", async () => {
    const { ctx } = context();
    const rc = await device(ctx, "eth1", { type: "nic", nictype: "bridged", parent: "lxdbr0", hwaddr: "00:16:3e:aa:bb:cc", host_name: "vethfixed", mtu: "1400" }).start();
    expect(rc.networkInterfaces![0]).toEqual({ type: "veth", name: "eth1", "veth.pair": "vethfixed", link: "lxdbr0", hwaddr: "00:16:3e:aa:bb:cc", mtu: "1400", flags: "up" });
  });
  it("network=macvlan: a macvlan on the network's parent", async () => {
    const { ctx } = context();
    const rc = await device(ctx, "eth0", { type: "nic", network: "mv" }).start();
    expect(rc.networkInterfaces![0]).toMatchObject({ type: "macvlan", "macvlan.mode": "bridge", link: "lo", name: "eth0", mtu: "1400" });
  });
  it("p2p and routed: a veth without a link, configured after start", async () => {
    const { ctx } = context();
    const rc = await device(ctx, "eth0", { type: "nic", nictype: "routed", "ipv4.address": "10.0.0.5" }).start();
    expect(rc.networkInterfaces![0].link).toBeUndefined();
    expect(rc.networkInterfaces![0].type).toBe("veth");
    expect(typeof rc.postStart).toBe("function");
  });
  it("builds tc limits like LXD", () => {
    expect(parseBitRate("10Mbit")).toBe(10_000_000);
    expect(parseBitRate("1.5Gbit")).toBe(1_500_000_000);
    expect(tcCommands("vethx", { "limits.ingress": "10Mbit", "limits.egress": "1Mbit" })).toEqual({
      ifb: "ifbx",
      tc: [
        ["qdisc", "add", "dev", "vethx", "root", "handle", "1:0", "htb", "default", "10"],
        ["class", "add", "dev", "vethx", "parent", "1:0", "classid", "1:10", "htb", "rate", "10000000bit"],
        ["qdisc", "add", "dev", "vethx", "handle", "ffff:0", "ingress"],
        ["filter", "add", "dev", "vethx", "parent", "ffff:0", "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "ifbx"],
        ["qdisc", "add", "dev", "ifbx", "root", "handle", "1:0", "htb", "default", "10"],
        ["class", "add", "dev", "ifbx", "parent", "1:0", "classid", "1:10", "htb", "rate", "1000000bit"],
      ],
    });
    expect(tcCommands("vethx", {})).toEqual({ tc: [] });
  });
});
