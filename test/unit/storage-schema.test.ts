// Our schemas against the upstream REST spec: request schemas by their keys here; responses as a daemon
// serves them in test/host/api-spec.test.ts, with the checker (test/helpers/spec.ts) tested below.
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { ProfilePut, ProfilesPost } from "../../src/shared/schemas/profiles.js";
import { StoragePoolPut, StoragePoolsPost, StorageVolumePost, StorageVolumesPost } from "../../src/shared/schemas/storage.js";
import { spec, specDiff } from "../helpers/spec.js";

const props = (name: string) => Object.keys(spec!.definitions[name].properties!).sort();
const keys = (schema: z.AnyZodObject) => Object.keys(schema.shape).sort();

describe.skipIf(!spec)("schemas match rest-api.yaml (this machine has no copy of the spec otherwise)", () => {
  it("request types", () => {
    expect(keys(StoragePoolPut)).toEqual(props("StoragePoolPut"));
    expect(keys(StoragePoolsPost)).toEqual(props("StoragePoolsPost"));
    expect(keys(StorageVolumesPost)).toEqual(props("StorageVolumesPost").filter((k) => k !== "restore"));
    expect(props("StorageVolumePost")).toEqual(expect.arrayContaining(keys(StorageVolumePost)));
    expect(keys(ProfilePut)).toEqual(props("ProfilePut"));
    expect(keys(ProfilesPost)).toEqual(props("ProfilesPost"));
  });
});

describe.skipIf(!spec)("the response checker (this machine has no copy of the spec otherwise)", () => {
  const profile = { config: { "user.a": "1" }, description: "", devices: { root: { type: "disk", path: "/", pool: "default" } }, name: "default", used_by: null };
  const op = { id: "x", class: "task", description: "", created_at: "t", updated_at: "t", status: "Running", status_code: 103, resources: { instances: ["/1.0/instances/c"] }, metadata: null, may_cancel: false, err: "", location: "none" };

  it("passes what the spec describes (null for Go's nil maps and slices)", () => {
    expect(specDiff("Profile", profile)).toEqual([]);
    expect(specDiff("Operation", op)).toEqual([]);
    expect(specDiff("Operation", { ...op, metadata: { any: ["thing", 1] } })).toEqual([]);
  });

  it("names missing fields, extra fields and wrong JSON types, nested ones too", () => {
    const { used_by: _, ...noUsedBy } = profile;
    expect(specDiff("Profile", noUsedBy)).toEqual(["Profile.used_by: missing (Profile)"]);
    expect(specDiff("Profile", { ...profile, extra: 1 })).toEqual(["Profile.extra: not in the spec (Profile)"]);
    expect(specDiff("Profile", { ...profile, description: null })).toEqual(["Profile.description: null where the spec says string"]);
    expect(specDiff("Profile", { ...profile, devices: { root: { size: 5 } } })).toEqual(["Profile.devices.root.size: integer where the spec says string"]);
    expect(specDiff("Operation", { ...op, status_code: "103" })).toEqual(["Operation.status_code: string where the spec says integer (StatusCode)"]);
    expect(specDiff("Operation", { ...op, resources: { instances: [1] } })).toEqual(["Operation.resources.instances[0]: integer where the spec says string"]);
  });

  it("lets Go's omitempty fields be left out, and only those", () => {
    const inst = { architecture: "x86_64", config: {}, devices: {}, ephemeral: false, profiles: [], stateful: false, description: "", created_at: "t", name: "c", status: "Stopped", status_code: 102, last_used_at: "t", location: "none", type: "container", project: "default" };
    expect(specDiff("Instance", inst)).toEqual([]);
    const { location: _, ...noLocation } = inst;
    expect(specDiff("Instance", noLocation)).toEqual(["Instance.location: missing (Instance)"]);
  });
});
