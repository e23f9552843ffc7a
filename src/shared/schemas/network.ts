import { z } from "zod";

const goKind = (v: unknown) => (v === null ? "null" : typeof v === "number" ? "number" : typeof v === "boolean" ? "bool" : Array.isArray(v) ? "array" : typeof v);

/** `config` is a Go map[string]string: a non-string value gets Go's error for the map field. */
function withStringConfig<T extends z.ZodRawShape>(goType: string, shape: T) {
  return z
    .object({ ...shape, config: z.record(z.unknown()).optional() })
    .superRefine((b, ctx) => {
      for (const v of Object.values(b.config ?? {})) {
        if (typeof v === "string") continue;
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: [], message: `json: cannot unmarshal ${goKind(v)} into Go struct field ${goType}.config of type string` });
        return;
      }
    })
    .transform((b) => b as typeof b & { config?: Record<string, string> });
}

export const NetworkPut = withStringConfig("NetworkPut", { description: z.string().optional() });
export const NetworksPost = withStringConfig("NetworksPost", {
  name: z.string().optional().default(""),
  type: z.string().optional(),
  description: z.string().optional(),
});
export const NetworkPost = z.object({ name: z.string().optional().default("") });
