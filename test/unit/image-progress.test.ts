import { describe, expect, it } from "vitest";
import { byteSize, progressMetadata } from "../../src/images/progress.js";

describe("progress metadata", () => {
  it("reads like LXD's", () => {
    expect(progressMetadata("create_image_from_container_pack", "Image pack", 23, 1000, 15_810_000)).toEqual({
      progress: { stage: "create_image_from_container_pack", processed: "1000", percent: "23", speed: "15810000" },
      create_image_from_container_pack_progress: "Image pack: 23% (15.81MB/s)",
    });
    expect(progressMetadata("s", "Unpack", 0, 2_500_000, 999)).toMatchObject({ s_progress: "Unpack: 2.50MB (999B/s)" });
    expect(byteSize(1_234_567_890)).toBe("1.23GB");
  });
});
