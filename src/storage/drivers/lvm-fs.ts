// Filesystems on block volumes (lvm): made at a volume's first activation, grown online with
// the volume, shrunk (ext4 only) before it. Mount options and tools as upstream.
import { run } from "../../os/exec.js";
import { isSnapshotVolume, type SlowOpts, type Volume } from "./types.js";

/** A block volume's filesystem: its own, else the pool's volume.block.filesystem, else ext4. */
export function blockFilesystem(vol: Volume, poolConfig: Record<string, string>): string {
  return vol.config["block.filesystem"] || poolConfig["volume.block.filesystem"] || "ext4";
}

/** The options a block volume is mounted with (snapshots read-only, without journal replay). */
export function blockMountOptions(vol: Volume, poolConfig: Record<string, string>): string {
  const opts = vol.config["block.mount_options"] || poolConfig["volume.block.mount_options"] || "discard";
  if (!isSnapshotVolume(vol)) return opts;
  // Snapshots are read-only devices: no journal replay, and xfs copies share their uuid.
  const fs = blockFilesystem(vol, poolConfig);
  return ["ro", opts, fs === "ext4" ? "noload" : fs === "xfs" ? "nouuid,norecovery" : ""].filter(Boolean).join(",");
}

/** mkfs as upstream runs it for each filesystem block volumes may hold. */
export async function formatVolume(dev: string, fs: string, opts: SlowOpts = {}): Promise<void> {
  const o = { signal: opts.signal };
  if (fs === "ext4") await run("mkfs.ext4", ["-q", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", dev], o);
  else if (fs === "xfs") await run("mkfs.xfs", ["-q", "-f", dev], o);
  else if (fs === "btrfs") await run("mkfs.btrfs", ["-q", "-f", dev], o);
  else throw new Error(`Unsupported filesystem "${fs}"`);
}

/** Grow a mounted filesystem to its (already grown) device. */
export async function growFilesystem(fs: string, dev: string, mountPath: string, opts: SlowOpts = {}): Promise<void> {
  if (fs === "ext4") await run("resize2fs", [dev], { signal: opts.signal });
  else if (fs === "xfs") await run("xfs_growfs", [mountPath], { signal: opts.signal });
  else if (fs === "btrfs") await run("btrfs", ["filesystem", "resize", "max", mountPath], { signal: opts.signal });
  else throw new Error(`Unsupported filesystem "${fs}"`);
}

/** Shrink an unmounted ext4 filesystem to `bytes` (checked first, as resize2fs requires). */
export async function shrinkFilesystem(dev: string, bytes: number, opts: SlowOpts = {}): Promise<void> {
  const fsck = await run("e2fsck", ["-f", "-y", dev], { signal: opts.signal, reject: false });
  // Exit 1 means errors were corrected; anything above is a failure.
  if (fsck.exitCode > 1) throw new Error(`Failed to check filesystem on "${dev}": ${fsck.stderr.trim() || fsck.stdout.trim()}`);
  await run("resize2fs", [dev, `${Math.floor(bytes / 1024)}K`], { signal: opts.signal });
}
