// infiniband devices (nictype physical and sriov) with the stock client on real busybox
// containers. This host has no InfiniBand: the daemon reads hardware from a sysfs//dev tree the
// test builds (NODELXD_HARDWARE_ROOT) describing a ConnectX card with one VF, whose netdevs are
// named after real veth pairs the test creates (prefix `ib`). Everything after the lookup is
// real: the netdev's MTU changed and restored, the netdev moved into the container (liblxc
// `phys` at start, a netns move on hot-plug) and back, /dev/infiniband nodes made on the host,
// bind-mounted and allowed in the device cgroup, the liblxc config the daemon wrote.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { buildIbTree } from "../helpers/ib-tree.js";

const tag = randomBytes(3).toString("hex");
const PF = `ib${tag}p`;
const VF = `ib${tag}v`;
const top = mkdtempSync("/tmp/ib-hw-");
const ipLink = (...args: string[]) => spawnSync("ip", ["link", ...args], { encoding: "utf8" });
const hostHas = (dev: string) => existsSync(`/sys/class/net/${dev}`);
const hostMtu = (dev: string) => readFileSync(`/sys/class/net/${dev}/mtu`, "utf8").trim();

let d: InitialisedDaemon;
beforeAll(async () => {
  for (const dev of [PF, VF]) expect(ipLink("add", dev, "type", "veth", "peer", "name", `${dev}x`).status).toBe(0);
  buildIbTree(top, { pf: PF, vf: VF }, { nodes: true });
  // The loopback interface as sysfs shows it (no device: no card).
  mkdirSync(join(top, "sys/devices/virtual/net/lo"), { recursive: true });
  symlinkSync("../../devices/virtual/net/lo", join(top, "sys/class/net/lo"));
  d = await startInitialisedDaemon({ env: { NODELXD_HARDWARE_ROOT: top } });
}, 120_000);
afterAll(async () => {
  await d?.teardown();
  for (const dev of [PF, VF]) ipLink("del", dev);
  rmSync(top, { recursive: true, force: true });
});

const ok = (r: { code: number; stderr: string }) => expect(r.code, r.stderr).toBe(0);
const inside = (c: string, p: string) => d.lxc("exec", c, "--", "stat", "-c", "%F %t:%T %a", p).stdout.trim();
const insideNet = (c: string, dev: string, file: string) => d.lxc("exec", c, "--", "cat", `/sys/class/net/${dev}/${file}`).stdout.trim();
const hostNodes = (c: string) => (existsSync(join(d.dir, "devices", c)) ? readdirSync(join(d.dir, "devices", c)).filter((f) => f.startsWith("infiniband.")).sort() : []);
const vol = (c: string, k: string) => d.lxc("config", "get", c, `volatile.${k}`).stdout.trim();
const v1 = existsSync("/sys/fs/cgroup/devices/devices.list");
function devicesList(c: string): string {
  const pid = /PID: (\d+)/.exec(d.lxc("info", c).stdout)?.[1];
  const line = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").find((l) => /:devices:/.test(l));
  return readFileSync(join("/sys/fs/cgroup/devices", line!.split(":")[2], "devices.list"), "utf8");
}

