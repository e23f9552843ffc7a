// Network config keys, declared once per network type with LXD's validation messages:
// "Invalid value for network "N" option "K": REASON" / "Invalid option for network "N" option "K"".
import { isIP } from "node:net";
import type { KeyTable } from "../config/keys.js";
import { oneOf, type Validator } from "../config/validators.js";
import { parseCidr, parseRange } from "./ipnet.js";

export const lxdBool: Validator = (v) => {
  if (!["true", "false", "yes", "no", "on", "off", "1", "0"].includes(v.toLowerCase())) throw new Error(`Invalid value for a boolean "${v}"`);
};

export const lxdInt: Validator = (v) => {
  if (!/^-?[0-9]+$/.test(v)) throw new Error(`Invalid value for an integer "${v}"`);
};

const uint8: Validator = (v) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 255) throw new Error(`Invalid value for an integer "${v}". Must be between 0 and 255`);
};

const portNumber: Validator = (v) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 65535) throw new Error(`Invalid value for an integer: ${v}`);
};

export const isMtu: Validator = (v) => {
  if (!/^[0-9]+$/.test(v)) throw new Error(`Invalid MTU "${v}"`);
  const n = Number(v);
  if (n < 1280 || n > 16384) throw new Error(`Out of MTU range (1280-16384) "${v}"`);
};

export const isMac: Validator = (v) => {
  if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(v)) throw new Error("Invalid MAC address, must be 6 bytes of hex separated by colons");
};

/** Go's net.ParseCIDR message. */
function cidr(v: string) {
  const n = parseCidr(v);
  if (!n) throw new Error(`invalid CIDR address: ${v}`);
  return n;
}

export const isCidrV4: Validator = (v) => {
  if (cidr(v).family !== 4) throw new Error(`Not an IPv4 network "${v}"`);
};
export const isCidrV6: Validator = (v) => {
  if (cidr(v).family !== 6) throw new Error(`Not an IPv6 network "${v}"`);
};

/** An address with its prefix, usable as a host address (not the network address). */
const hostCidr =
  (family: 4 | 6): Validator =>
  (v) => {
    const n = cidr(v);
    const name = family === 4 ? "IPv4" : "IPv6";
    if (n.family !== family) throw new Error(`Not an ${name} address "${v}"`);
    const hostBits = (family === 4 ? 32 : 128) - n.prefix;
    if (hostBits > 0 && (n.ip & ((1n << BigInt(hostBits)) - 1n)) === 0n) throw new Error(`Not a usable ${name} address "${v}"`);
  };

const addressOrSpecial = (family: 4 | 6): Validator => {
  const inner = hostCidr(family);
  return (v) => {
    if (v === "none" || v === "auto") return;
    inner(v);
  };
};

export const isIPv4Address: Validator = (v) => {
  if (isIP(v) !== 4) throw new Error(`Not an IPv4 address "${v}"`);
};
export const isIPv6Address: Validator = (v) => {
  if (isIP(v) !== 6) throw new Error(`Not an IPv6 address "${v}"`);
};
export const isIPAddress: Validator = (v) => {
  if (!isIP(v)) throw new Error(`Not an IP address "${v}"`);
};

/** A comma separated list, each item checked: `Item "x": reason`. */
export const listOf =
  (item: Validator): Validator =>
  (v) => {
    for (const part of v.split(",").map((s) => s.trim())) {
      try {
        item(part);
      } catch (e) {
        throw new Error(`Item "${part}": ${(e as Error).message}`);
      }
    }
  };

const rangeOf =
  (family: 4 | 6): Validator =>
  (v) => {
    const r = parseRange(v);
    if (r.family !== family) throw new Error(`Not an IPv${family} range "${v}"`);
  };

/** LXD's interface name rules (also used for network names). */
export function interfaceNameError(name: string): string | undefined {
  if (name === "") return "Network interface name cannot be empty";
  if (name.length > 15) return "Network interface is too long (maximum 15 characters)";
  if (name === "." || name === "..") return "Network interface name cannot be . or ..";
  if (!/^[a-zA-Z0-9_.\-:]+$/.test(name) || name.includes(":") || name.includes("/")) return "Network interface contains invalid characters";
  return undefined;
}

const interfaceList: Validator = (v) => {
  for (const name of v.split(",").map((s) => s.trim())) {
    const err = interfaceNameError(name);
    if (err) throw new Error(`Invalid interface name "${name}": ${err}`);
  }
};

