import { z } from "zod";

const StringMap = z.record(z.string(), z.string()).nullish().transform((m) => m ?? {});
const Devices = z
  .record(z.string(), z.record(z.string(), z.string()))
  .nullish()
  .transform((m) => m ?? {});

export const ProfilePut = z
  .object({
    description: z.string().nullish().transform((d) => d ?? ""),
    config: StringMap,
    devices: Devices,
  })
  .passthrough();
export type ProfilePut = z.infer<typeof ProfilePut>;

export const ProfilesPost = ProfilePut.extend({ name: z.string().nullish().transform((n) => n ?? "") });

export const ProfilePost = z.object({ name: z.string().nullish().transform((n) => n ?? "") }).passthrough();
