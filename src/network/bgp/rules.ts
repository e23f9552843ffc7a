// LXD 5.0.2's BGP rules for networks (lxd/network/driver_common.go bgp*, device bgpAddPrefix):
// which config keys are BGP keys, which peers a network declares, which prefixes it exports
// and with which next hop. Pure functions; the speaker (speaker.ts) holds the live state.
import type { Validator } from "../../config/validators.js";
import { contains, formatCidr, formatIp, networkOf, parseCidr, parseIp, type Family } from "../ipnet.js";

export interface BgpPrefix {
  /** The prefix as Go's net.IPNet prints it ("10.0.0.0/24"). */
  prefix: string;
  nexthop: string;
}

const isNetworkAddress: Validator = (v) => {
  if (!parseIp(v)) throw new Error(`Not an IP address "${v}"`);
};

/** Go's validate.IsInRange: an int64 first, then the bounds. */
export function inRange(min: number, max: number): Validator {
  return (v) => {
    if (!/^[+-]?[0-9]+$/.test(v)) throw new Error(`Invalid value for an integer "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new Error(`Value isn't within valid range. Must be between ${min} and ${max}`);
  };
}

const asnRule = inRange(1, 4294967294);

/**
 * The validators of a config's `bgp.*` keys (bgpValidationRules). As in 5.0.2, every `bgp.`
 * key must have four dot-separated fields — so `bgp.ipv4.nexthop`/`bgp.ipv6.nexthop` are
 * refused with "Invalid network configuration key" before any other check, exactly as LXD
 * 5.0.2 refuses them. A four-field key other than address/asn/password gets no rule, so the
 * config check then answers "Invalid option" for it (e.g. `bgp.peers.NAME.holdtime`).
 */
export function bgpKeyRules(config: Record<string, string>): Record<string, Validator> {
  const rules: Record<string, Validator> = Object.create(null) as Record<string, Validator>;
  for (const k of Object.keys(config)) {
    if (!k.startsWith("bgp.")) continue;
    const fields = k.split(".");
    if (fields.length !== 4) throw new Error(`Invalid network configuration key: ${k}`);
    if (fields[3] === "address") rules[k] = isNetworkAddress;
    else if (fields[3] === "asn") rules[k] = asnRule;
    else if (fields[3] === "password") rules[k] = () => {};
  }
  return rules;
}

/** bgpGetPeers: "address,asn,password" for each bgp.peers.NAME with an address and an ASN. */
export function bgpPeersOf(config: Record<string, string>): string[] {
  const names: string[] = [];
  for (const k of Object.keys(config)) {
    if (!k.startsWith("bgp.peers.")) continue;
    const name = k.split(".")[2];
    if (!names.includes(name)) names.push(name);
  }
  const peers: string[] = [];
  for (const name of names) {
    const address = config[`bgp.peers.${name}.address`] ?? "";
    const asn = config[`bgp.peers.${name}.asn`] ?? "";
    if (address !== "" && asn !== "") peers.push(`${address},${asn},${config[`bgp.peers.${name}.password`] ?? ""}`);
  }
  return peers;
}

/** Go's net.ParseIP(v).String(), or undefined when v is not an address. */
function ipString(v: string | undefined): string | undefined {
  const a = v ? parseIp(v) : undefined;
  return a ? formatIp(a.family, a.ip) : undefined;
}

/** bgpNextHopAddress: bgp.ipvN.nexthop, else volatile.network.ipvN.address, else the wildcard. */
export function bgpNextHop(config: Record<string, string>, family: Family): string {
  return ipString(config[`bgp.ipv${family}.nexthop`]) ?? ipString(config[`volatile.network.ipv${family}.address`]) ?? (family === 4 ? "0.0.0.0" : "::");
}

/** net.ParseCIDR's network, printed as Go prints it. */
function subnetOf(text: string): string | undefined {
  const n = parseCidr(text);
  return n ? formatCidr(networkOf(n)) : undefined;
}

const isTrue = (v: string | undefined) => ["true", "1", "yes", "on"].includes((v ?? "").toLowerCase());

/**
 * bgpSetupPrefixes: per family, the NAT address (/32 or /128) when NAT is on and one is set,
 * else the network's subnet when NAT is off.
 */
export function networkPrefixes(config: Record<string, string>): BgpPrefix[] {
  const out: BgpPrefix[] = [];
  for (const family of [4, 6] as const) {
    const nexthop = bgpNextHop(config, family);
    if (isTrue(config[`ipv${family}.nat`])) {
      const nat = config[`ipv${family}.nat.address`];
      if (nat) {
        const prefix = subnetOf(`${nat}/${family === 4 ? 32 : 128}`);
        if (!prefix) throw new Error(`invalid CIDR address: ${nat}/${family === 4 ? 32 : 128}`);
        out.push({ prefix, nexthop });
      }
      continue;
    }
    const address = config[`ipv${family}.address`] ?? "";
    if (address === "" || address === "none") continue;
    const prefix = subnetOf(address);
    if (!prefix) throw new Error(`Failed parsing network address "${address}": invalid CIDR address: ${address}`);
    out.push({ prefix, nexthop });
  }
  return out;
}

/**
 * forwardBGPSetupPrefixes: each forward listen address as a /32 or /128, except those inside
 * the subnet of a family that has NAT on (internal forwards).
 */
export function forwardPrefixes(config: Record<string, string>, listenAddresses: string[]): BgpPrefix[] {
  const out: BgpPrefix[] = [];
  for (const family of [4, 6] as const) {
    const nexthop = bgpNextHop(config, family);
    const nat = isTrue(config[`ipv${family}.nat`]);
    const subnet = parseCidr(config[`ipv${family}.address`] ?? "");
    for (const listen of listenAddresses) {
      const a = parseIp(listen);
      if (!a || a.family !== family) continue;
      if (nat && subnet && contains(subnet, family, a.ip)) continue;
      out.push({ prefix: formatCidr({ family, ip: a.ip, prefix: family === 4 ? 32 : 128 }), nexthop });
    }
  }
  return out;
}

/** bgpAddPrefix for a NIC: its ipv4/ipv6.routes.external with the network's next hops. */
export function nicPrefixes(networkConfig: Record<string, string>, nic: Record<string, string>): BgpPrefix[] {
  const out: BgpPrefix[] = [];
  for (const family of [4, 6] as const) {
    const nexthop = bgpNextHop(networkConfig, family);
    for (const route of (nic[`ipv${family}.routes.external`] ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
      const prefix = subnetOf(route);
      if (!prefix) throw new Error(`invalid CIDR address: ${route}`);
      out.push({ prefix, nexthop });
    }
  }
  return out;
}

/** core.bgp_address as LXD splits it: no port means 179, no host means "::". */
export function bgpListenAddress(address: string): { host: string; port: number } {
  let host = address;
  let port = 179;
  const bracket = /^\[([^\]]*)\]:(\d+)$/.exec(address);
  if (bracket) {
    host = bracket[1];
    port = Number(bracket[2]);
  } else if (address.split(":").length === 2) {
    const [h, p] = address.split(":");
    host = h;
    port = Number(p);
  }
  if (host === "") host = "::";
  return { host, port };
}
