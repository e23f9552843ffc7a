// Proxy device addresses and rules, as LXD 5.0.2 parses and checks them (pure; unit-tested):
// "<tcp|udp|unix>:<address>", ports as lists and ranges ("80,8080-8081"), abstract unix
// sockets ("unix:@name"), and the nftables DNAT script of `nat=true` proxies.
import { isIPv4, isIPv6 } from "node:net";
import { parseBool } from "../config/validators.js";
import type { DeviceConfig } from "./types.js";

export interface ProxyAddress {
  connType: "tcp" | "udp" | "unix";
  address: string;
  ports: number[];
  abstract: boolean;
}

/** Go's net.SplitHostPort, with its error texts. */
export function splitHostPort(hostport: string): [string, string] {
  const err = (why: string) => new Error(`address ${hostport}: ${why}`);
  const i = hostport.lastIndexOf(":");
  if (i < 0) throw err("missing port in address");
  let host: string;
  let j = 0;
  let k = 0;
  if (hostport[0] === "[") {
    const end = hostport.indexOf("]");
    if (end < 0) throw err("missing ']' in address");
    if (end + 1 === hostport.length) throw err("missing port in address");
    if (end + 1 !== i) throw err(hostport[end + 1] === ":" ? "too many colons in address" : "missing port in address");
    host = hostport.slice(1, end);
    j = 1;
    k = end + 1;
  } else {
    host = hostport.slice(0, i);
    if (host.includes(":")) throw err("too many colons in address");
  }
  if (hostport.slice(j).includes("[")) throw err("unexpected '[' in address");
  if (hostport.slice(k).includes("]")) throw err("unexpected ']' in address");
  return [host, hostport.slice(i + 1)];
}

/** Go's strconv.ParseInt(s, 10, 64) with its error text. */
function parseInt64(s: string): number {
  if (!/^[+-]?[0-9]+$/.test(s)) throw new Error(`strconv.ParseInt: parsing ${JSON.stringify(s)}: invalid syntax`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`strconv.ParseInt: parsing ${JSON.stringify(s)}: value out of range`);
  return n;
}

/** LXD's network.ParsePortRange: [first, count]. */
export function parsePortRange(r: string): [number, number] {
  const entries = r.split("-");
  if (entries.length > 2) throw new Error(`Invalid port range ${JSON.stringify(r)}`);
  const base = parseInt64(entries[0]);
  let size = 1;
  if (entries.length > 1) {
    size = parseInt64(entries[1]);
    if (size <= base) throw new Error("End port should be higher than start port");
    size = size - base + 1;
  }
  return [base, size];
}

/** Go's net.ParseIP: dotted IPv4 or IPv6 without a zone. */
export function isIPAddress(v: string): boolean {
  return isIPv4(v) || (isIPv6(v) && !v.includes("%"));
}

export function ipVersion(v: string): 4 | 6 {
  if (isIPv4(v)) return 4;
  // IPv4-mapped IPv6 counts as IPv4 in Go (To4() != nil).
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(v) ? 4 : 6;
}

const MAX_PORTS = 1024;

/** LXD's ProxyParseAddr. */
export function parseProxyAddr(data: string): ProxyAddress {
  const idx = data.indexOf(":");
  const proto = idx < 0 ? data : data.slice(0, idx);
  const rest = idx < 0 ? undefined : data.slice(idx + 1);
  if (proto !== "tcp" && proto !== "udp" && proto !== "unix") throw new Error(`Unknown protocol type ${JSON.stringify(proto)}`);
  if (rest === undefined || rest === "") throw new Error("Missing address");
  const out: ProxyAddress = { connType: proto, address: rest, ports: [], abstract: rest.startsWith("@") };
  if (proto === "unix") return out;
  const [address, port] = splitHostPort(rest);
  if (address !== "" && !isIPAddress(address)) throw new Error(`Not an IP address ${JSON.stringify(address)}`);
  out.address = address;
  for (const p of port.split(",")) {
    const [first, count] = parsePortRange(p);
    // LXD would try to open every port of a huge range; the relay takes at most MAX_PORTS.
    if (out.ports.length + count > MAX_PORTS) throw new Error(`Too many ports (at most ${MAX_PORTS})`);
    for (let i = 0; i < count; i++) out.ports.push(first + i);
  }
  if (out.ports.length === 0) throw new Error("At least one port is required");
  return out;
}

