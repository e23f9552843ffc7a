// A running container's network state read from its network namespace through /proc/PID
// (net/dev, net/if_inet6, net/fib_trie, net/route) and its own sysfs (via /proc/PID/root):
// no spawned `ip` per request.
import { readFileSync } from "node:fs";

export interface NetAddress {
  family: "inet" | "inet6";
  address: string;
  netmask: string;
  scope: string;
}

export interface NetInterfaceState {
  addresses: NetAddress[];
  counters: Record<string, number>;
  hwaddr: string;
  host_name: string;
  mtu: number;
  state: string;
  type: string;
}

const read = (f: string) => {
  try {
    return readFileSync(f, "utf8");
  } catch {
    return "";
  }
};

export function parseNetDev(text: string): Map<string, Record<string, number>> {
  const out = new Map<string, Record<string, number>>();
  for (const line of text.split("\n").slice(2)) {
    const m = /^\s*([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2].trim().split(/\s+/).map(Number);
    out.set(m[1], {
      bytes_received: f[0], packets_received: f[1], errors_received: f[2], packets_dropped_inbound: f[3],
      bytes_sent: f[8], packets_sent: f[9], errors_sent: f[10], packets_dropped_outbound: f[11],
    });
  }
  return out;
}

function hexIpv4(hex: string): number {
  // /proc/net/route stores addresses little-endian
  return Number.parseInt(hex.match(/../g)!.reverse().join(""), 16) >>> 0;
}
const ipv4ToInt = (ip: string) => ip.split(".").reduce((a, o) => ((a << 8) | Number(o)) >>> 0, 0);
const maskLen = (mask: number) => mask.toString(2).replace(/0/g, "").length;

/** IPv4 local addresses (fib_trie "/32 host LOCAL") matched to interfaces by connected routes. */
export function parseIpv4(fibTrie: string, route: string): { iface: string; addr: NetAddress }[] {
  const locals = new Set<string>();
  const lines = fibTrie.split("\n");
  for (let i = 1; i < lines.length; i++) {
    if (/\/32 host LOCAL/.test(lines[i])) {
      const m = /([0-9.]+)\s*$/.exec(lines[i - 1]);
      if (m) locals.add(m[1]);
    }
  }
  const routes = route
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 8 && f[2] === "00000000")
    .map((f) => ({ iface: f[0], dest: hexIpv4(f[1]), mask: hexIpv4(f[7]) }));
  const out: { iface: string; addr: NetAddress }[] = [];
  for (const ip of locals) {
    const n = ipv4ToInt(ip);
    if (ip.startsWith("127.")) {
      out.push({ iface: "lo", addr: { family: "inet", address: ip, netmask: "8", scope: "local" } });
      continue;
    }
    const r = routes.filter((r) => r.mask !== 0 && ((n & r.mask) >>> 0) === r.dest).sort((a, b) => maskLen(b.mask) - maskLen(a.mask))[0];
    if (r) out.push({ iface: r.iface, addr: { family: "inet", address: ip, netmask: String(maskLen(r.mask)), scope: "global" } });
  }
  return out;
}

export function parseIfInet6(text: string): { iface: string; addr: NetAddress }[] {
  const out: { iface: string; addr: NetAddress }[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    const groups = f[0].match(/.{4}/g)!.map((g) => g.replace(/^0+(?=.)/, ""));
    let addr = groups.join(":");
    // compress the longest run of zero groups
    const runs = [...addr.matchAll(/(^|:)(0(:0)+)(:|$)/g)].sort((a, b) => b[2].length - a[2].length);
    if (runs[0]) addr = addr.replace(runs[0][0], "::").replace(/^:::/, "::").replace(/:::$/, "::");
    const scopeNum = Number.parseInt(f[3], 16);
    const scope = scopeNum === 0x10 ? "local" : scopeNum === 0x20 ? "link" : "global";
    out.push({ iface: f[5], addr: { family: "inet6", address: addr, netmask: String(Number.parseInt(f[2], 16)), scope } });
  }
  return out;
}

const ARPHRD: Record<string, string> = { "1": "broadcast", "772": "loopback", "65534": "point-to-point", "776": "point-to-point" };

export function readNetworkState(pid: number, hostNames: Record<string, string>): Record<string, NetInterfaceState> {
  const base = `/proc/${pid}`;
  const dev = parseNetDev(read(`${base}/net/dev`));
  const addrs = [...parseIpv4(read(`${base}/net/fib_trie`), read(`${base}/net/route`)), ...parseIfInet6(read(`${base}/net/if_inet6`))];
  const out: Record<string, NetInterfaceState> = {};
  for (const [name, counters] of dev) {
    const sys = `${base}/root/sys/class/net/${name}`;
    const type = read(`${sys}/type`).trim();
    const flags = Number.parseInt(read(`${sys}/flags`).trim() || "0", 16);
    out[name] = {
      addresses: addrs.filter((a) => a.iface === name).map((a) => a.addr),
      counters,
      hwaddr: type === "772" ? "" : read(`${sys}/address`).trim(),
      host_name: hostNames[name] ?? "",
      mtu: Number(read(`${sys}/mtu`).trim()) || 0,
      state: flags & 1 ? "up" : "down",
      type: ARPHRD[type] ?? "broadcast",
    };
  }
  return out;
}
