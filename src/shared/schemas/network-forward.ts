import { z } from "zod";

/** api.NetworkForwardPort */
export const NetworkForwardPort = z
  .object({
    description: z.string().optional(),
    protocol: z.string().optional(),
    listen_port: z.string().optional(),
    target_port: z.string().optional(),
    target_address: z.string().optional(),
  })
  .strip();

/** api.NetworkForwardPut */
export const NetworkForwardPut = z
  .object({
    description: z.string().optional(),
    config: z.record(z.string()).nullable().optional(),
    ports: z.array(NetworkForwardPort).nullable().optional(),
  })
  .strip();

/** api.NetworkForwardsPost */
export const NetworkForwardsPost = NetworkForwardPut.extend({ listen_address: z.string().optional() });
