import { z } from "zod";

/** api.NetworkPeerPut */
export const NetworkPeerPut = z
  .object({
    description: z.string().optional(),
    config: z.record(z.string()).nullable().optional(),
  })
  .strip();

/** api.NetworkPeersPost */
export const NetworkPeersPost = NetworkPeerPut.extend({
  name: z.string().optional(),
  target_project: z.string().optional(),
  target_network: z.string().optional(),
});
