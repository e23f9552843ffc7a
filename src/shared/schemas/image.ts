// POST /1.0/images request body (api.ImagesPost).
import { z } from "zod";

const StringMap = z.record(z.string());

export const ImagesPost = z.object({
  source: z
    .object({
      type: z.string().optional().default(""),
      name: z.string().optional().default(""),
      mode: z.string().optional(),
      fingerprint: z.string().optional(),
      alias: z.string().optional(),
      server: z.string().optional(),
      url: z.string().optional(),
      protocol: z.string().optional(),
      project: z.string().optional(),
      certificate: z.string().optional(),
      secret: z.string().optional(),
      image_type: z.string().optional(),
    })
    .passthrough()
    .optional()
    .default({}),
  filename: z.string().optional().default(""),
  public: z.boolean().optional().default(false),
  auto_update: z.boolean().optional().default(false),
  compression_algorithm: z.string().optional().default(""),
  properties: StringMap.nullable().optional(),
  aliases: z.array(z.object({ name: z.string(), description: z.string().optional().default("") })).nullable().optional(),
  expires_at: z.string().optional(),
  profiles: z.array(z.string()).nullable().optional(),
});
export type ImagesPostBody = z.infer<typeof ImagesPost>;
