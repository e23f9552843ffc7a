// A block volume's raw disk over a migration websocket, as LXD's BLOCK_AND_RSYNC transport
// sends custom block volumes (genericVFSMigrateVolume's sendBlockVol / recvBlockVol): the
// disk's bytes as one stream, ended by the barrier. The receiver writes them over the
// target's disk: a file target is emptied first and keeps the holes (all-zero chunks are
// skipped, then the file is set to the received length), a device is written whole.
import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import type { MigrationChannel } from "./ws-io.js";

/** Send the raw disk at `path` as one stream. */
export async function sendDisk(path: string, ch: MigrationChannel, progress?: (bytes: number) => void): Promise<void> {
  await ch.sendStream(createReadStream(path, { highWaterMark: 1 << 20 }), progress);
}

const isZero = (b: Buffer): boolean => {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
};

/** Receive one stream onto the raw disk at `path` (an existing file or device). */
export async function recvDisk(path: string, ch: MigrationChannel, opts: { limit?: number; progress?: (bytes: number) => void } = {}): Promise<void> {
  const device = (await stat(path)).isBlockDevice();
  const fh = await open(path, device ? "r+" : "w");
  try {
    let pos = 0;
    for await (const chunk of ch.readStream(opts.limit)) {
      const buf = chunk as Buffer;
      if (device || !isZero(buf)) await fh.write(buf, 0, buf.length, pos);
      pos += buf.length;
      opts.progress?.(pos);
    }
    if (!device) await fh.truncate(pos);
  } finally {
    await fh.close();
  }
}
