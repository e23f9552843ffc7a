import { z } from "zod";

const StringMap = z.record(z.string(), z.string()).nullish().transform((m) => m ?? {});

export const StoragePoolPut = z
  .object({
    description: z.string().nullish().transform((d) => d ?? ""),
    config: StringMap,
  })
  .passthrough();
export type StoragePoolPut = z.infer<typeof StoragePoolPut>;

export const StoragePoolsPost = StoragePoolPut.extend({
  name: z.string().nullish().transform((n) => n ?? ""),
  driver: z.string().nullish().transform((d) => d ?? ""),
});
export type StoragePoolsPost = z.infer<typeof StoragePoolsPost>;

export const StorageVolumePut = z
  .object({
    description: z.string().nullish().transform((d) => d ?? ""),
    config: z.record(z.string(), z.string()).nullish(),
    restore: z.string().nullish(),
  })
  .passthrough()
  // A restore applies the config only when the body carries one (upstream: req.Config != nil).
  .transform((b) => ({ ...b, configGiven: b.config != null, config: b.config ?? {} }));

export const StorageVolumesPost = StoragePoolPut.extend({
  name: z.string().nullish().transform((n) => n ?? ""),
  type: z.string().nullish().transform((t) => t ?? ""),
  content_type: z
    .string()
    .nullish()
    .transform((t) => t || "filesystem"),
  source: z.object({ type: z.string().nullish() }).passthrough().nullish(),
});

export const StorageVolumePost = z
  .object({
    name: z.string().nullish().transform((n) => n ?? ""),
    pool: z.string().nullish(),
    migration: z.boolean().nullish(),
    project: z.string().nullish(),
  })
  .passthrough();
