// iproute2: `ip -j` for reading, plain `ip` for changes. Every function touches only the
// link or address it names.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../../os/exec.js";
import { interfaceExists, readSysctl } from "./sysfs.js";

export interface AddrInfo {
  family: "inet" | "inet6";
  local: string;
  prefixlen: number;
  scope: string;
}

export interface LinkAddrs {
  ifname: string;
  addr_info: AddrInfo[];
}

export async function ip(...args: string[]): Promise<string> {
  return (await run("ip", args)).stdout;
}

export async function addresses(dev?: string): Promise<LinkAddrs[]> {
  const out = await ip("-j", "addr", "show", ...(dev ? ["dev", dev] : []));
  return out.trim() ? (JSON.parse(out) as LinkAddrs[]) : [];
}

export interface RouteInfo {
  dst: string;
  dev?: string;
  type?: string;
  table?: string;
}

/** Route destinations of both families in every table, as CIDR strings (default excluded). */
export async function routeDestinations(): Promise<{ routes: string[]; defaultDev?: string }> {
  const routes: string[] = [];
  let defaultDev: string | undefined;
  for (const fam of ["-4", "-6"]) {
    const out = await ip("-j", fam, "route", "show", "table", "all");
    for (const r of (out.trim() ? JSON.parse(out) : []) as RouteInfo[]) {
      if (r.dst === "default") {
        if (fam === "-4" && !r.table) defaultDev ??= r.dev;
        continue;
      }
      if (r.type === "local" || r.type === "broadcast" || r.type === "multicast") continue;
      routes.push(r.dst.includes("/") ? r.dst : `${r.dst}/${fam === "-4" ? 32 : 128}`);
    }
  }
  return { routes, defaultDev };
}

export const linkExists = interfaceExists;

export async function deleteLink(name: string): Promise<void> {
  if (interfaceExists(name)) await ip("link", "del", "dev", name);
}

export async function setUp(name: string): Promise<void> {
  await ip("link", "set", "dev", name, "up");
}

export async function setMtu(name: string, mtu: string | number): Promise<void> {
  await ip("link", "set", "dev", name, "mtu", String(mtu));
}

export async function setHwaddr(name: string, mac: string): Promise<void> {
  await ip("link", "set", "dev", name, "address", mac);
}

export async function setMaster(name: string, bridge: string): Promise<void> {
  await ip("link", "set", "dev", name, "master", bridge);
}

export async function addAddress(dev: string, cidr: string): Promise<void> {
  const v6 = cidr.includes(":");
  await ip(v6 ? "-6" : "-4", "addr", "add", cidr, "dev", dev, ...(v6 ? ["nodad"] : []));
}

export async function delAddress(dev: string, cidr: string): Promise<void> {
  await ip("addr", "del", cidr, "dev", dev);
}

export async function addVeth(host: string, peer: string): Promise<void> {
  await ip("link", "add", "dev", host, "type", "veth", "peer", "name", peer);
}

/** Write a sysctl under /proc/sys unless it already has the value. */
export function writeSysctl(path: string, value: string): void {
  if (readSysctl(path) === value) return;
  writeFileSync(join("/proc/sys", path), value);
}
