import { z } from "zod";

/** Config values arrive as JSON strings, numbers or booleans; LXD stores them as strings. */
export const ConfigValue = z.union([z.string(), z.number(), z.boolean()]);
export const ConfigMap = z.record(z.string(), ConfigValue).nullish().transform((m) => m ?? {});

export const ServerPut = z.object({ config: ConfigMap }).passthrough();
export type ServerPut = z.infer<typeof ServerPut>;

/** Stringify config values; `true` stays as-is so hidden keys can round-trip their placeholder. */
export function configStrings(m: Record<string, string | number | boolean>, keepTrue = new Set<string>()): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) out[k] = v === true && keepTrue.has(k) ? (true as unknown as string) : String(v);
  return out;
}
