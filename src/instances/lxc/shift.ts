// Shift a rootfs's ownership from one id map to another by walking it with lchown.
// chown clears setuid/setgid bits, so the mode is restored afterwards for non-symlinks.
// The walk uses synchronous calls (microseconds each, no thread-pool round trip per file) in
// slices of a few hundred entries, yielding to the event loop between slices.
import { chmodSync, lchownSync, lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import { remapId, type IdmapEntry } from "../idmap.js";

const SLICE = 256;

export async function shiftTree(root: string, from: IdmapEntry[], to: IdmapEntry[], signal?: AbortSignal): Promise<number> {
  let count = 0;
  const pending = [root];
  while (pending.length > 0) {
    signal?.throwIfAborted();
    for (let n = 0; n < SLICE && pending.length > 0; n++) {
      const path = pending.pop()!;
      const st = lstatSync(path);
      const uid = remapId(from, to, "uid", st.uid);
      const gid = remapId(from, to, "gid", st.gid);
      if (uid !== st.uid || gid !== st.gid) {
        lchownSync(path, uid, gid);
        if (!st.isSymbolicLink() && st.mode & 0o6000) chmodSync(path, st.mode & 0o7777);
        count++;
      }
      if (st.isDirectory()) for (const name of readdirSync(path)) pending.push(join(path, name));
    }
    if (pending.length > 0) await nextTurn();
  }
  return count;
}
