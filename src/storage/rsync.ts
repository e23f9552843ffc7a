// rsync as LXD runs it for storage copies (lxd/rsync/rsync.go): a local copy that makes the
// target an exact copy of the source, and the flags of the migration transfer.
import { mkdir } from "node:fs/promises";
import { run } from "../os/exec.js";

/** Features a migration peer may offer in MigrationHeader.rsyncFeatures, as LXD names them. */
export const RSYNC_FEATURES = ["xattrs", "delete", "compress", "bidirectional"] as const;

/** The rsync arguments for the negotiated features (LXD's rsyncFeatureArgs; rsync here is ≥ 3.1.3). */
export function rsyncFeatureArgs(features: readonly string[]): string[] {
  const args: string[] = [];
  if (features.includes("xattrs")) args.push("--xattrs", "--filter=-x security.selinux");
  if (features.includes("delete")) args.push("--delete");
  if (features.includes("compress")) args.push("--compress", "--compress-level=2");
  return args;
}

/** rsync.bwlimit as rsync takes it: a plain number or a size with a unit; anything else is refused. */
export function checkBwlimit(bwlimit: string): string {
  if (!/^\d+(\.\d+)?[KMGTkmgt]?[Bb]?$/.test(bwlimit)) throw new Error(`Invalid rsync.bwlimit "${bwlimit}"`);
  return bwlimit;
}

/**
 * Make `dest` an exact copy of the tree at `source` (LXD's LocalCopy): ownership by number,
 * modes, ACLs, xattrs, hard links, devices and sparse files; entries not in `source` removed.
 * Exit 24 (files vanished while copying) is not an error, as upstream.
 */
export async function localCopy(source: string, dest: string, opts: { bwlimit?: string; signal?: AbortSignal } = {}): Promise<void> {
  await mkdir(dest, { recursive: true, mode: 0o755 });
  const args = ["-a", "-HA", "--sparse", "--devices", "--delete", "--checksum", "--numeric-ids", "--xattrs", "--filter=-x security.selinux"];
  if (opts.bwlimit) args.push("--bwlimit", checkBwlimit(opts.bwlimit));
  args.push("-q", "--", source.endsWith("/") ? source : `${source}/`, dest);
  const res = await run("rsync", args, { signal: opts.signal, reject: false });
  if (res.exitCode !== 0 && res.exitCode !== 24) throw new Error(`Failed to rsync: exit status ${res.exitCode}: ${res.stderr.trim()}`);
}

let negotiates: Promise<boolean> | undefined;

/**
 * Whether this host's rsync negotiates its checksum and compression with its peer (3.2.0 and
 * later: xxh128 and zstd where both ends have them, instead of protocol 30's md5 and zlib).
 * Asked once per daemon.
 */
export function rsyncNegotiates(): Promise<boolean> {
  negotiates ??= run("rsync", ["--version"], { reject: false }).then(
    (r) => {
      const m = /version\s+(\d+)\.(\d+)/.exec(r.stdout);
      return !!m && (Number(m[1]) > 3 || (Number(m[1]) === 3 && Number(m[2]) >= 2));
    },
    () => false,
  );
  return negotiates;
}
