// The control channel's messages (LXD 5.0.2 lxd/migration/migrate.proto, proto2), encoded
// with protobufjs. Each message travels as one binary websocket message.
import { createRequire } from "node:module";
import type { Type } from "protobufjs";

const SCHEMA = `
syntax = "proto2";
package migration;
enum MigrationFSType { RSYNC = 0; BTRFS = 1; ZFS = 2; RBD = 3; BLOCK_AND_RSYNC = 4; }
enum CRIUType { CRIU_RSYNC = 0; PHAUL = 1; NONE = 2; }
message IDMapType { required bool isuid = 1; required bool isgid = 2; required int32 hostid = 3; required int32 nsid = 4; required int32 maprange = 5; }
message Config { required string key = 1; required string value = 2; }
message Device { required string name = 1; repeated Config config = 2; }
message Snapshot {
  required string name = 1; repeated Config localConfig = 2; repeated string profiles = 3; required bool ephemeral = 4;
  repeated Device localDevices = 5; required int32 architecture = 6; required bool stateful = 7;
  optional int64 creation_date = 8; optional int64 last_used_date = 9; optional int64 expiry_date = 10;
}
message rsyncFeatures { optional bool xattrs = 1; optional bool delete = 2; optional bool compress = 3; optional bool bidirectional = 4; }
message zfsFeatures { optional bool compress = 1; optional bool migration_header = 2; }
message btrfsFeatures { optional bool migration_header = 1; optional bool header_subvolumes = 2; optional bool header_subvolume_uuids = 3; }
message NodelxdFeatures { repeated string rsync = 1; }
message MigrationHeader {
  required MigrationFSType fs = 1; optional CRIUType criu = 2; repeated IDMapType idmap = 3; repeated string snapshotNames = 4;
  repeated Snapshot snapshots = 5; optional bool predump = 7; optional rsyncFeatures rsyncFeatures = 8; optional bool refresh = 9;
  optional zfsFeatures zfsFeatures = 10; optional int64 volumeSize = 11; optional btrfsFeatures btrfsFeatures = 12;
  optional uint32 indexHeaderVersion = 13;
  optional NodelxdFeatures nodelxd = 4450;
}
message MigrationControl { required bool success = 1; optional string message = 2; }
`;

/** protobufjs and the parsed schema are loaded by the first migration, not at daemon start. */
let types: { header: Type; control: Type } | undefined;
function messageTypes(): { header: Type; control: Type } {
  if (!types) {
    const protobuf = createRequire(import.meta.url)("protobufjs") as typeof import("protobufjs");
    const root = protobuf.parse(SCHEMA, { keepCase: true }).root;
    types = { header: root.lookupType("migration.MigrationHeader"), control: root.lookupType("migration.MigrationControl") };
  }
  return types;
}

export const FS_RSYNC = 0;
export const FS_BTRFS = 1;
/** A raw block stream (custom block volumes), rsync for any filesystem part. */
export const FS_BLOCK_AND_RSYNC = 4;
export const INDEX_HEADER_VERSION = 1;

export interface IdmapEntryMsg {
  isuid: boolean;
  isgid: boolean;
  hostid: number;
  nsid: number;
  maprange: number;
}

export interface SnapshotMsg {
  name: string;
  localConfig: { key: string; value: string }[];
  profiles: string[];
  ephemeral: boolean;
  localDevices: { name: string; config: { key: string; value: string }[] }[];
  architecture: number;
  stateful: boolean;
  creation_date?: number;
  last_used_date?: number;
  expiry_date?: number;
}

export interface RsyncFeaturesMsg {
  xattrs?: boolean;
  delete?: boolean;
  compress?: boolean;
  bidirectional?: boolean;
}

export interface MigrationHeader {
  fs: number;
  criu?: number;
  idmap: IdmapEntryMsg[];
  snapshotNames: string[];
  snapshots: SnapshotMsg[];
  predump?: boolean;
  rsyncFeatures?: RsyncFeaturesMsg;
  refresh?: boolean;
  volumeSize?: number;
  btrfsFeatures?: { migration_header?: boolean; header_subvolumes?: boolean; header_subvolume_uuids?: boolean };
  indexHeaderVersion?: number;
  /**
   * nodelxd's own field (number 4450, which LXD's schema does not use: LXD keeps it as an unknown
   * field and ignores it). A peer that sends it is nodelxd; see NODELXD_RSYNC_NEGOTIATE.
   */
  nodelxd?: { rsync?: string[] };
}

export interface MigrationControl {
  success: boolean;
  message?: string;
}

/** Required fields present, recursively, in a decoded message's plain form (absent fields are omitted there). */
function checkRequired(type: protobuf.Type, obj: Record<string, unknown>): void {
  for (const field of type.fieldsArray) {
    const value = obj[field.name];
    if ((field as unknown as { rule?: string }).rule === "required" && value === undefined) throw new Error(`Invalid ${type.name}: missing required '${field.name}'`);
    field.resolve();
    if (value === undefined || !(field.resolvedType && "fieldsArray" in field.resolvedType)) continue;
    for (const v of field.repeated ? (value as Record<string, unknown>[]) : [value as Record<string, unknown>]) checkRequired(field.resolvedType as Type, v);
  }
}

/** Decode and check required fields (protobufjs's reflection decoder does not enforce them). */
function toObject(type: protobuf.Type, buf: Uint8Array) {
  const obj = type.toObject(type.decode(buf), { longs: Number, enums: Number, arrays: false, defaults: false });
  checkRequired(type, obj);
  return obj;
}

export function encodeHeader(h: MigrationHeader): Buffer {
  const err = messageTypes().header.verify(h);
  if (err) throw new Error(`Invalid migration header: ${err}`);
  return Buffer.from(messageTypes().header.encode(messageTypes().header.fromObject(h)).finish());
}

/** Decode a peer's header; throws on malformed or incomplete input (required fields are checked). */
export function decodeHeader(buf: Uint8Array): MigrationHeader {
  const h = toObject(messageTypes().header, buf) as MigrationHeader;
  h.idmap ??= [];
  h.snapshotNames ??= [];
  h.snapshots ??= [];
  return h;
}

export function encodeControl(c: MigrationControl): Buffer {
  return Buffer.from(messageTypes().control.encode(messageTypes().control.fromObject(c)).finish());
}

export function decodeControl(buf: Uint8Array): MigrationControl {
  return toObject(messageTypes().control, buf) as MigrationControl;
}

/** The rsync features a header offers, as LXD lists them (GetRsyncFeaturesSlice). */
export function rsyncFeaturesOf(h: MigrationHeader): string[] {
  const f = h.rsyncFeatures ?? {};
  return (["xattrs", "delete", "compress", "bidirectional"] as const).filter((k) => f[k]);
}

export function rsyncFeaturesMsg(features: readonly string[]): RsyncFeaturesMsg {
  return { xattrs: features.includes("xattrs"), delete: features.includes("delete"), compress: features.includes("compress"), bidirectional: features.includes("bidirectional") };
}