const required =
  (inner: Validator): Validator =>
  (v) => {
    if (v === "") throw new Error("Required value");
    inner(v);
  };

const any: Validator = () => {};
const key = (validate: Validator, doc: string, dflt?: string) => ({ validate, doc, default: dflt });

const ipv4Keys: KeyTable = {
  "ipv4.address": key(addressOrSpecial(4), "IPv4 address of the bridge (CIDR), auto or none", "auto"),
  "ipv4.firewall": key(lxdBool, "generate filtering firewall rules", "true"),
  "ipv4.nat": key(lxdBool, "NAT traffic leaving the bridge", "false"),
  "ipv4.nat.order": key(oneOf("before", "after"), "NAT rules before or after existing ones", "before"),
  "ipv4.nat.address": key(isIPv4Address, "source address for NAT"),
  "ipv4.dhcp": key(lxdBool, "serve DHCP", "true"),
  "ipv4.dhcp.gateway": key(isIPv4Address, "gateway advertised by DHCP"),
  "ipv4.dhcp.expiry": key(any, "lease lifetime", "1h"),
  "ipv4.dhcp.ranges": key(listOf(rangeOf(4)), "DHCP ranges (start-end, comma separated)"),
  "ipv4.routes": key(listOf(isCidrV4), "extra routes to the bridge"),
  "ipv4.routing": key(lxdBool, "route traffic in and out of the bridge", "true"),
  "ipv4.ovn.ranges": key(listOf(rangeOf(4)), "ranges for OVN uplinks"),
};

const ipv6Keys: KeyTable = {
  "ipv6.address": key(addressOrSpecial(6), "IPv6 address of the bridge (CIDR), auto or none", "auto"),
  "ipv6.firewall": key(lxdBool, "generate filtering firewall rules", "true"),
  "ipv6.nat": key(lxdBool, "NAT traffic leaving the bridge", "false"),
  "ipv6.nat.order": key(oneOf("before", "after"), "NAT rules before or after existing ones", "before"),
  "ipv6.nat.address": key(isIPv6Address, "source address for NAT"),
  "ipv6.dhcp": key(lxdBool, "provide extra information over DHCP", "true"),
  "ipv6.dhcp.expiry": key(any, "lease lifetime", "1h"),
  "ipv6.dhcp.stateful": key(lxdBool, "stateful DHCPv6 allocation", "false"),
  "ipv6.dhcp.ranges": key(listOf(rangeOf(6)), "DHCPv6 ranges"),
  "ipv6.routes": key(listOf(isCidrV6), "extra routes to the bridge"),
  "ipv6.routing": key(lxdBool, "route traffic in and out of the bridge", "true"),
  "ipv6.ovn.ranges": key(listOf(rangeOf(6)), "ranges for OVN uplinks"),
};

export const bridgeKeys: KeyTable = {
  ...ipv4Keys,
  ...ipv6Keys,
  "bridge.driver": key(oneOf("native", "openvswitch"), "bridge driver", "native"),
  "bridge.external_interfaces": key(interfaceList, "unconfigured interfaces to include in the bridge"),
  "bridge.hwaddr": key(isMac, "MAC address of the bridge"),
  "bridge.mode": key(oneOf("standard", "fan"), "bridge operation mode", "standard"),
  "bridge.mtu": key(isMtu, "bridge MTU", "1500"),
  "dns.domain": key(any, "domain advertised to DHCP clients", "lxd"),
  "dns.mode": key(oneOf("dynamic", "managed", "none"), "DNS registration mode", "managed"),
  "dns.search": key(any, "full domain search list"),
  "fan.overlay_subnet": key(isCidrV4, "overlay subnet", "240.0.0.0/8"),
  "fan.underlay_subnet": key((v) => (v === "auto" ? undefined : isCidrV4(v)), "underlay subnet", "auto"),
  "fan.type": key(oneOf("vxlan", "ipip"), "tunneling type", "vxlan"),
  "raw.dnsmasq": key(any, "extra dnsmasq configuration"),
  "dns.zone.forward": key(any, "DNS zone for the network's forward records"),
  "dns.zone.reverse.ipv4": key(any, "DNS zone for IPv4 reverse records"),
  "dns.zone.reverse.ipv6": key(any, "DNS zone for IPv6 reverse records"),
  "security.acls": key(any, "network ACLs"),
  "security.acls.default.ingress.action": key(oneOf("allow", "reject", "drop"), "default ingress action"),
  "security.acls.default.egress.action": key(oneOf("allow", "reject", "drop"), "default egress action"),
  "security.acls.default.ingress.logged": key(lxdBool, "log default ingress"),
  "security.acls.default.egress.logged": key(lxdBool, "log default egress"),
};

