// The control channel's protobuf messages: round trips, LXD's field numbers on the wire, and
// refusal of malformed or incomplete peer input.
import { describe, expect, it } from "vitest";
import { decodeControl, decodeHeader, encodeControl, encodeHeader, rsyncFeaturesMsg, rsyncFeaturesOf } from "../../src/migration/proto.js";
import { rsyncFeatureArgs } from "../../src/storage/rsync.js";

describe("migration protobuf", () => {
  it("round-trips a header with snapshots, idmap and rsync features", () => {
    const h = {
      fs: 0,
      idmap: [{ isuid: true, isgid: false, hostid: 100000, nsid: 0, maprange: 65536 }],
      snapshotNames: ["s0"],
      snapshots: [{ name: "s0", localConfig: [{ key: "limits.cpu", value: "1" }], profiles: ["default"], ephemeral: false, localDevices: [{ name: "root", config: [{ key: "pool", value: "p" }] }], architecture: 2, stateful: false, creation_date: 1700000000 }],
      rsyncFeatures: rsyncFeaturesMsg(["xattrs", "delete", "bidirectional"]),
      indexHeaderVersion: 1,
    };
    const back = decodeHeader(encodeHeader(h));
    expect(back.snapshots[0].name).toBe("s0");
    expect(back.snapshots[0].creation_date).toBe(1700000000);
    expect(back.idmap[0]).toEqual(h.idmap[0]);
    expect(rsyncFeaturesOf(back)).toEqual(["xattrs", "delete", "bidirectional"]);
    expect(back.indexHeaderVersion).toBe(1);
  });

  it("encodes MigrationControl as LXD does (field 1 bool, field 2 string)", () => {
    expect(encodeControl({ success: true, message: "" })).toEqual(Buffer.from([0x08, 0x01, 0x12, 0x00]));
    expect(decodeControl(Buffer.from([0x08, 0x00, 0x12, 0x02, 0x6f, 0x6b]))).toEqual({ success: false, message: "ok" });
  });

  it("refuses truncated or incomplete messages", () => {
    expect(() => decodeHeader(Buffer.from([0x0a, 0x05, 0x01]))).toThrow();
    expect(() => decodeControl(Buffer.from([]))).toThrow(/success/);
    expect(() => decodeHeader(Buffer.from([0x22, 0x02, 0x73, 0x30]))).toThrow(/fs/);
  });

  it("maps features to LXD's rsync arguments", () => {
    expect(rsyncFeatureArgs(["xattrs", "delete", "compress"])).toEqual(["--xattrs", "--filter=-x security.selinux", "--delete", "--compress", "--compress-level=2"]);
    expect(rsyncFeatureArgs(["bidirectional"])).toEqual([]);
  });

  it("carries nodelxd's extension as field 4450, which a decoder without it (LXD's) skips", () => {
    const h = { fs: 0, idmap: [], snapshotNames: [], snapshots: [], nodelxd: { rsync: ["negotiate"] } };
    const wire = encodeHeader(h);
    // Field 4450, wire type 2: varint key (4450 << 3 | 2) = 0x92 0x96 0x02.
    expect(wire.includes(Buffer.from([0x92, 0x96, 0x02]))).toBe(true);
    expect(decodeHeader(wire).nodelxd).toEqual({ rsync: ["negotiate"] });
    // An LXD header has no such field, and an empty extension still says "nodelxd".
    expect(decodeHeader(encodeHeader({ fs: 0, idmap: [], snapshotNames: [], snapshots: [] })).nodelxd).toBeUndefined();
    expect(decodeHeader(encodeHeader({ ...h, nodelxd: { rsync: [] } })).nodelxd).toBeDefined();
    // Unknown fields after it (a newer peer's) are skipped as LXD's decoder skips ours.
    const withUnknown = Buffer.concat([wire, Buffer.from([0xa0, 0x9f, 0x02, 0x01])]);
    expect(decodeHeader(withUnknown).fs).toBe(0);
  });
});
