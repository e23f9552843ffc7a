// The bridge network type: a Linux or Open vSwitch bridge with addresses, one supervised
// dnsmasq, an nftables table, optional tunnels and fan mode.
import { interfaceState } from "../host/state.js";
import { createHash } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { parseBool } from "../../config/validators.js";
import { run, type ServiceProcess } from "../../os/exec.js";
import { formatIp, networkOf, parseCidr, formatCidr } from "../ipnet.js";
import { allocate, DhcpNotSupported, eui64, type Allocation } from "../dhcp-alloc.js";
import * as dnsmasq from "../host/dnsmasq.js";
import { addAddress, addresses, delAddress, deleteLink, linkExists, routeDestinations, setMtu, setUp, writeSysctl } from "../host/ip.js";
import { applyFirewall, removeFirewall, type FirewallSpec } from "../host/nft.js";
import { bridgeKeys, tunnelKeyValidator, tunnelsOf, validateNetworkConfig } from "../keys.js";
import { chooseIPv4Subnet, chooseIPv6Subnet } from "../subnets.js";
import { aclNftRules } from "../acls/rules.js";
import { bgpKeyRules } from "../bgp/rules.js";
import type { LeaseView, NetworkConfig, NetworkContext, NetworkDriver, NetworkStateView } from "../types.js";
import { bridgeBackends, type BridgeBackend } from "./bridge-backends.js";
import { autoUnderlay, devMtu, fanLinkName, hostV4Addresses, planFan, setupFanTunnel, type FanPlan } from "./fan.js";
import { createTunnels, removeTunnels } from "./tunnels.js";
import { readSysctl } from "../host/sysfs.js";

const isSet = (v?: string) => v !== undefined && v !== "" && v !== "none";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A stable LXD-style MAC (00:16:3e:xx:xx:xx) for a bridge without bridge.hwaddr. */
export function bridgeMac(seed: string): string {
  const h = createHash("sha256").update(seed).digest();
  return ["00", "16", "3e", ...[0, 1, 2].map((i) => h[i].toString(16).padStart(2, "0"))].join(":");
}

/** Composite rules LXD checks after the per-key ones. */
export function bridgeCompositeErrors(name: string, config: NetworkConfig): string | undefined {
  const fan = config["bridge.mode"] === "fan";
  if (fan && name.length > 11) return "Network name too long to use with the FAN (must be 11 characters or less)";
  for (const k of Object.keys(config).sort()) {
    const v = config[k];
    if (v === "") continue;
    if (fan && k.startsWith("ipv4.") && !["ipv4.dhcp.expiry", "ipv4.firewall", "ipv4.nat", "ipv4.nat.order"].includes(k))
      return "IPv4 configuration may not be set when in 'fan' mode";
    if (fan && k.startsWith("ipv6.")) return "IPv6 configuration may not be set when in 'fan' mode";
    if (!fan && k.startsWith("fan.")) return "FAN configuration may only be set when in 'fan' mode";
    if (k === "bridge.mtu") {
      const mtu = Number(v);
      if (isSet(config["ipv6.address"]) && mtu < 1280) return "The minimum MTU for an IPv6 network is 1280";
      if (isSet(config["ipv4.address"]) && mtu < 68) return "The minimum MTU for an IPv4 network is 68";
      if (fan && config["fan.type"] === "ipip" && mtu > 1480) return "Maximum MTU for an IPIP FAN bridge is 1480";
      if (fan && config["fan.type"] !== "ipip" && mtu > 1450) return "Maximum MTU for a VXLAN FAN bridge is 1450";
    }
  }
  for (const t of Object.keys(tunnelsOf(config))) {
    if (`${name}-${t}`.length > 15) return `Tunnel name "${t}" too long for network "${name}" (interface ${name}-${t} exceeds 15 characters)`;
  }
  return undefined;
}

class BridgeNetwork implements NetworkDriver {
  readonly type = "bridge";
  private dnsmasqProc?: ServiceProcess;
  private stopped = false;
  private restartTimer?: NodeJS.Timeout;
  /** Consecutive unexpected dnsmasq exits, for the restart backoff. */
  private crashes = 0;
  /** The fan plan of the last converge (fan mode only). */
  private plan?: FanPlan;
  private readonly files: dnsmasq.DnsmasqFiles;

  constructor(private readonly ctx: NetworkContext) {
    this.files = dnsmasq.dnsmasqFiles(ctx.dir);
  }

  private get config(): NetworkConfig {
    return this.ctx.config;
  }

