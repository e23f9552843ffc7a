import { z } from "zod";

const optString = z.string().optional();

/** api.NetworkACLRule */
export const NetworkAclRule = z
  .object({
    action: z.string().default(""),
    source: optString,
    destination: optString,
    protocol: optString,
    source_port: optString,
    destination_port: optString,
    icmp_type: optString,
    icmp_code: optString,
    description: optString,
    state: z.string().default(""),
  })
  .strip();

const rules = z.array(NetworkAclRule).nullable().optional();
const config = z.record(z.string()).nullable().optional();

/** api.NetworkACLPut */
export const NetworkAclPut = z.object({ description: optString, ingress: rules, egress: rules, config }).strip();
/** api.NetworkACLsPost */
export const NetworkAclsPost = NetworkAclPut.extend({ name: z.string().default("") });
/** api.NetworkACLPost */
export const NetworkAclPost = z.object({ name: z.string().default("") }).strip();
