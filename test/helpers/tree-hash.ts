// A digest of a directory tree (below its root): every entry's path, type, mode, owner (by number), link target
// and file content. Two trees with the same digest hold the same files with the same ownership.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";

export function treeHash(dir: string): string {
  const meta = spawnSync("find", [".", "-printf", "%p\\0%y\\0%m\\0%U\\0%G\\0%l\\0%s\\n"], { cwd: dir, maxBuffer: 1 << 28 });
  if (meta.status !== 0) throw new Error(`find in ${dir} failed: ${meta.stderr}`);
  // A directory's size is the filesystem's business (ext4 and btrfs differ): files' only.
  const lines = meta.stdout
    .toString("utf8")
    .split("\n")
    .filter(Boolean)
    // The volume directory itself: its mode and owner are the daemon's lock (0100, the container's
    // root while it runs), not content.
    .filter((l) => !l.startsWith(".\0"))
    .map((l) => (l.split("\0")[1] === "f" ? l : l.slice(0, l.lastIndexOf("\0"))))
    .sort();
  const files = spawnSync("sh", ["-c", "find . -type f -print0 | sort -z | xargs -0r sha256sum"], { cwd: dir, maxBuffer: 1 << 28 });
  if (files.status !== 0) throw new Error(`hashing files in ${dir} failed: ${files.stderr}`);
  return createHash("sha256").update(lines.join("\n")).update("\0").update(files.stdout).digest("hex");
}