  private backend(config = this.config): BridgeBackend {
    return bridgeBackends[config["bridge.driver"] || "native"];
  }

  hostInterface(): string {
    return this.ctx.name;
  }

  isOvs(): boolean {
    return this.config["bridge.driver"] === "openvswitch";
  }

  validate(config: NetworkConfig): void {
    const bgp = bgpKeyRules(config);
    validateNetworkConfig(this.ctx.name, bridgeKeys, config, (k) => tunnelKeyValidator(k) ?? bgp[k]);
    const err = bridgeCompositeErrors(this.ctx.name, config);
    if (err) throw new Error(err);
  }

  async fillConfig(input: NetworkConfig, facts: Parameters<NonNullable<NetworkDriver["fillConfig"]>>[1]): Promise<NetworkConfig> {
    const config = { ...input };
    if (config["bridge.mode"] === "fan") {
      config["fan.underlay_subnet"] ||= "auto";
      config["ipv4.nat"] ||= "true";
    } else {
      config["ipv4.address"] ||= "auto";
      if (config["ipv4.address"] === "auto") config["ipv4.nat"] ||= "true";
      if (!config["ipv6.address"] && readSysctl("net/ipv6/conf/default/disable_ipv6") === "0") config["ipv6.address"] = "auto";
      if (config["ipv6.address"] === "auto") config["ipv6.nat"] ||= "true";
    }
    return this.populateAuto(config, facts);
  }

  /** Replace "auto" values with ones chosen from local facts. */
  async populateAuto(config: NetworkConfig, facts: Parameters<NonNullable<NetworkDriver["fillConfig"]>>[1]): Promise<NetworkConfig> {
    try {
      if (config["ipv4.address"] === "auto") config["ipv4.address"] = chooseIPv4Subnet(await facts());
      if (config["ipv6.address"] === "auto") config["ipv6.address"] = chooseIPv6Subnet(await facts());
      if (config["fan.underlay_subnet"] === "auto") config["fan.underlay_subnet"] = await autoUnderlay();
    } catch (e) {
      throw new Error(`Failed generating auto config: ${(e as Error).message}`);
    }
    return config;
  }

  private mtu(config = this.config): string {
    if (config["bridge.mtu"]) return config["bridge.mtu"];
    return Object.keys(tunnelsOf(config)).length > 0 ? "1400" : "1500";
  }

  private hwaddr(): string {
    return this.config["bridge.hwaddr"] || bridgeMac(`${this.ctx.dir}/${this.ctx.name}`);
  }

  async start(): Promise<void> {
    this.stopped = false;
    const name = this.ctx.name;
    const existed = linkExists(name);
    try {
      await this.converge();
    } catch (e) {
      if (!existed) await this.stop().catch((err) => this.ctx.log.error({ err, network: name }, "cleanup after failed start"));
      throw e;
    }
  }

