// The migration transport negotiation (LXD 5.0.2's TypesToHeader/MatchTypes) and the checks of
// a peer's btrfs subvolume list: pure parts of migration/channel.ts and drivers/btrfs-send.ts.
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { matchTransports, NODELXD_RSYNC_NEGOTIATE, poolTransports, progressEvery, targetAnswer, transportsHeader } from "../../src/migration/channel.js";
import { FS_BLOCK_AND_RSYNC, FS_BTRFS, FS_RSYNC, type MigrationHeader } from "../../src/migration/proto.js";
import { checkSubvolumes, headerYaml } from "../../src/storage/drivers/btrfs-send.js";

const header = (h: Partial<MigrationHeader>): MigrationHeader => ({ fs: FS_RSYNC, idmap: [], snapshotNames: [], snapshots: [], ...h });
const LXD_BTRFS_OFFER = header({ fs: FS_BTRFS, btrfsFeatures: { migration_header: true, header_subvolumes: true, header_subvolume_uuids: true }, rsyncFeatures: { xattrs: true, delete: true, compress: true, bidirectional: true } });

describe("transport negotiation", () => {
  it("a btrfs pool offers BTRFS first with our features, and rsync as the fallback", () => {
    const ours = poolTransports("btrfs", {});
    expect(ours.map((t) => t.fs)).toEqual([FS_BTRFS, FS_RSYNC]);
    const h = transportsHeader(ours);
    expect(h.fs).toBe(FS_BTRFS);
    expect(h.btrfsFeatures).toEqual({ migration_header: true, header_subvolumes: false, header_subvolume_uuids: false });
    expect(h.rsyncFeatures).toEqual({ xattrs: true, delete: true, compress: true, bidirectional: true });
    expect(transportsHeader(poolTransports(undefined, { "rsync.compression": "false" }))).toEqual({ fs: FS_RSYNC, rsyncFeatures: { xattrs: true, delete: true, compress: false, bidirectional: true } });
  });

  it("btrfs to btrfs agrees on BTRFS with the common features; a dir target answers RSYNC", () => {
    const onBtrfs = targetAnswer(LXD_BTRFS_OFFER, poolTransports("btrfs", {}), false);
    expect(onBtrfs.transport).toEqual({ fs: FS_BTRFS, features: ["migration_header"] });
    expect(onBtrfs.fields.fs).toBe(FS_BTRFS);
    const onDir = targetAnswer(LXD_BTRFS_OFFER, poolTransports(undefined, {}), false);
    expect(onDir.transport.fs).toBe(FS_RSYNC);
    expect(onDir.fields.btrfsFeatures).toBeUndefined();
    // The source then matches the answer against its own types, as LXD's MatchTypes.
    expect(matchTransports(header({ fs: FS_RSYNC, rsyncFeatures: { xattrs: true, delete: true, compress: true, bidirectional: true } }), poolTransports("btrfs", {}))[0].fs).toBe(FS_RSYNC);
  });

  it("a refresh never goes by BTRFS without subvolume UUIDs (we refresh by rsync)", () => {
    expect(targetAnswer(LXD_BTRFS_OFFER, poolTransports("btrfs", {}), true).transport.fs).toBe(FS_RSYNC);
  });

  it("an old peer without bidirectional gets LXD 3.7's rsync features; no common type is LXD's error", () => {
    const old = header({ fs: FS_RSYNC, rsyncFeatures: { xattrs: true } });
    expect(matchTransports(old, poolTransports(undefined, {}))[0].features).toEqual(["xattrs", "delete", "compress"]);
    expect(() => matchTransports(header({ fs: 2 }), [{ fs: FS_BTRFS, features: [] }])).toThrow("No matching migration types found. Offered types: [ZFS RSYNC], our types: [BTRFS]");
  });
});

describe("transport negotiation for custom block volumes (LXD's BLOCK_AND_RSYNC)", () => {
  const RSYNC_FEATURES = { xattrs: true, delete: true, compress: true, bidirectional: true };

  it("a pool offers BLOCK_AND_RSYNC for block content (after BTRFS on btrfs), with the rsync features", () => {
    expect(poolTransports(undefined, {}, "block").map((t) => t.fs)).toEqual([FS_BLOCK_AND_RSYNC]);
    expect(poolTransports("btrfs", {}, "block").map((t) => t.fs)).toEqual([FS_BTRFS, FS_BLOCK_AND_RSYNC]);
    expect(transportsHeader(poolTransports(undefined, {}, "block"))).toEqual({ fs: FS_BLOCK_AND_RSYNC, rsyncFeatures: RSYNC_FEATURES });
  });

  it("LXD's offer from a dir pool is answered BLOCK_AND_RSYNC; from btrfs, a dir target falls back to it", () => {
    const fromDir = targetAnswer(header({ fs: FS_BLOCK_AND_RSYNC, rsyncFeatures: RSYNC_FEATURES }), poolTransports(undefined, {}, "block"), false);
    expect([fromDir.transport.fs, fromDir.fields.fs]).toEqual([FS_BLOCK_AND_RSYNC, FS_BLOCK_AND_RSYNC]);
    const fromBtrfs = targetAnswer({ ...LXD_BTRFS_OFFER }, poolTransports(undefined, {}, "block"), false);
    expect(fromBtrfs.transport.fs).toBe(FS_BLOCK_AND_RSYNC);
    // Whatever the peer offers, the block fallback matches (LXD's FallbackMigrationType for block content).
    expect(matchTransports(header({ fs: 2, rsyncFeatures: RSYNC_FEATURES }), poolTransports(undefined, {}, "block")).map((t) => t.fs)).toEqual([FS_BLOCK_AND_RSYNC]);
    // A filesystem pool's transports never match a block offer (no RSYNC for block content).
    expect(() => matchTransports(header({ fs: FS_BLOCK_AND_RSYNC }), [{ fs: FS_BTRFS, features: [] }])).toThrow("No matching migration types found. Offered types: [BLOCK_AND_RSYNC RSYNC], our types: [BTRFS]");
  });
});

