// The one size parser: LXD 5.0.2's units.ParseByteSizeString forms and messages.
import { describe, expect, it } from "vitest";
import { parseByteSize } from "../../src/shared/units.js";

describe("parseByteSize", () => {
  it("reads LXD's forms", () => {
    expect(parseByteSize("")).toBe(0);
    expect(parseByteSize("512")).toBe(512);
    expect(parseByteSize("512B")).toBe(512);
    expect(parseByteSize("512 bytes")).toBe(512);
    expect(parseByteSize("10kB")).toBe(10_000);
    expect(parseByteSize("1GB")).toBe(1e9);
    expect(parseByteSize("64MiB")).toBe(64 * 2 ** 20);
    expect(parseByteSize("2EiB")).toBe(2 * 2 ** 60);
  });

  it("refuses what LXD refuses, with its messages", () => {
    for (const bad of ["GiB", "1.5GiB", "1 GiB", "1gib", "1kb", "1K", " 1GB", "1GB ", "-1", "1XB"]) {
      expect(() => parseByteSize(bad), bad).toThrow(/^Invalid value: /);
    }
    expect(() => parseByteSize("99999999999999999999")).toThrow("Invalid integer: 99999999999999999999");
    expect(() => parseByteSize("9EiB")).toThrow(/^Overflow multiplying 9 with /);
  });
});