/** tunnel.NAME.FIELD keys of a bridge. */
export const tunnelKeys: KeyTable = {
  protocol: key(oneOf("gre", "vxlan"), "tunnel protocol"),
  local: key(isIPAddress, "local address"),
  remote: key(isIPAddress, "remote address"),
  group: key(isIPAddress, "multicast group (vxlan)"),
  port: key(portNumber, "UDP port (vxlan)"),
  id: key(lxdInt, "tunnel id (vxlan)"),
  interface: key((v) => {
    const err = interfaceNameError(v);
    if (err) throw new Error(err);
  }, "parent interface (vxlan)"),
  ttl: key(uint8, "TTL (vxlan)"),
};

const parentKey = key(required((v) => {
  const err = interfaceNameError(v);
  if (err) throw new Error(err);
}), "parent interface");

const uplinkKeys: KeyTable = {
  mtu: key(isMtu, "MTU of new interfaces"),
  vlan: key((v) => {
    if (!/^[0-9]+$/.test(v) || Number(v) > 4094) throw new Error(`Invalid VLAN ID "${v}"`);
  }, "VLAN ID"),
  "maas.subnet.ipv4": key(any, "MAAS IPv4 subnet"),
  "maas.subnet.ipv6": key(any, "MAAS IPv6 subnet"),
};

export const macvlanKeys: KeyTable = { parent: parentKey, ...uplinkKeys, gvrp: key(lxdBool, "GARP VLAN registration") };
export const sriovKeys: KeyTable = { parent: parentKey, ...uplinkKeys };
export const physicalKeys: KeyTable = {
  parent: parentKey,
  ...uplinkKeys,
  gvrp: key(lxdBool, "GARP VLAN registration"),
  "ipv4.gateway": key(hostCidr(4), "IPv4 gateway (CIDR)"),
  "ipv6.gateway": key(hostCidr(6), "IPv6 gateway (CIDR)"),
  "ipv4.ovn.ranges": ipv4Keys["ipv4.ovn.ranges"],
  "ipv6.ovn.ranges": ipv6Keys["ipv6.ovn.ranges"],
  "ipv4.routes": ipv4Keys["ipv4.routes"],
  "ipv6.routes": ipv6Keys["ipv6.routes"],
  "dns.nameservers": key(listOf(isIPAddress), "DNS servers for OVN"),
  "ovn.ingress_mode": key(oneOf("l2proxy", "routed"), "OVN ingress mode"),
};

/**
 * Validate a network config against a table: unknown keys (except user.*) are refused, each
 * value is checked by its validator. `dynamic` resolves keys such as tunnel.NAME.FIELD.
 */
export function validateNetworkConfig(
  network: string,
  table: KeyTable,
  config: Record<string, string>,
  dynamic?: (key: string) => Validator | undefined,
): void {
  const checkRequired = Object.entries(table).filter(([k]) => k === "parent");
  for (const [k] of checkRequired) if (!(k in config)) config = { ...config, [k]: "" };
  for (const k of Object.keys(config).sort()) {
    const value = config[k];
    if (k.startsWith("user.")) continue;
    const validate = table[k]?.validate ?? dynamic?.(k);
    if (!validate) throw new Error(`Invalid option for network "${network}" option "${k}"`);
    if (value === "" && k !== "parent") continue;
    try {
      validate(value);
    } catch (e) {
      throw new Error(`Invalid value for network "${network}" option "${k}": ${(e as Error).message}`);
    }
  }
}

/** The validator for a tunnel.NAME.FIELD key, if it is one. */
export function tunnelKeyValidator(k: string): Validator | undefined {
  const m = /^tunnel\.([^.]+)\.([^.]+)$/.exec(k);
  return m ? tunnelKeys[m[2]]?.validate : undefined;
}

/** Tunnels declared in a bridge config: { NAME: { protocol, local, ... } }. */
export function tunnelsOf(config: Record<string, string>): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const [k, v] of Object.entries(config)) {
    const m = /^tunnel\.([^.]+)\.([^.]+)$/.exec(k);
    if (m) (out[m[1]] ??= {})[m[2]] = v;
  }
  return out;
}
