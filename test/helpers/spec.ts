// Our JSON held against LXD 5.0.2's REST spec (rest-api.yaml, generated from shared/api): every field
// the spec names is there (but for Go's omitempty ones, which may be left out), no field it does not
// name, and every value of the JSON type the spec gives (objects and arrays may be null, as Go's nil).
import { existsSync, readFileSync } from "node:fs";
import { parse } from "yaml";

export const SPEC_PATH = "/work/shared/lxd-5.0.2/rest-api.yaml";

interface Node {
  $ref?: string;
  type?: string;
  properties?: Record<string, Node>;
  additionalProperties?: Node | boolean;
  items?: Node;
}

export const spec: { definitions: Record<string, Node> } | undefined = existsSync(SPEC_PATH) ? parse(readFileSync(SPEC_PATH, "utf8")) : undefined;

/**
 * Fields tagged `json:",omitempty"` in LXD 5.0.2's shared/api structs (embedded ones counted in),
 * restricted to the response types: a response may leave them out. Read from the Go source:
 * `git show lxd-5.0.2:shared/api/<file>.go`, the struct of the definition's name.
 */
export const OMITEMPTY: Record<string, string[]> = {
  Event: ["location", "project"],
  Image: ["update_source"],
  Instance: ["expanded_config", "expanded_devices", "restore"],
  InstanceFull: ["expanded_config", "expanded_devices", "restore"],
  InstanceSnapshot: ["expanded_config", "expanded_devices"],
  NetworkACLRule: ["description", "destination", "destination_port", "icmp_code", "icmp_type", "protocol", "source", "source_port"],
  NetworkZoneRecordEntry: ["ttl"],
  ResourcesCPUCore: ["frequency"],
  ResourcesCPUSocket: ["cache", "frequency", "frequency_minimum", "frequency_turbo", "name", "vendor"],
  ResourcesGPUCard: ["driver", "driver_version", "drm", "mdev", "nvidia", "pci_address", "product", "product_id", "sriov", "usb_address", "vendor", "vendor_id"],
  ResourcesGPUCardDRM: ["control_device", "control_name", "render_device", "render_name"],
  ResourcesGPUCardMdev: ["description", "name"],
  ResourcesGPUCardNvidia: ["architecture", "cuda_version", "nvrm_version", "uuid"],
  ResourcesMemory: ["nodes"],
  ResourcesNetworkCard: ["driver", "driver_version", "firmware_version", "pci_address", "ports", "product", "product_id", "sriov", "usb_address", "vendor", "vendor_id"],
  ResourcesNetworkCardPort: ["address", "infiniband", "link_duplex", "link_speed", "port_type", "supported_modes", "supported_ports", "transceiver_type"],
  ResourcesNetworkCardPortInfiniband: ["issm_device", "issm_name", "mad_device", "mad_name", "verb_device", "verb_name"],
  ResourcesPCIVPD: ["entries", "product_name"],
  ResourcesStorageDisk: ["device_path", "firmware_version", "model", "pci_address", "serial", "type", "usb_address", "wwn"],
  ResourcesStoragePool: ["inodes", "space"],
  ResourcesStoragePoolSpace: ["used"],
  StorageVolume: ["restore"],
  StorageVolumeStateUsage: ["used"],
};

const kindOf = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v);

function check(node: Node, value: unknown, at: string, out: string[], defName?: string): void {
  if (node.$ref) {
    const name = node.$ref.replace("#/definitions/", "");
    const def = spec!.definitions[name];
    if (!def) return void out.push(`${at}: the spec has no definition ${name}`);
    return check(def, value, at, out, name);
  }
  const type = node.type ?? (node.properties ? "object" : undefined);
  if (type === undefined) return; // any value (Go's interface{})
  const kind = kindOf(value);
  if (kind === "null" && (type === "object" || type === "array")) return;
  const fits = type === "number" ? kind === "integer" || kind === "number" : kind === type;
  if (!fits) return void out.push(`${at}: ${kind} where the spec says ${type}${defName ? ` (${defName})` : ""}`);
  if (type === "array") return (value as unknown[]).forEach((v, i) => node.items && check(node.items, v, `${at}[${i}]`, out));
  if (type !== "object") return;
  const obj = value as Record<string, unknown>;
  if (node.properties) {
    const omit = new Set(defName ? OMITEMPTY[defName] : []);
    for (const k of Object.keys(obj)) if (!(k in node.properties)) out.push(`${at}.${k}: not in the spec${defName ? ` (${defName})` : ""}`);
    for (const [k, sub] of Object.entries(node.properties)) {
      if (k in obj) check(sub, obj[k], `${at}.${k}`, out);
      else if (!omit.has(k)) out.push(`${at}.${k}: missing${defName ? ` (${defName})` : ""}`);
    }
  } else if (node.additionalProperties && typeof node.additionalProperties === "object") {
    for (const [k, v] of Object.entries(obj)) check(node.additionalProperties, v, `${at}.${k}`, out);
  }
}

/** Where `value` departs from the spec's definition `name` (empty when it conforms). */
export function specDiff(name: string, value: unknown): string[] {
  const out: string[] = [];
  check({ $ref: `#/definitions/${name}` }, value, name, out);
  return out;
}
