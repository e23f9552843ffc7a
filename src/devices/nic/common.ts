// Shared pieces of NIC devices: config keys and LXD's validation messages, LXD-style MACs
// and host names, veth plumbing for hot-plug, and tc bandwidth limits.
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import type { Validator } from "../../config/validators.js";
import { run } from "../../os/exec.js";
import { interfaceNameError, isMac, isMtu, lxdBool, listOf, isCidrV4, isCidrV6 } from "../../network/keys.js";
import { interfaceExists } from "../../network/host/sysfs.js";
import type { DeviceConfig, DeviceContext } from "../types.js";

const ifaceName: Validator = (v) => {
  const err = interfaceNameError(v);
  if (err) throw new Error(err);
};

/** "10Mbit", "1.5Gbit", "100kbit" → bits per second (decimal units, as LXD). */
export function parseBitRate(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(bit|kbit|Mbit|Gbit|Tbit|Pbit|Ebit)$/.exec(v.trim());
  if (!m) throw new Error(`Invalid value "${v}" (expected a bit rate such as 10Mbit)`);
  const mult: Record<string, number> = { bit: 1, kbit: 1e3, Mbit: 1e6, Gbit: 1e9, Tbit: 1e12, Pbit: 1e15, Ebit: 1e18 };
  return Math.round(Number(m[1]) * mult[m[2]]);
}

const bitRate: Validator = (v) => void parseBitRate(v);
const ipv4: Validator = (v) => {
  if (isIP(v) !== 4) throw new Error(`Not an IPv4 address "${v}"`);
};
const ipv6: Validator = (v) => {
  if (isIP(v) !== 6) throw new Error(`Not an IPv6 address "${v}"`);
};
const vlanId: Validator = (v) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 4094) throw new Error(`Invalid VLAN ID "${v}"`);
};
const int: Validator = (v) => {
  if (!/^-?[0-9]+$/.test(v)) throw new Error(`Invalid value for an integer "${v}"`);
};
const any: Validator = () => {};

/** Every NIC key we implement, by name. Each nictype picks its subset. */
export const nicKeys: Record<string, Validator> = {
  type: any,
  nictype: any,
  network: any,
  name: ifaceName,
  parent: ifaceName,
  hwaddr: isMac,
  mtu: isMtu,
  host_name: ifaceName,
  vlan: vlanId,
  "boot.priority": int,
  "ipv4.address": ipv4,
  "ipv6.address": ipv6,
  "ipv4.routes": listOf(isCidrV4),
  "ipv6.routes": listOf(isCidrV6),
  "ipv4.routes.external": listOf(isCidrV4),
  "ipv6.routes.external": listOf(isCidrV6),
  "security.mac_filtering": lxdBool,
  "security.ipv4_filtering": lxdBool,
  "security.ipv6_filtering": lxdBool,
  "ipv4.gateway": (v) => (v === "auto" || v === "none" ? undefined : ipv4(v)),
  "ipv6.gateway": (v) => (v === "auto" || v === "none" ? undefined : ipv6(v)),
  "limits.ingress": bitRate,
  "limits.egress": bitRate,
  "limits.max": bitRate,
  "queue.tx.length": int,
  gvrp: lxdBool,
  mode: (v) => {
    if (!["bridge", "vepa", "passthru", "private"].includes(v)) throw new Error(`Invalid value "${v}" (not one of [bridge vepa passthru private])`);
  },
};

/** Validate a NIC config against the allowed keys, with LXD's device messages. */
export function validateNicConfig(config: DeviceConfig, allowed: string[], required: string[] = []): void {
  for (const k of required) if (!config[k]) throw new Error(`Invalid value for device option "${k}": Required value`);
  for (const k of Object.keys(config).sort()) {
    if (k.startsWith("user.")) continue;
    if (!allowed.includes(k) && !["type", "nictype", "network"].includes(k)) throw new Error(`Invalid device option "${k}"`);
    const v = config[k];
    if (v === "") continue;
    try {
      nicKeys[k]?.(v);
    } catch (e) {
      const msg = (e as Error).message;
      throw new Error(`Invalid value for device option "${k}": ${k.endsWith(".address") ? `Item "${v}": ${msg}` : msg}`);
    }
  }
}