const isUnixId = (v: string) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 0xffffffff) throw new Error("Invalid value for a UNIX ID");
};
const isOctalMode = (v: string) => {
  if (!/^[0-7]+$/.test(v) || parseInt(v, 8) > 0xffffffff) throw new Error("Invalid value for an octal file mode");
};
const isBoolValue = (v: string) => {
  if (!["true", "false", "yes", "no", "on", "off", "1", "0"].includes(v.toLowerCase())) throw new Error(`Invalid value for a boolean ${JSON.stringify(v)}`);
};

/** LXD's proxy validateConfig (the parts that need no instance). Throws LXD's message. */
export function validateProxyConfig(config: DeviceConfig, opts: { natForbiddenByProject?: boolean } = {}): void {
  const opt = (f: (v: string) => void) => (v: string | undefined) => {
    if (v !== undefined && v !== "") f(v);
  };
  const rules: Record<string, (v: string | undefined) => void> = {
    listen: (v) => void parseProxyAddr(v ?? ""),
    connect: (v) => void parseProxyAddr(v ?? ""),
    bind: opt(() => {
      if (!["host", "instance", "guest", "container"].includes(config.bind)) throw new Error(`Invalid binding side given. Must be "host" or "instance"`);
    }),
    mode: opt(isOctalMode),
    nat: opt(isBoolValue),
    gid: opt(isUnixId),
    uid: opt(isUnixId),
    "security.uid": opt(isUnixId),
    "security.gid": opt(isUnixId),
    proxy_protocol: opt(isBoolValue),
  };
  for (const [k, rule] of Object.entries(rules)) {
    try {
      rule(config[k]);
    } catch (e) {
      throw new Error(`Invalid value for device option ${JSON.stringify(k)}: ${(e as Error).message}`);
    }
  }
  for (const k of Object.keys(config)) {
    if (k === "type" || k in rules || k.startsWith("user.")) continue;
    throw new Error(`Invalid device option ${JSON.stringify(k)}`);
  }
  const listen = parseProxyAddr(config.listen);
  const connect = parseProxyAddr(config.connect);
  if ((listen.connType !== "unix" && connect.ports.length > listen.ports.length) || (listen.connType === "unix" && connect.ports.length > 1)) {
    throw new Error("Mismatch between listen port(s) and connect port(s) count");
  }
  const nat = parseBool(config.nat);
  if (parseBool(config.proxy_protocol) && (!config.connect.startsWith("tcp") || nat)) throw new Error("The PROXY header can only be sent to tcp servers in non-nat mode");
  if ((!config.listen.startsWith("unix:") || config.listen.startsWith("unix:@")) && (config.uid || config.gid || config.mode)) {
    throw new Error("Only proxy devices for non-abstract unix sockets can carry uid, gid, or mode properties");
  }
  if (nat) {
    if (opts.natForbiddenByProject) throw new Error("NAT mode cannot be used in projects that have the networks feature");
    if (config.bind && config.bind !== "host") throw new Error("Only host-bound proxies can use NAT");
    if (listen.connType === "unix" || connect.connType === "unix" || listen.connType !== connect.connType) {
      throw new Error(`Proxying ${listen.connType} <-> ${connect.connType} is not supported when using NAT`);
    }
    if (listen.address === "0.0.0.0") throw new Error(`Cannot listen on wildcard address "0.0.0.0" when in nat mode`);
    if (/^[0:]*::[0:]*$/.test(listen.address)) throw new Error(`Cannot listen on wildcard address "::" when in nat mode`);
    if ((listen.address === "" ? 6 : ipVersion(listen.address)) !== (connect.address === "" ? 6 : ipVersion(connect.address))) throw new Error("Cannot mix IP versions between listen and connect in nat mode");
  }
}

// ---- nat=true: nftables DNAT (LXD's nftablesNetProxyNAT template, table inet lxd) ----

export interface AddressForward {
  protocol: "tcp" | "udp";
  listenAddress: string;
  listenPorts: number[];
  targetAddress: string;
  targetPorts: number[];
}

