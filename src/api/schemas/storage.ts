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