  private async converge(): Promise<void> {
    const name = this.ctx.name;
    const config = this.config;
    const backend = this.backend();
    const fan = config["bridge.mode"] === "fan";
    let plan: FanPlan | undefined;
    if (fan) plan = planFan(name, config, await hostV4Addresses(), devMtu);

    await backend.ensure(name, this.hwaddr());
    const mtu = plan && !config["bridge.mtu"] ? String(plan.mtu) : this.mtu();
    await setMtu(name, mtu);
    // IPv6 on the bridge only when configured; no autoconf or DAD on our own addresses.
    if (existsSync(`/proc/sys/net/ipv6/conf/${name}`)) {
      writeSysctl(`net/ipv6/conf/${name}/disable_ipv6`, isSet(config["ipv6.address"]) ? "0" : "1");
      if (isSet(config["ipv6.address"])) {
        writeSysctl(`net/ipv6/conf/${name}/autoconf`, "0");
        writeSysctl(`net/ipv6/conf/${name}/accept_dad`, "0");
      }
    }
    await setUp(name);

    for (const ext of (config["bridge.external_interfaces"] ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
      if (!linkExists(ext)) throw new Error(`External interface "${ext}" not found`);
      await backend.addPort(name, ext);
      await setUp(ext);
    }

    // Addresses: add what the config wants, remove other global ones we may have set before.
    const wanted = [config["ipv4.address"], config["ipv6.address"], plan?.bridgeCidr].filter(isSet) as string[];
    const wantedNorm = new Set(wanted.map((c) => formatCidr(parseCidr(c)!)));
    const current = (await addresses(name)).flatMap((l) => l.addr_info).filter((a) => a.scope === "global");
    for (const a of current) {
      const c = `${a.local}/${a.prefixlen}`;
      if (!wantedNorm.has(formatCidr(parseCidr(c)!))) await delAddress(name, c);
    }
    const present = new Set(current.map((a) => formatCidr(parseCidr(`${a.local}/${a.prefixlen}`)!)));
    for (const c of wanted) if (!present.has(formatCidr(parseCidr(c)!))) await addAddress(name, c);

    await this.convergeRoutes();

    // Forwarding only when this network routes.
    if (isSet(config["ipv4.address"]) && (config["ipv4.routing"] === undefined || parseBool(config["ipv4.routing"]))) writeSysctl("net/ipv4/ip_forward", "1");
    if (isSet(config["ipv6.address"]) && (config["ipv6.routing"] === undefined || parseBool(config["ipv6.routing"]))) writeSysctl("net/ipv6/conf/all/forwarding", "1");

    await removeTunnels(name, config);
    const needsDefault = Object.values(tunnelsOf(config)).some((t) => t.protocol === "vxlan" && !(t.local && t.remote) && !t.interface);
    await createTunnels(name, config, backend, mtu, needsDefault ? (await routeDestinations()).defaultDev : undefined);

    if (plan) {
      await deleteLink(fanLinkName(name));
      await setupFanTunnel(name, plan, backend, config["fan.type"] === "ipip");
    }

    this.plan = plan;
    await this.applyFirewall(plan);
    await this.restartDnsmasq(plan);
  }

  /** ipv4.routes / ipv6.routes: static routes to the bridge, ours marked proto static. */
  private async convergeRoutes(): Promise<void> {
    const name = this.ctx.name;
    const split = (v?: string) => (v ?? "").split(",").map((x) => x.trim()).filter(Boolean);
    const wanted = new Set([...split(this.config["ipv4.routes"]), ...split(this.config["ipv6.routes"])].map((r) => formatCidr(networkOf(parseCidr(r)!))));
    for (const fam of ["-4", "-6"]) {
      const out = (await run("ip", ["-j", fam, "route", "show", "dev", name, "proto", "static"])).stdout.trim();
      for (const r of (out ? JSON.parse(out) : []) as { dst: string }[]) {
        const dst = r.dst.includes("/") ? r.dst : `${r.dst}/${fam === "-4" ? 32 : 128}`;
        const norm = formatCidr(networkOf(parseCidr(dst)!));
        if (!wanted.has(norm)) await run("ip", [fam, "route", "del", dst, "dev", name, "proto", "static"]);
      }
    }
    for (const r of wanted) await run("ip", ["route", "replace", r, "dev", name, "proto", "static"]);
  }

  private async applyFirewall(plan?: FanPlan): Promise<void> {
    const c = this.config;
    const nat = (family: 4 | 6): FirewallSpec["nat4"] => {
      const addr = family === 4 ? (plan ? `${plan.bridgeAddress}/${plan.bridgeCidr.split("/")[1]}` : c["ipv4.address"]) : c["ipv6.address"];
      if (!isSet(addr) || !parseBool(c[`ipv${family}.nat`])) return undefined;
      return { subnet: formatCidr(networkOf(parseCidr(addr!)!)), address: c[`ipv${family}.nat.address`] || undefined };
    };
    const spec: FirewallSpec = {
      bridge: this.ctx.name,
      nat4: nat(4),
      nat6: nat(6),
      firewall4: (isSet(c["ipv4.address"]) || !!plan) && (c["ipv4.firewall"] === undefined || parseBool(c["ipv4.firewall"])),
      firewall6: isSet(c["ipv6.address"]) && (c["ipv6.firewall"] === undefined || parseBool(c["ipv6.firewall"])),
      acl: c["security.acls"] && this.ctx.aclRules ? aclNftRules(this.ctx.name, this.ctx.aclRules(c)) : undefined,
    };
    const forwards = this.ctx.forwardRules?.(c);
    if (forwards && (forwards.dnat.length > 0 || forwards.snat.length > 0)) spec.forwards = forwards;
    if (!spec.nat4 && !spec.nat6 && !spec.firewall4 && !spec.firewall6 && !spec.acl && !spec.forwards) await removeFirewall(this.ctx.name);
    else await applyFirewall(this.ctx.name, spec);
  }

  /** The network's ACLs or forwards changed: rebuild its nftables table. */
  async refreshFirewall(): Promise<void> {
    await this.applyFirewall(this.plan);
  }

  private async restartDnsmasq(plan?: FanPlan): Promise<void> {
    await this.stopDnsmasq();
    if (!dnsmasq.needsDnsmasq(this.config)) return;
    dnsmasq.prepareFiles(this.files, this.config["raw.dnsmasq"] ?? "");
    const args = dnsmasq.dnsmasqArgs(this.ctx.name, this.config, this.files, {
      group: dnsmasq.dnsmasqGroup(),
      ipv4: plan ? { address: plan.bridgeAddress, rangeStart: plan.range.first, rangeEnd: plan.range.last } : undefined,
    });
    const proc = dnsmasq.startDnsmasq(this.files, args);
    this.dnsmasqProc = proc;
    const early = await Promise.race([proc.exited, sleep(300).then(() => undefined)]);
    if (early === undefined) setTimeout(() => this.dnsmasqProc === proc && (this.crashes = 0), 60_000).unref();
    if (early !== undefined) {
      this.dnsmasqProc = undefined;
      rmSync(this.files.pid, { force: true });
      throw new Error(`The DNS and DHCP service exited prematurely: Process exited with non-zero value ${early} ("${proc.output()}")`);
    }
    void proc.exited.then((code) => {
      if (this.dnsmasqProc !== proc || this.stopped) return;
      this.dnsmasqProc = undefined;
      this.ctx.log.warn({ network: this.ctx.name, code, output: proc.output() }, "dnsmasq exited; restarting it");
      this.scheduleRestart(plan);
    });
  }

  /** Restart a dnsmasq that died, backing off (1s doubling to 30s) while it keeps failing. */
  private scheduleRestart(plan?: FanPlan): void {
    const delay = Math.min(30_000, 1000 * 2 ** Math.min(this.crashes++, 5));
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (this.stopped || this.dnsmasqProc) return;
      this.restartDnsmasq(plan).catch((err) => {
        this.ctx.log.error({ err, network: this.ctx.name }, "dnsmasq restart failed");
        if (!this.stopped) this.scheduleRestart(plan);
      });
    }, delay);
  }

  private async stopDnsmasq(): Promise<void> {
    clearTimeout(this.restartTimer);
    const proc = this.dnsmasqProc;
    this.dnsmasqProc = undefined;
    if (proc) {
      try {
        process.kill(proc.pid, "SIGTERM");
      } catch {
        /* already gone */
      }
      const done = await Promise.race([proc.exited.then(() => true), sleep(3000).then(() => false)]);
      if (!done) {
        try {
          process.kill(proc.pid, "SIGKILL");
        } catch {
          /* gone */
        }
        await proc.exited;
      }
      rmSync(this.files.pid, { force: true });
    } else await dnsmasq.killRecorded(this.files);
  }

  /** The dnsmasq we supervise (tests and diagnostics). */
  dnsmasqPid(): number | undefined {
    return this.dnsmasqProc?.pid;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const name = this.ctx.name;
    const backend = this.backend();
    const externals = (this.config["bridge.external_interfaces"] ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    // Every step runs even if an earlier one failed, so a stop leaves as little as possible.
    const steps: (() => Promise<unknown>)[] = [
      () => this.stopDnsmasq(),
      () => removeFirewall(name),
      () => removeTunnels(name, this.config),
      () => deleteLink(fanLinkName(name)),
      ...externals.map((ext) => () => backend.deletePort(name, ext)),
      async () => {
        if (await backend.exists(name)) await backend.delete(name);
        else await deleteLink(name);
      },
    ];
    let first: unknown;
    for (const step of steps) {
      try {
        await step();
      } catch (e) {
        first ??= e;
        this.ctx.log.error({ err: e, network: name }, "network stop step failed");
      }
    }
    if (first) throw first;
  }

  async update(next: NetworkConfig): Promise<void> {
    const prev = this.config;
    const rebuild = (prev["bridge.driver"] || "native") !== (next["bridge.driver"] || "native") || (prev["bridge.mode"] || "standard") !== (next["bridge.mode"] || "standard");
    if (rebuild) await this.stop();
    else {
      await removeTunnels(this.ctx.name, prev);
      const keep = new Set((next["bridge.external_interfaces"] ?? "").split(",").map((s) => s.trim()));
      for (const ext of (prev["bridge.external_interfaces"] ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
        if (!keep.has(ext)) await this.backend(prev).deletePort(this.ctx.name, ext).catch(() => {});
      }
    }
    this.ctx.config = next;
    await this.start();
  }

  async state(): Promise<NetworkStateView> {
    return interfaceState(this.ctx.name);
  }

  async leases(nics: { instance: string; hwaddr: string }[] = []): Promise<LeaseView[]> {
    const out: LeaseView[] = [];
    for (const k of ["ipv4.address", "ipv6.address"]) {
      const v = this.config[k];
      if (!isSet(v) || v === "auto") continue;
      const n = parseCidr(v)!;
      out.push({ hostname: `${this.ctx.name}.gw`, hwaddr: "", address: formatIp(n.family, n.ip), type: "gateway", location: "" });
    }
    const seen = new Set<string>();
    for (const { host } of dnsmasq.staticHosts(this.files)) {
      for (const address of [host.ipv4, host.ipv6].filter(Boolean) as string[]) {
        out.push({ hostname: host.hostname, hwaddr: host.hwaddr, address, type: "static", location: "none" });
        seen.add(`${host.hwaddr.toLowerCase()}|${address}`);
      }
    }
    // Instances on a SLAAC subnet: their EUI-64 addresses, as LXD lists them ("dynamic").
    const v6 = this.config["ipv6.address"];
    if (isSet(v6) && v6 !== "auto" && !parseBool(this.config["ipv6.dhcp.stateful"] ?? "")) {
      const subnet = parseCidr(v6)!;
      for (const nic of nics) {
        let address: string;
        try {
          address = formatIp(6, eui64(subnet, nic.hwaddr));
        } catch {
          continue;
        }
        out.push({ hostname: nic.instance, hwaddr: nic.hwaddr, address, type: "dynamic", location: "none" });
        seen.add(`${nic.hwaddr.toLowerCase()}|${address}`);
      }
    }
    for (const l of dnsmasq.readLeases(this.files)) {
      if (seen.has(`${l.hwaddr.toLowerCase()}|${l.address}`)) continue;
      out.push({ hostname: l.hostname, hwaddr: l.hwaddr, address: l.address, type: "dynamic", location: "none" });
    }
    return out;
  }

  async setStaticHost(entry: string, host: dnsmasq.StaticHost): Promise<void> {
    dnsmasq.writeStaticHost(this.files, entry, host);
    dnsmasq.reloadHosts(this.files);
  }

  /**
   * A static allocation for a filtered NIC without a fixed address (LXD's dhcpalloc): what its
   * host file or a lease of its MAC holds, else the next free address; written to its host file.
   * A family the network serves no DHCP for comes back as "none" (everything of it filtered).
   */
  async allocateStaticHost(entry: string, host: dnsmasq.StaticHost, want: { ipv4: boolean; ipv6: boolean }): Promise<{ ipv4?: string; ipv6?: string }> {
    if (!existsSync(this.files.leases)) return { ipv4: want.ipv4 ? "none" : undefined, ipv6: want.ipv6 ? "none" : undefined };
    const current = dnsmasq.staticHosts(this.files);
    const mine = current.find((h) => h.entry === entry)?.host;
    const used: Allocation[] = [
      ...current.flatMap((h) => [h.host.ipv4, h.host.ipv6].filter((a): a is string => !!a).map((address) => ({ entry: h.entry, hwaddr: h.host.hwaddr, address }))),
      ...dnsmasq.readLeases(this.files).map((l) => ({ hwaddr: l.hwaddr || undefined, address: l.address })),
    ];
    const pick = (family: 4 | 6): string | undefined => {
      if (!(family === 4 ? want.ipv4 : want.ipv6)) return undefined;
      try {
        return allocate({ family, network: this.config, used, entry, hwaddr: host.hwaddr, current: family === 4 ? mine?.ipv4 : mine?.ipv6 });
      } catch (e) {
        if (e instanceof DhcpNotSupported) return "none";
        throw e;
      }
    };
    const got = { ipv4: pick(4), ipv6: pick(6) };
    const next: dnsmasq.StaticHost = {
      hwaddr: host.hwaddr,
      hostname: host.hostname,
      ipv4: host.ipv4 ?? (got.ipv4 !== "none" ? got.ipv4 : undefined),
      ipv6: host.ipv6 ?? (got.ipv6 !== "none" ? got.ipv6 : undefined),
    };
    if (!mine || dnsmasq.hostsLine(mine) !== dnsmasq.hostsLine(next)) await this.setStaticHost(entry, next);
    return got;
  }

  async removeStaticHost(entry: string): Promise<void> {
    if (dnsmasq.removeStaticHost(this.files, entry)) dnsmasq.reloadHosts(this.files);
  }
}

export const bridgeNetwork = (ctx: NetworkContext): NetworkDriver => new BridgeNetwork(ctx);
