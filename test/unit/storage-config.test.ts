import { describe, expect, it } from "vitest";
import { commonPoolKeys, commonVolumeKeys, isSchedule, validatePoolConfig } from "../../src/storage/config.js";
import { parseByteSize } from "../../src/shared/units.js";
import { storageName } from "../../src/storage/volume-names.js";

describe("storage config", () => {
  it("parses byte sizes like LXD", () => {
    expect(parseByteSize("")).toBe(0);
    expect(parseByteSize("10")).toBe(10);
    expect(parseByteSize("10MB")).toBe(10e6);
    expect(parseByteSize("10MiB")).toBe(10 * 2 ** 20);
    expect(parseByteSize("1GiB")).toBe(2 ** 30);
    expect(parseByteSize("2kB")).toBe(2000);
    for (const bad of ["abc", "-1", "1.5GiB", "10XB", "GiB"]) expect(() => parseByteSize(bad), bad).toThrow(`Invalid value: ${bad}`);
  });

  it("accepts cron schedules and aliases", () => {
    for (const ok of ["@daily", "0 6 * * *", "*/5 * * * *", "0 0,12 * * 1-5", "@hourly, @daily"]) expect(() => isSchedule(ok), ok).not.toThrow();
    for (const bad of ["x", "0 6 * *", "@sometimes"]) expect(() => isSchedule(bad), bad).toThrow("Schedule must be of the form");
  });

  it("validates pool config with volume.* and user.* keys", () => {
    expect(() => validatePoolConfig(commonPoolKeys, commonVolumeKeys, { source: "/x", "volume.size": "1GiB", "user.a": "b" })).not.toThrow();
    expect(() => validatePoolConfig(commonPoolKeys, commonVolumeKeys, { "volume.zfs.remove_snapshots": "true" })).toThrow('Invalid option "volume.zfs.remove_snapshots"');
    expect(() => validatePoolConfig(commonPoolKeys, commonVolumeKeys, { "volume.security.shifted": "x" })).toThrow(
      'Invalid value for option "volume.security.shifted": Invalid value for a boolean "x"',
    );
    expect(() => validatePoolConfig(commonPoolKeys, commonVolumeKeys, { "volume.snapshots.expiry": "x" })).toThrow('Invalid value for option "volume.snapshots.expiry": Invalid expiry expression');
  });

  it("names volumes on disk as upstream", () => {
    expect(storageName("default", "container", "c1")).toBe("c1");
    expect(storageName("p1", "container", "c1")).toBe("p1_c1");
    expect(storageName("default", "custom", "v")).toBe("default_v");
    expect(storageName("p1", "image", "abc")).toBe("abc");
  });
});
