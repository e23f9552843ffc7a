// Idmapped mounts (LXD's IdmappedStorage without the shiftfs fallback): liblxc must know
// `idmap=container` mount entries and the kernel must idmap a mount of the filesystem in
// question; the answer is kept per filesystem, as LXD keeps it per fsid.
import { statSync } from "node:fs";
import { native } from "./native.js";

const byDevice = new Map<number, boolean>();
let liblxc: boolean | undefined;

/** LXD_IDMAPPED_MOUNTS_DISABLE=true turns idmapped mounts off, as in LXD. */
export function idmappedMountsDisabled(): boolean {
  return ["1", "true", "yes", "on"].includes((process.env.LXD_IDMAPPED_MOUNTS_DISABLE ?? "").toLowerCase());
}

/** Whether a mount of `path`'s filesystem can be idmapped into a container here. */
export function canIdmapMount(path: string): boolean {
  if (idmappedMountsDisabled()) return false;
  liblxc ??= native.liblxcHasExtension("idmapped_mounts_v2");
  if (!liblxc) return false;
  const dev = statSync(path).dev;
  let ok = byDevice.get(dev);
  if (ok === undefined) {
    ok = native.idmapMountError(path) === "";
    byDevice.set(dev, ok);
  }
  return ok;
}
