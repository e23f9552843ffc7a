// Device config rules as LXD 5.0.2's shared/validate and deviceConfig.Validate, with its messages.
import type { DeviceConfig } from "./types.js";

export type Rule = (v: string) => void;

export const isDeviceID: Rule = (v) => {
  if (!/^[0-9a-f]{4}$/.test(v)) throw new Error("Invalid value, must be four lower case hex characters");
};
export const isPCIAddress: Rule = (v) => {
  if (!/^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-9a-fA-F]$/.test(v)) throw new Error("Invalid PCI address");
};
export const isUnixId: Rule = (v) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 0xffffffff) throw new Error("Invalid value for a UNIX ID");
};
export const isOctalMode: Rule = (v) => {
  if (!/^[0-7]+$/.test(v)) throw new Error("Invalid value for an octal file mode");
};
export const isBool: Rule = (v) => {
  if (!["true", "false", "yes", "no", "on", "off", "1", "0"].includes(v.toLowerCase())) throw new Error(`Invalid value for a boolean ${JSON.stringify(v)}`);
};
export const isUint8: Rule = (v) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 255) throw new Error(`Invalid value for an integer ${JSON.stringify(v)}. Must be between 0 and 255`);
};
/** LXD's validate.IsUUID (pborman/uuid.Parse: the 36-character form, "urn:uuid:" or braces around it, or 32 hex digits). */
export const isUUID: Rule = (v) => {
  let s = v;
  if (s.length === 45 && s.slice(0, 9).toLowerCase() === "urn:uuid:") s = s.slice(9);
  else if (s.length === 38 && s.startsWith("{") && s.endsWith("}")) s = s.slice(1, -1);
  const ok = s.length === 32 ? /^[0-9a-fA-F]{32}$/.test(s) : /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s);
  if (!ok) throw new Error("Invalid UUID");
};
export const isNotEmpty: Rule = (v) => {
  if (v === "") throw new Error("Required value");
};
export const optional =
  (r: Rule): Rule =>
  (v) => {
    if (v !== "") r(v);
  };
export const any: Rule = () => {};

/** LXD's deviceConfig.Validate: every rule, then no unknown keys (user.* allowed). */
export function validateKeys(config: DeviceConfig, rules: Record<string, Rule>, extra: string[] = []): void {
  for (const [k, rule] of Object.entries(rules)) {
    try {
      rule(config[k] ?? "");
    } catch (e) {
      throw new Error(`Invalid value for device option ${JSON.stringify(k)}: ${(e as Error).message}`);
    }
  }
  for (const k of Object.keys(config)) {
    if (k === "type" || k in rules || extra.includes(k) || k.startsWith("user.")) continue;
    throw new Error(`Invalid device option ${JSON.stringify(k)}`);
  }
}