/** LXD's MAC prefix for generated addresses. */
export function generateHwaddr(): string {
  return ["00", "16", "3e", ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

export function generateHostName(): string {
  return `veth${randomBytes(4).toString("hex")}`;
}

/** The NIC's MAC: config hwaddr, else volatile.<dev>.hwaddr, generated and stored once. */
export async function stableHwaddr(ctx: DeviceContext, device: string, config: DeviceConfig): Promise<string> {
  if (config.hwaddr) return config.hwaddr;
  const key = `volatile.${device}.hwaddr`;
  const existing = ctx.volatile.get(key);
  if (existing) return existing;
  const mac = generateHwaddr();
  await ctx.volatile.set({ [key]: mac });
  return mac;
}

export async function ip(...args: string[]): Promise<void> {
  await run("ip", args);
}

export async function nsenterIp(pid: number, ...args: string[]): Promise<void> {
  await run("nsenter", ["-t", String(pid), "-n", "ip", ...args]);
}

/** Move `link` into the network namespace of `pid`, rename it, set its MAC/MTU, bring it up. */
export async function moveIntoInstance(link: string, pid: number, name: string, opts: { hwaddr?: string; mtu?: string } = {}): Promise<void> {
  await ip("link", "set", "dev", link, "netns", String(pid));
  await nsenterIp(pid, "link", "set", "dev", link, "name", name);
  if (opts.hwaddr) await nsenterIp(pid, "link", "set", "dev", name, "address", opts.hwaddr);
  if (opts.mtu) await nsenterIp(pid, "link", "set", "dev", name, "mtu", opts.mtu);
  await nsenterIp(pid, "link", "set", "dev", name, "up");
}

/** Remove an interface from inside the instance (deleting a veth end removes its peer too). */
export async function deleteInsideInstance(pid: number, name: string): Promise<void> {
  const r = await run("nsenter", ["-t", String(pid), "-n", "ip", "link", "del", "dev", name], { reject: false });
  if (r.exitCode !== 0 && !/Cannot find device/.test(r.stderr)) throw new Error(`Failed to remove "${name}" from the instance: ${r.stderr.trim()}`);
}

export async function deleteHostLink(name: string | undefined): Promise<void> {
  if (name && interfaceExists(name)) await ip("link", "del", "dev", name);
}

/** The IFB device that shapes traffic coming from the instance (egress) for a host veth. */
export const ifbName = (hostName: string) => `ifb${hostName.replace(/^veth/, "").slice(0, 12)}`;

/**
 * tc commands for limits.ingress/egress on the host end of a veth. Ingress (towards the
 * instance) is shaped with htb on the host end; egress (from the instance) is redirected to
 * an IFB device and shaped there, which needs only sch_htb and act_mirred (this kernel has
 * no act_police, which LXD's policing filter needs).
 */
export function tcCommands(hostName: string, config: DeviceConfig): { ifb?: string; tc: string[][] } {
  const ingress = config["limits.ingress"] || config["limits.max"];
  const egress = config["limits.egress"] || config["limits.max"];
  const tc: string[][] = [];
  if (ingress) {
    tc.push(["qdisc", "add", "dev", hostName, "root", "handle", "1:0", "htb", "default", "10"]);
    tc.push(["class", "add", "dev", hostName, "parent", "1:0", "classid", "1:10", "htb", "rate", `${parseBitRate(ingress)}bit`]);
  }
  if (!egress) return { tc };
  const ifb = ifbName(hostName);
  tc.push(["qdisc", "add", "dev", hostName, "handle", "ffff:0", "ingress"]);
  tc.push(["filter", "add", "dev", hostName, "parent", "ffff:0", "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb]);
  tc.push(["qdisc", "add", "dev", ifb, "root", "handle", "1:0", "htb", "default", "10"]);
  tc.push(["class", "add", "dev", ifb, "parent", "1:0", "classid", "1:10", "htb", "rate", `${parseBitRate(egress)}bit`]);
  return { ifb, tc };
}

export async function applyLimits(hostName: string, config: DeviceConfig): Promise<void> {
  const plan = tcCommands(hostName, config);
  if (plan.tc.length === 0) return;
  await run("tc", ["qdisc", "del", "dev", hostName, "root"], { reject: false });
  await run("tc", ["qdisc", "del", "dev", hostName, "ingress"], { reject: false });
  if (plan.ifb) {
    await deleteHostLink(plan.ifb);
    await ip("link", "add", "dev", plan.ifb, "type", "ifb");
    await ip("link", "set", "dev", plan.ifb, "up");
  }
  for (const c of plan.tc) await run("tc", c);
}

/** Take every limit off a live veth (its qdiscs and the IFB device), for changing limits in place. */
export async function clearLimits(hostName: string): Promise<void> {
  await run("tc", ["qdisc", "del", "dev", hostName, "root"], { reject: false });
  await run("tc", ["qdisc", "del", "dev", hostName, "ingress"], { reject: false });
  await removeLimits(hostName);
}

/** Remove what applyLimits added beyond the veth itself (the IFB device). */
export async function removeLimits(hostName: string): Promise<void> {
  await deleteHostLink(ifbName(hostName));
}

/** Run `steps`; on failure run the collected undos in reverse and rethrow. */
export async function withRevert<T>(fn: (undo: (f: () => Promise<unknown>) => void) => Promise<T>): Promise<T> {
  const undos: (() => Promise<unknown>)[] = [];
  try {
    return await fn((f) => undos.push(f));
  } catch (e) {
    for (const u of undos.reverse()) await u().catch(() => {});
    throw e;
  }
}
