// dnsmasq, one per bridge, laid out as upstream keeps it under $LXD_DIR/networks/NAME/:
// dnsmasq.pid, dnsmasq.leases, dnsmasq.hosts/ (one static host file per instance NIC), dnsmasq.raw.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnService, type ServiceProcess } from "../../os/exec.js";
import { formatIp, networkOf, nthAddress, parseCidr } from "../ipnet.js";
import { parseBool } from "../../config/validators.js";

export interface DnsmasqFiles {
  dir: string;
  pid: string;
  leases: string;
  hosts: string;
  raw: string;
}

export function dnsmasqFiles(networkDir: string): DnsmasqFiles {
  return {
    dir: networkDir,
    pid: join(networkDir, "dnsmasq.pid"),
    leases: join(networkDir, "dnsmasq.leases"),
    hosts: join(networkDir, "dnsmasq.hosts"),
    raw: join(networkDir, "dnsmasq.raw"),
  };
}

/** Whether the bridge needs dnsmasq at all (LXD: any address, or fan mode). */
export function needsDnsmasq(config: Record<string, string>): boolean {
  const set = (v?: string) => v !== undefined && v !== "" && v !== "none";
  return config["bridge.mode"] === "fan" || set(config["ipv4.address"]) || set(config["ipv6.address"]);
}

/**
 * dnsmasq's arguments for a bridge, as LXD builds them. `ipv4` overrides the address/range
 * (fan mode computes them); `group` is the unprivileged group to drop to.
 */
export function dnsmasqArgs(
  bridge: string,
  config: Record<string, string>,
  files: DnsmasqFiles,
  opts: { group: string; ipv4?: { address: string; rangeStart: string; rangeEnd: string } },
): string[] {
  const args = ["--keep-in-foreground", "--strict-order", "--bind-interfaces", "--except-interface=lo", "--pid-file=", "--no-ping", `--interface=${bridge}`];
  args.push("--dhcp-rapid-commit", "--quiet-dhcp", "--quiet-dhcp6", "--quiet-ra");
  const dhcpFiles = () => {
    if (args.includes("--dhcp-no-override")) return;
    args.push("--dhcp-no-override", "--dhcp-authoritative", `--dhcp-leasefile=${files.leases}`, `--dhcp-hostsfile=${files.hosts}`);
  };
  let v4 = opts.ipv4;
  const a4 = config["ipv4.address"];
  if (!v4 && a4 && a4 !== "none" && a4 !== "auto") {
    const n = parseCidr(a4)!;
    const net = networkOf(n);
    v4 = { address: formatIp(4, n.ip), rangeStart: formatIp(4, nthAddress(net, 2)), rangeEnd: formatIp(4, nthAddress(net, -2)) };
  }
  if (v4) {
    args.push(`--listen-address=${v4.address}`);
    if (config["ipv4.dhcp"] === undefined || parseBool(config["ipv4.dhcp"])) {
      dhcpFiles();
      if (config["ipv4.dhcp.gateway"]) args.push(`--dhcp-option-force=3,${config["ipv4.dhcp.gateway"]}`);
      if (config["bridge.mtu"]) args.push(`--dhcp-option-force=26,${config["bridge.mtu"]}`);
      if (config["dns.search"]) args.push(`--dhcp-option-force=119,${config["dns.search"]}`);
      const expiry = config["ipv4.dhcp.expiry"] || "1h";
      const ranges = config["ipv4.dhcp.ranges"];
      if (ranges) for (const r of ranges.split(",")) args.push("--dhcp-range", `${r.trim().replace("-", ",")},${expiry}`);
      else args.push("--dhcp-range", `${v4.rangeStart},${v4.rangeEnd},${expiry}`);
    }
  }
  const a6 = config["ipv6.address"];
  if (a6 && a6 !== "none" && a6 !== "auto") {
    const n = parseCidr(a6)!;
    args.push(`--listen-address=${formatIp(6, n.ip)}`, "--enable-ra");
    if (config["ipv6.dhcp"] === undefined || parseBool(config["ipv6.dhcp"])) {
      const expiry = config["ipv6.dhcp.expiry"] || "1h";
      if (parseBool(config["ipv6.dhcp.stateful"])) {
        dhcpFiles();
        const ranges = config["ipv6.dhcp.ranges"];
        if (ranges) for (const r of ranges.split(",")) args.push("--dhcp-range", `${r.trim().replace("-", ",")},${n.prefix},${expiry}`);
        else {
          const net = networkOf(n);
          args.push("--dhcp-range", `${formatIp(6, nthAddress(net, 2))},${formatIp(6, nthAddress(net, -1))},${n.prefix},${expiry}`);
        }
      } else args.push("--dhcp-range", `::,constructor:${bridge},ra-stateless,ra-names`);
    } else args.push("--dhcp-range", `::,constructor:${bridge},ra-only`);
  }
  if (config["dns.mode"] !== "none") {
    const domain = config["dns.domain"] || "lxd";
    args.push("-s", domain, "--interface-name", `_gateway.${domain},${bridge}`, "-S", `/${domain}/`);
  }
  args.push(`--conf-file=${files.raw}`, "-u", "nobody", "-g", opts.group);
  return args;
}

