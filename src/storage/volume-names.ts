// Names in the storage API: what a request may call a pool or a volume, the volume types, and
// the name a volume has on disk.
import { BadRequest } from "../shared/errors.js";
import { VOLUME_TYPES, type VolumeType } from "./drivers/types.js";

/** On-disk name of a volume, as upstream: instances "<project>_<name>" outside the default project, custom volumes always prefixed. */
export function storageName(project: string, type: string, name: string): string {
  if (type === "image") return name;
  if (type === "custom" || project !== "default") return `${project}_${name}`;
  return name;
}

/** A snapshot volume is named "<parent>/<snapshot>". */
export const isSnapshotName = (name: string): boolean => name.includes("/");

export function validatePoolName(name: string): void {
  if (name === "") throw new BadRequest("No name provided");
  if (name.includes("/")) throw new BadRequest("Storage pool names may not contain slashes");
  if (/\s/.test(name)) throw new BadRequest("Storage name cannot contain white space");
  if (name === "." || name === ".." || name.includes("\0")) throw new BadRequest(`Invalid storage pool name "${name}"`);
}

export function validateVolumeName(name: string): void {
  if (name === "") throw new BadRequest("No name provided");
  if (name.includes("/")) throw new BadRequest("Storage volume names may not contain slashes");
  if (name === "." || name === ".." || name.includes("\0")) throw new BadRequest(`Invalid storage volume name "${name}"`);
}

export function assertVolumeType(type: string): asserts type is VolumeType {
  if (!(VOLUME_TYPES as readonly string[]).includes(type)) throw new BadRequest("Invalid storage volume type name");
}
