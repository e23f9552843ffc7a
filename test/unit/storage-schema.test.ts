// Our request schemas against the upstream REST spec (response shapes are checked exactly in test/host).
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { ProfilePut, ProfilesPost } from "../../src/shared/schemas/profiles.js";
import { StoragePoolPut, StoragePoolsPost, StorageVolumePost, StorageVolumesPost } from "../../src/shared/schemas/storage.js";

const spec = parse(readFileSync("/work/shared/lxd-5.0.2/rest-api.yaml", "utf8"));
const props = (name: string) => Object.keys(spec.definitions[name].properties).sort();
const keys = (schema: z.AnyZodObject) => Object.keys(schema.shape).sort();

describe.skipIf(!spec)("schemas match rest-api.yaml", () => {
  it("request types", () => {
    expect(keys(StoragePoolPut)).toEqual(props("StoragePoolPut"));
    expect(keys(StoragePoolsPost)).toEqual(props("StoragePoolsPost"));
    expect(keys(StorageVolumesPost)).toEqual(props("StorageVolumesPost").filter((k) => k !== "restore"));
    expect(props("StorageVolumePost")).toEqual(expect.arrayContaining(keys(StorageVolumePost)));
    expect(keys(ProfilePut)).toEqual(props("ProfilePut"));
    expect(keys(ProfilesPost)).toEqual(props("ProfilesPost"));
  });
});
