// A config key table: each key declared once with its validator, default and doc.
import type { Validator } from "./validators.js";

export interface KeySpec {
  validate: Validator;
  default?: string;
  doc: string;
  /** Shown as `true` instead of its value (secrets such as core.trust_password). */
  hidden?: boolean;
}

export type KeyTable = Record<string, KeySpec>;

/**
 * Validate a full proposed config against a table, LXD style:
 * "cannot set 'KEY' to 'VALUE': REASON". `extra` may accept keys outside the table (e.g. user.*).
 */
export function validateConfig(table: KeyTable, config: Record<string, string>, extra?: (key: string) => boolean): void {
  for (const [key, value] of Object.entries(config)) {
    const spec = table[key];
    if (!spec) {
      if (extra?.(key)) continue;
      throw new Error(`cannot set '${key}' to '${value}': unknown key`);
    }
    if (value === "") continue;
    try {
      spec.validate(value);
    } catch (e) {
      throw new Error(`cannot set '${key}' to '${value}': ${(e as Error).message}`);
    }
  }
}
