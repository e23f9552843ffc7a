// Request bodies of /1.0/instances (LXD's InstancePut → InstancesPost, InstancePost,
// InstanceStatePut, ImageMetadata): the one declaration of each, used by the routes.
import { z } from "zod";
import { ConfigMap, ConfigValue, configStrings } from "./server.js";

const RawDevices = z.record(z.string(), z.record(z.string(), ConfigValue).nullish());
const Devices = RawDevices.nullish()
  .transform((m) => Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, configStrings(v ?? {})])));

// The writable fields of an instance (LXD's InstancePut), shared by PUT and POST /1.0/instances.
const instancePutFields = {
  architecture: z.string().optional(),
  config: ConfigMap.transform((m) => configStrings(m)),
  devices: Devices,
  ephemeral: z.boolean().optional(),
  profiles: z.array(z.string()).nullish(),
  description: z.string().optional(),
};

export const InstancePut = z
  .object({
    ...instancePutFields,
    restore: z.string().optional(),
    stateful: z.boolean().optional(),
  })
  .passthrough();

/** PATCH: the same fields, values as sent (the service merges them; "" removes a key). */
export const InstancePatch = z
  .object({
    ...instancePutFields,
    config: z.record(z.string(), ConfigValue).nullish(),
    devices: RawDevices.nullish(),
  })
  .passthrough();

export const InstancesPost = z
  .object({
    ...instancePutFields,
    name: z.string().default(""),
    type: z.string().optional(),
    instance_type: z.string().optional(),
    stateful: z.boolean().optional(),
    source: z
      .object({
        type: z.string().default("none"),
        alias: z.string().optional(),
        fingerprint: z.string().optional(),
        source: z.string().optional(),
        instance_only: z.boolean().optional(),
        container_only: z.boolean().optional(),
        project: z.string().optional(),
        mode: z.string().optional(),
        operation: z.string().optional(),
        certificate: z.string().optional(),
        secrets: z.record(z.string(), z.string()).nullish(),
        live: z.boolean().optional(),
        refresh: z.boolean().optional(),
        server: z.string().optional(),
        protocol: z.string().optional(),
        secret: z.string().optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();

export const InstancePost = z
  .object({
    name: z.string().default(""),
    migration: z.boolean().optional(),
    live: z.boolean().optional(),
    instance_only: z.boolean().optional(),
    container_only: z.boolean().optional(),
    pool: z.string().optional(),
    project: z.string().optional(),
    target: z.object({ certificate: z.string().default(""), operation: z.string(), secrets: z.record(z.string(), z.string()) }).nullish(),
  })
  .passthrough();

export const StatePut = z.object({
  action: z.string(),
  timeout: z.number().int().default(-1),
  force: z.boolean().default(false),
  stateful: z.boolean().default(false),
});

export const MetadataPut = z
  .object({
    architecture: z.string().default(""),
    creation_date: z.number().default(0),
    expiry_date: z.number().default(0),
    properties: z.record(z.string(), z.string()).nullish().transform((m) => m ?? {}),
    templates: z.record(z.string(), z.unknown()).nullish().transform((m) => m ?? {}),
  })
  .passthrough();

// api.InstancesPut: {"state": InstanceStatePut} (PUT /1.0/instances, `lxc start --all`).
export const InstancesPut = z.object({ state: StatePut.nullish() }).passthrough();
