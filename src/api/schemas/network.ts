import { z } from "zod";

const config = z.record(z.string()).optional();

export const NetworkPut = z.object({ description: z.string().optional(), config });
export const NetworksPost = NetworkPut.extend({ name: z.string().optional().default(""), type: z.string().optional() });
export const NetworkPost = z.object({ name: z.string().optional().default("") });
