// Shift a rootfs's ownership from one id map to another by walking it with lchown.
// chown clears setuid/setgid bits, so the mode is restored afterwards for non-symlinks.
import { lchown, lstat, readdir, chmod } from "node:fs/promises";
import { join } from "node:path";
import { remapId, type IdmapEntry } from "../idmap.js";

export async function shiftTree(root: string, from: IdmapEntry[], to: IdmapEntry[], signal?: AbortSignal): Promise<number> {
  let count = 0;
  const visit = async (path: string): Promise<void> => {
    signal?.throwIfAborted();
    const st = await lstat(path);
    const uid = remapId(from, to, "uid", st.uid);
    const gid = remapId(from, to, "gid", st.gid);
    if (uid !== st.uid || gid !== st.gid) {
      await lchown(path, uid, gid);
      if (!st.isSymbolicLink() && st.mode & 0o6000) await chmod(path, st.mode & 0o7777);
      count++;
    }
    if (st.isDirectory()) {
      const entries = await readdir(path);
      for (let i = 0; i < entries.length; i += 32) await Promise.all(entries.slice(i, i + 32).map((e) => visit(join(path, e))));
    }
  };
  await visit(root);
  return count;
}
