// Raw disks of custom block volumes, as LXD 5.0.2 keeps them (lxd/storage/drivers/utils.go):
// sizes rounded up to 8KiB, 10GiB when no size is set, sparse files on dir and btrfs, grown
// but never shrunk, copied with dd.
import { constants } from "node:fs";
import { open, stat } from "node:fs/promises";
import { run } from "../os/exec.js";
import { parseByteSize } from "../shared/units.js";

/** The disk file inside a dir or btrfs block volume (LXD's genericVolumeDiskFile). */
export const BLOCK_DISK_FILE = "root.img";

/** LXD's defaultBlockSize: the size of a block volume whose config (and pool) sets none. */
export const DEFAULT_BLOCK_SIZE = "10GiB";

/** LXD's MinBlockBoundary: block disks are whole multiples of 8KiB (QEMU's boundary). */
export const MIN_BLOCK_BOUNDARY = 8192;

/** The error LXD gives for a smaller size on a block volume. */
export class CannotBeShrunk extends Error {
  constructor() {
    super("Block volumes cannot be shrunk: Cannot be shrunk");
  }
}

/** LXD's roundVolumeBlockSizeBytes: at least 8KiB, rounded up to a multiple of 8KiB. */
export function roundBlockSize(bytes: number): number {
  const b = Math.max(bytes, MIN_BLOCK_BOUNDARY);
  return Math.ceil(b / MIN_BLOCK_BOUNDARY) * MIN_BLOCK_BOUNDARY;
}

/** A block volume's disk size from its config (LXD's Volume.ConfigSize for block content), rounded. */
export function blockSizeOf(config: Record<string, string>): number {
  const size = config.size && config.size !== "0" ? config.size : DEFAULT_BLOCK_SIZE;
  return roundBlockSize(parseByteSize(size));
}

/** Bytes of a raw disk: a regular file's length, or a block device's size (LXD's BlockDiskSizeBytes). */
export async function diskSize(path: string): Promise<number> {
  const st = await stat(path);
  if (!st.isBlockDevice()) return st.size;
  const out = await run("blockdev", ["--getsize64", path]);
  return Number(out.stdout.trim());
}

/** Truncate (or create) a sparse file to `bytes` (LXD's ensureSparseFile). */
export async function sparseFile(path: string, bytes: number): Promise<void> {
  const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    await fh.truncate(bytes);
  } finally {
    await fh.close();
  }
}

/**
 * LXD's ensureVolumeBlockFile for a file disk: create it at `bytes` (rounded), or grow it;
 * a smaller size is refused. Returns whether an existing disk changed size.
 */
export async function ensureBlockFile(path: string, bytes: number): Promise<boolean> {
  if (bytes <= 0) throw new Error("Size cannot be zero");
  const want = roundBlockSize(bytes);
  const current = await stat(path).then(
    (s) => s.size,
    (e) => (e.code === "ENOENT" ? undefined : Promise.reject(e)),
  );
  if (current === want) return false;
  if (current !== undefined && want < current) throw new CannotBeShrunk();
  await sparseFile(path, want);
  return current !== undefined;
}

/**
 * Copy the raw disk `from` (file or device) onto `to` (an existing file or device): a file
 * target is emptied first and written sparse, so it ends as long as `from` with its holes; a
 * device is written in place (every block, as LXD's copyDevice).
 */
export async function copyDisk(from: string, to: string, signal?: AbortSignal): Promise<void> {
  const target = await stat(to);
  if (target.isBlockDevice()) {
    await run("dd", [`if=${from}`, `of=${to}`, "bs=16M", "conv=nocreat,notrunc", "status=none"], { signal });
    return;
  }
  await sparseFile(to, 0);
  await run("dd", [`if=${from}`, `of=${to}`, "bs=1M", "conv=nocreat,notrunc,sparse", "status=none"], { signal });
  // dd seeks over a trailing run of zeros without writing it: the file gets the source's length.
  const size = await diskSize(from);
  if ((await stat(to)).size < size) await sparseFile(to, size);
}

/** A copy of the raw disk `from` as the new file `target` (exportVolume of a block volume). */
export async function exportDisk(from: string, target: string, signal?: AbortSignal): Promise<void> {
  await sparseFile(target, 0);
  await copyDisk(from, target, signal);
}

/** A device-backed block volume's disk copied out to `target`; the device activated for it is released after. */
export async function exportDeviceDisk<V>(driver: { diskPath(vol: V, opts: { signal?: AbortSignal }): Promise<string>; unmountVolume(vol: V): Promise<unknown> }, vol: V, target: string, opts: { signal?: AbortSignal }): Promise<void> {
  try {
    await exportDisk(await driver.diskPath(vol, opts), target, opts.signal);
  } finally {
    await driver.unmountVolume(vol).catch(() => {});
  }
}
