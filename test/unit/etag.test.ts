// ETags are byte-identical to LXD 5.0.2's (values taken from the reference daemon).
import { describe, expect, it } from "vitest";
import { etagOf } from "../../src/shared/etag.js";

describe("etagOf", () => {
  it("hashes what Go's json.Encoder writes", () => {
    const props = { architecture: "x86_64", description: "BusyBox static test image", os: "busybox", release: "1.35" };
    expect(etagOf([false, false, props])).toBe("61d20d037b9b36ff849af8d8f13219aa7b58610aa8565d8d62614be5d7710853");
    const alias = { description: "d", target: "c5ce12bbbd4880c3a749e0142332da135fef415449bd99a1cd5f79876e82eb3f", name: "imgh-z", type: "container" };
    expect(etagOf(alias)).toBe("c1405282712d379a6b016d9d619084248cbba8731b6b41f96ff1f713bb37a5f7");
  });
});