describe("infiniband devices", () => {
  it("refuses bad config and missing hardware with LXD's messages, changing nothing", () => {
    const c = d.launch("ibe");
    const err = (...args: string[]) => d.lxc("config", "device", "add", c, "ib", "infiniband", ...args).stderr.trim();
    expect(err("nictype=bridged", `parent=${PF}`, "name=ib0")).toBe('Error: Invalid devices: Device validation failed for "ib": Failed loading device "ib": Unsupported device type');
    expect(err("nictype=physical", "name=ib0")).toBe('Error: Invalid devices: Device validation failed for "ib": Invalid value for device option "parent": Required value');
    expect(err("nictype=physical", `parent=${PF}`, "name=ib0", "hwaddr=00:16:3e:00:00:01")).toBe('Error: Invalid devices: Device validation failed for "ib": Invalid value for device option "hwaddr": Invalid value, must be either 8 or 20 bytes of hex separated by colons');
    expect(err("nictype=physical", "parent=ibnope0", "name=ib0")).toBe(`Error: Failed to start device "ib": Parent device 'ibnope0' doesn't exist`);
    // As real LXD 5.0.2 answers for a netdev that is no InfiniBand port.
    expect(err("nictype=physical", "parent=lo", "name=ib0")).toBe('Error: Failed to start device "ib": Specified infiniband device "lo" not found');
    expect(err("nictype=sriov", "parent=lo", "name=ib0")).toBe('Error: Failed to start device "ib": All virtual functions on parent device are already in use');
    // A 20-byte address cannot go on this (Ethernet) netdev: the start fails, the MTU set
    // before it is not left behind, no node stays on the host.
    const before = hostMtu(PF);
    const r = err("nictype=physical", `parent=${PF}`, "name=ib0", "mtu=1400", "hwaddr=a0:00:02:20:fe:80:00:00:00:00:00:00:ec:0d:9a:03:00:1c:2d:01");
    expect(r).toMatch(new RegExp(`^Error: Failed to start device "ib": Failed to set the MAC address: Failed to run: ip link set dev ${PF} address a0:00:02:20:fe:80:00:00:00:00:00:00:ec:0d:9a:03:00:1c:2d:01: exit status \\d+ \\(.+\\)$`));
    expect(hostHas(PF)).toBe(true);
    expect(hostMtu(PF)).toBe(before);
    expect(hostNodes(c)).toEqual([]);
    expect(vol(c, "ib.host_name")).toBe("");
    expect(d.lxc("config", "device", "get", c, "ib", "parent").code).not.toBe(0);
    // A node missing from /dev fails after the MTU was set: the VF gets its MTU back, the
    // nodes made before it are removed.
    renameSync(join(top, "dev/infiniband/uverbs1"), join(top, "dev/infiniband/uverbs1.away"));
    try {
      expect(err("nictype=sriov", `parent=${PF}`, "name=ib1", "mtu=1400")).toBe('Error: Failed to start device "ib": Failed to get device attributes for /dev/infiniband/uverbs1: no such file or directory');
    } finally {
      renameSync(join(top, "dev/infiniband/uverbs1.away"), join(top, "dev/infiniband/uverbs1"));
    }
    expect(hostHas(VF)).toBe(true);
    expect(hostMtu(VF)).toBe("1500");
    expect(hostNodes(c)).toEqual([]);
    expect(vol(c, "ib.host_name")).toBe("");
  });

  it("physical: hot-plugs the parent netdev and its nodes, survives a daemon restart, gives them back on removal", async () => {
    const c = d.launch("ibp");
    const mac = readFileSync(`/sys/class/net/${PF}/address`, "utf8").trim();
    // No name: the first free ibN, kept in volatile (LXD's FillNetworkDevice).
    ok(d.lxc("config", "device", "add", c, "ib", "infiniband", "nictype=physical", `parent=${PF}`, "mtu=1400"));
    expect(vol(c, "ib.name")).toBe("ib0");
    expect(hostHas(PF)).toBe(false);
    expect(insideNet(c, "ib0", "mtu")).toBe("1400");
    expect(insideNet(c, "ib0", "address")).toBe(mac);
    expect(["issm0", "umad0", "uverbs0"].map((n) => inside(c, `/dev/infiniband/${n}`))).toEqual(["character special file e7:40 600", "character special file e7:0 600", "character special file e7:c0 666"]);
    expect(hostNodes(c)).toEqual(["infiniband.unix.ib.dev-infiniband-issm0", "infiniband.unix.ib.dev-infiniband-umad0", "infiniband.unix.ib.dev-infiniband-uverbs0"]);
    if (v1) for (const rule of ["c 231:64 rwm", "c 231:0 rwm", "c 231:192 rwm"]) expect(devicesList(c)).toContain(rule);
    expect([vol(c, "ib.host_name"), vol(c, "ib.last_state.mtu"), vol(c, "ib.last_state.hwaddr")]).toEqual([PF, "1500", mac]);
    // The parent's VF is still free: an sriov device on the parent (another container) takes the VF.
    const other = d.launch("ibq");
    ok(d.lxc("config", "device", "add", other, "ib", "infiniband", "nictype=sriov", `parent=${PF}`, "name=ib0"));
    expect(vol(other, "ib.host_name")).toBe(VF);
    expect(hostHas(VF)).toBe(false);
    ok(d.lxc("config", "device", "remove", other, "ib"));
    expect(hostHas(VF)).toBe(true);

    await d.kill9();
    await d.restart();
    ok(d.lxc("config", "device", "remove", c, "ib"));
    expect(hostHas(PF)).toBe(true);
    expect(hostMtu(PF)).toBe("1500");
    expect(d.lxc("exec", c, "--", "ls", "/sys/class/net/ib0").code).not.toBe(0);
    expect(d.lxc("exec", c, "--", "ls", "/dev/infiniband/uverbs0").code).not.toBe(0);
    expect(hostNodes(c)).toEqual([]);
    if (v1) expect(devicesList(c)).not.toContain("c 231:192 rwm");
    expect(vol(c, "ib.host_name")).toBe("");
    expect(vol(c, "ib.name")).toBe("");
  });

  it("sriov: a free VF of the parent at start (liblxc phys), none left for a second device, given back at stop", () => {
    const c = d.launch("ibs", { init: true });
    ok(d.lxc("config", "device", "add", c, "ib", "infiniband", "nictype=sriov", `parent=${PF}`, "name=ib1", "mtu=2000"));
    ok(d.lxc("start", c));
    expect(hostHas(VF)).toBe(false);
    expect(hostHas(PF)).toBe(true);
    expect(insideNet(c, "ib1", "mtu")).toBe("2000");
    expect(insideNet(c, "ib1", "operstate")).not.toBe("down");
    expect(inside(c, "/dev/infiniband/uverbs1")).toBe("character special file e7:c1 666");
    const conf = readFileSync(join(d.dir, "logs", c, "lxc.conf"), "utf8");
    const idx = /^lxc\.net\.(\d+)\.link = (.*)$/m.exec(conf.split("\n").filter((l) => l.includes(`= ${VF}`)).join("\n"))?.[1];
    expect(idx).toBeDefined();
    for (const [k, v] of [["type", "phys"], ["name", "ib1"], ["flags", "up"], ["link", VF]]) expect(conf).toContain(`lxc.net.${idx}.${k} = ${v}\n`);
    const node = join(d.dir, "devices", c, "infiniband.unix.ib.dev-infiniband-uverbs1");
    expect(conf).toContain(`lxc.mount.entry = ${node} dev/infiniband/uverbs1 none bind,create=file 0 0\n`);
    expect(conf).toMatch(/lxc\.cgroup2?\.devices\.allow = c 231:193 rwm\n/);
    expect(vol(c, "ib.host_name")).toBe(VF);

    // The only VF is taken.
    const other = d.launch("ibt");
    expect(d.lxc("config", "device", "add", other, "ib", "infiniband", "nictype=sriov", `parent=${PF}`, "name=ib1").stderr.trim()).toBe('Error: Failed to start device "ib": All virtual functions on parent device are already in use');
    expect(hostNodes(other)).toEqual([]);

    ok(d.lxc("stop", "-f", c));
    expect(hostHas(VF)).toBe(true);
    expect(hostMtu(VF)).toBe("1500");
    expect(hostNodes(c)).toEqual([]);
    expect(vol(c, "ib.host_name")).toBe("");
  });
});