describe("btrfs subvolume lists", () => {
  const entry = (snapshot: string, path = "/") => ({ path, snapshot, readonly: snapshot !== "", uuid: "0f0e1d2c-3b4a-5968-7766-554433221100" });

  it("takes exactly the expected snapshots and the volume, in stream order", () => {
    expect(checkSubvolumes([entry("s0"), entry("s1"), entry("")], ["s0", "s1"]).map((s) => s.snapshot)).toEqual(["s0", "s1", ""]);
  });

  it("refuses extra, missing, repeated and nested subvolumes", () => {
    expect(() => checkSubvolumes([entry("s0"), entry("evil"), entry("")], ["s0"])).toThrow('Unexpected subvolume for snapshot "evil"');
    expect(() => checkSubvolumes([entry("")], ["s0"])).toThrow('Snapshot "s0" is not listed once');
    expect(() => checkSubvolumes([entry("s0"), entry(""), entry("")], ["s0"])).toThrow("The volume is not listed once");
    expect(() => checkSubvolumes([entry("s0"), entry("", "/var/lib/machines")], ["s0"])).toThrow("Subvolumes detected in source but target does not support receiving subvolumes");
    expect(() => checkSubvolumes("nope", [])).toThrow("no subvolumes list");
  });

  it("writes the optimized backup header as LXD's YAML (subvolumes: path, snapshot, readonly, uuid)", () => {
    const list = [entry("s0"), entry("")];
    expect(YAML.parse(headerYaml(list))).toEqual({ subvolumes: list });
    expect(checkSubvolumes(YAML.parse(headerYaml(list)).subvolumes, ["s0"])).toEqual(list);
  });
});

describe("nodelxd peers' rsync negotiation", () => {
  const RSYNC_OFFER = header({ fs: FS_RSYNC, rsyncFeatures: { xattrs: true, delete: true, compress: true, bidirectional: true } });
  const local = { rsync: [NODELXD_RSYNC_NEGOTIATE] };

  it("an LXD source (no extension) gets LXD's answer and the fixed protocol-30 transfer", () => {
    const a = targetAnswer(RSYNC_OFFER, poolTransports(undefined, {}), false, local);
    expect(a.negotiate).toBe(false);
    expect(a.fields).toEqual({ fs: FS_RSYNC, rsyncFeatures: { xattrs: true, delete: true, compress: true, bidirectional: true } });
    expect(a.rsync).toEqual(["xattrs", "delete", "compress", "bidirectional"]);
  });

  it("a nodelxd source whose rsync negotiates is answered with the extension and negotiates", () => {
    const a = targetAnswer({ ...RSYNC_OFFER, nodelxd: { rsync: [NODELXD_RSYNC_NEGOTIATE] } }, poolTransports(undefined, {}), false, local);
    expect(a.negotiate).toBe(true);
    expect(a.fields.nodelxd).toEqual({ rsync: [NODELXD_RSYNC_NEGOTIATE] });
    // The LXD fields and the rsync features (so --compress and friends) are the same either way.
    expect(a.rsync).toEqual(["xattrs", "delete", "compress", "bidirectional"]);
  });

  it("not when either rsync is too old, nor when the transfer goes by btrfs send", () => {
    expect(targetAnswer({ ...RSYNC_OFFER, nodelxd: { rsync: [] } }, poolTransports(undefined, {}), false, local).negotiate).toBe(false);
    const oldHere = targetAnswer({ ...RSYNC_OFFER, nodelxd: { rsync: [NODELXD_RSYNC_NEGOTIATE] } }, poolTransports(undefined, {}), false, { rsync: [] });
    expect(oldHere.negotiate).toBe(false);
    expect(oldHere.fields.nodelxd).toEqual({ rsync: [] });
    expect(targetAnswer({ ...LXD_BTRFS_OFFER, nodelxd: { rsync: [NODELXD_RSYNC_NEGOTIATE] } }, poolTransports("btrfs", {}), false, local).negotiate).toBe(false);
  });

  it("progress is reported at most once per interval", () => {
    const seen: unknown[] = [];
    let t = 0;
    const progress = progressEvery(1000, (m) => seen.push(m), () => t)("c1");
    for (let n = 1; n <= 100; n++) {
      t = n * 50;
      progress(n * 65536);
    }
    // 100 chunks over 5 s: at 50 ms, then 1.05 s, 2.05 s, 3.05 s and 4.05 s.
    expect(seen).toEqual([1, 21, 41, 61, 81].map((n) => ({ fs_progress: `c1: ${n * 65536} bytes` })));
  });
});