/** Consecutive ports as [start, size] ranges. */
export function portRanges(ports: number[]): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  for (let i = 0; i < ports.length; i++) {
    if (i === ports.length - 1 || ports[i + 1] !== ports[i] + 1) {
      out.push([ports[start], ports[i] - ports[start] + 1]);
      start = i + 1;
    }
  }
  return out;
}

const rangeStr = (r: [number, number], sep: string) => (r[1] < 1 ? "" : r[1] === 1 ? String(r[0]) : `${r[0]}${sep}${r[0] + r[1] - 1}`);

/** LXD's getOptimisedDNATRanges, as an ordered list of [listen range, target range]. */
export function dnatRanges(f: AddressForward): [[number, number], [number, number]][] {
  const out: [[number, number], [number, number]][] = [];
  const listenRanges = portRanges(f.listenPorts);
  if (f.targetPorts.length === 1) {
    for (const l of listenRanges) out.push([l, [f.targetPorts[0], 1]]);
    return out;
  }
  const targetSizes = new Map(portRanges(f.targetPorts).map(([s, n]) => [s, n]));
  let done = 0;
  for (const l of listenRanges) {
    const end = done + l[1];
    const current = f.targetPorts[done];
    const size = targetSizes.get(current);
    if (size !== undefined && l[0] === current) {
      if (l[1] === size) {
        out.push([l, [current, size]]);
        done += l[1];
      } else {
        out.push([[l[0], size], [current, size]]);
        done += size;
      }
    }
    for (; done < end; done++) out.push([[f.listenPorts[done], 1], [f.targetPorts[done], 1]]);
  }
  return out;
}

/** Chain label "<instance>.<device>" (project-prefixed instance as LXD). */
export function natLabel(project: string, instance: string, device: string): string {
  return `${project === "default" ? instance : `${project}_${instance}`}.${device}`;
}

function chain(kind: "prert" | "out" | "pstrt", label: string): string {
  const name = `${kind}.${label}`;
  // Instance and device names are plain words; anything else is quoted for nft.
  return /^[A-Za-z0-9_.-]+$/.test(name) ? name : JSON.stringify(name);
}

const HOOKS = {
  prert: "type nat hook prerouting priority -100; policy accept;",
  out: "type nat hook output priority -100; policy accept;",
  pstrt: "type nat hook postrouting priority 100; policy accept;",
} as const;

export function natScript(label: string, f: AddressForward): string {
  const fam = ipVersion(f.listenAddress) === 4 ? "ip" : "ip6";
  const dnat: string[] = [];
  for (const [l, t] of dnatRanges(f)) {
    let dest = f.targetAddress;
    if (t[1] === 1) dest = fam === "ip6" ? `[${f.targetAddress}]:${rangeStr(t, ":")}` : `${f.targetAddress}:${rangeStr(t, ":")}`;
    dnat.push(`${fam} daddr ${f.listenAddress} ${f.protocol} dport ${rangeStr(l, "-")} dnat to ${dest}`);
  }
  const snat = portRanges(f.targetPorts).map((t) => `${fam} saddr ${f.targetAddress} ${fam} daddr ${f.targetAddress} ${f.protocol} dport ${rangeStr(t, "-")} masquerade`);
  const lines = ["add table inet lxd"];
  for (const k of ["prert", "out", "pstrt"] as const) lines.push(`add chain inet lxd ${chain(k, label)} {${HOOKS[k]}}`);
  for (const k of ["prert", "out", "pstrt"] as const) lines.push(`flush chain inet lxd ${chain(k, label)}`);
  lines.push("table inet lxd {");
  for (const [k, rules] of [["prert", dnat], ["out", dnat], ["pstrt", snat]] as const) {
    lines.push(`\tchain ${chain(k, label)} {`, `\t\t${HOOKS[k]}`, ...rules.map((r) => `\t\t${r}`), "\t}");
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}

/** Removes the device's chains, whether or not they exist (declare, flush, delete: one transaction). */
export function natRemoveScript(label: string): string {
  const lines = ["add table inet lxd"];
  for (const k of ["prert", "out", "pstrt"] as const) lines.push(`add chain inet lxd ${chain(k, label)} {${HOOKS[k]}}`);
  for (const k of ["prert", "out", "pstrt"] as const) lines.push(`flush chain inet lxd ${chain(k, label)}`, `delete chain inet lxd ${chain(k, label)}`);
  return lines.join("\n") + "\n";
}