/** The unprivileged group dnsmasq drops to: lxd when it exists, as upstream packages set it up. */
export function dnsmasqGroup(): string {
  try {
    const groups = readFileSync("/etc/group", "utf8");
    if (/^lxd:/m.test(groups)) return "lxd";
    if (/^nogroup:/m.test(groups)) return "nogroup";
  } catch {
    /* fall through */
  }
  return "nobody";
}

export function prepareFiles(files: DnsmasqFiles, raw: string): void {
  mkdirSync(files.hosts, { recursive: true, mode: 0o755 });
  writeFileSync(files.raw, raw + "\n");
  if (!existsSync(files.leases)) writeFileSync(files.leases, "");
}

/** Start dnsmasq; the pid file records the pid and command line (upstream's subprocess format). */
export function startDnsmasq(files: DnsmasqFiles, args: string[]): ServiceProcess {
  const proc = spawnService("dnsmasq", args);
  const yamlArgs = args.map((a) => JSON.stringify(a)).join(", ");
  writeFileSync(files.pid, `name: dnsmasq\nargs: [${yamlArgs}]\npid: ${proc.pid}\nuid: 0\ngid: 0\nset_groups: false\nsysprocattr: null\n`);
  return proc;
}

/** The pid in a pid file if that process is still a dnsmasq for this network. */
export function recordedDnsmasq(files: DnsmasqFiles): number | undefined {
  let pid: number;
  try {
    pid = Number(/^pid: (\d+)$/m.exec(readFileSync(files.pid, "utf8"))?.[1]);
  } catch {
    return undefined;
  }
  if (!pid) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (cmdline[0].endsWith("dnsmasq") && cmdline.includes(`--dhcp-leasefile=${files.leases}`)) return pid;
    if (cmdline[0].endsWith("dnsmasq") && cmdline.includes(`--conf-file=${files.raw}`)) return pid;
  } catch {
    return undefined;
  }
  return undefined;
}

/** Stop the dnsmasq recorded in the pid file (after a restart of ours, or a crash). */
export async function killRecorded(files: DnsmasqFiles): Promise<void> {
  const pid = recordedDnsmasq(files);
  rmSync(files.pid, { force: true });
  if (!pid) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`) && !isZombie(pid); i++) await new Promise((r) => setTimeout(r, 20));
  if (existsSync(`/proc/${pid}`) && !isZombie(pid)) process.kill(pid, "SIGKILL");
}

function isZombie(pid: number): boolean {
  try {
    return / Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\)/, ""));
  } catch {
    return true;
  }
}

/** Ask dnsmasq to re-read the static hosts directory. */
export function reloadHosts(files: DnsmasqFiles): void {
  const pid = recordedDnsmasq(files);
  if (pid) process.kill(pid, "SIGHUP");
}

export interface StaticHost {
  hwaddr: string;
  ipv4?: string;
  ipv6?: string;
  hostname: string;
}

/** The dhcp-hostsfile line for one NIC, as LXD writes it. */
export function hostsLine(h: StaticHost): string {
  const parts = [h.hwaddr];
  if (h.ipv4) parts.push(h.ipv4);
  if (h.ipv6) parts.push(`[${h.ipv6}]`);
  parts.push(h.hostname);
  return parts.join(",");
}

export function parseHostsLine(line: string): StaticHost | undefined {
  const parts = line.trim().split(",");
  if (parts.length < 2) return undefined;
  const h: StaticHost = { hwaddr: parts[0], hostname: parts[parts.length - 1] };
  for (const p of parts.slice(1, -1)) {
    if (p.startsWith("[")) h.ipv6 = p.slice(1, -1);
    else h.ipv4 = p;
  }
  return h;
}

export function writeStaticHost(files: DnsmasqFiles, entry: string, h: StaticHost): void {
  mkdirSync(files.hosts, { recursive: true, mode: 0o755 });
  writeFileSync(join(files.hosts, entry), hostsLine(h) + "\n");
}

export function removeStaticHost(files: DnsmasqFiles, entry: string): boolean {
  const p = join(files.hosts, entry);
  if (!existsSync(p)) return false;
  rmSync(p, { force: true });
  return true;
}

export function staticHosts(files: DnsmasqFiles): { entry: string; host: StaticHost }[] {
  let names: string[] = [];
  try {
    names = readdirSync(files.hosts);
  } catch {
    return [];
  }
  const out: { entry: string; host: StaticHost }[] = [];
  for (const entry of names.sort()) {
    try {
      const h = parseHostsLine(readFileSync(join(files.hosts, entry), "utf8"));
      if (h) out.push({ entry, host: h });
    } catch {
      /* removed meanwhile */
    }
  }
  return out;
}

export interface DhcpLease {
  hwaddr: string;
  address: string;
  hostname: string;
  expiry: number;
}

/** Parse dnsmasq's lease file (IPv4 lines, then IPv6 lines after the "duid" line). */
export function parseLeases(text: string): DhcpLease[] {
  const out: DhcpLease[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[0] === "duid") continue;
    // IPv6 lines carry the IAID where IPv4 lines carry the MAC.
    const v6 = f[2].includes(":");
    out.push({ expiry: Number(f[0]), hwaddr: v6 ? "" : f[1], address: f[2], hostname: f[3] === "*" ? "" : f[3] });
  }
  return out;
}

export function readLeases(files: DnsmasqFiles): DhcpLease[] {
  try {
    return parseLeases(readFileSync(files.leases, "utf8"));
  } catch {
    return [];
  }
}
