// rsync over a migration websocket, as LXD runs it (lxd/rsync/rsync.go). The sending side
// runs `rsync -ar ... PATH localhost:/tmp/foo -e CMD` whose remote shell CMD relays through
// two descriptors the daemon holds; the receiving side runs `rsync --server` on the stream.
// The receiver runs chrooted into a private mount namespace that holds only the target
// directory (at /t) and a read-only /usr: whatever the peer's file list says, links it
// makes and follows can reach nothing of the host.
import { spawn } from "node:child_process";
import { lstat, readdir, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { rsyncFeatureArgs } from "../storage/rsync.js";
import type { MigrationChannel } from "./ws-io.js";

/** The remote shell (a background job's stdin would be /dev/null, hence fd 5): fd 3 carries the peer's bytes to rsync (and ends it when the peer's stream ends, as LXD's netcat), fd 4 rsync's bytes to the peer. */
const RELAY = "sh -c 'exec 5<&0; cat <&5 >&4 & exec cat <&3 5<&-'";

/** Builds the receiver's jail in a new mount namespace, then runs rsync in it. Paths are positional, never interpolated. */
const JAIL = [
  "set -e",
  'root=$1; target=$2; shift 2',
  'mount -t tmpfs -o mode=0755,size=1m nodelxd-rsync "$root"',
  'mkdir "$root/usr" "$root/t"',
  'mount --bind /usr "$root/usr"',
  'mount -o remount,bind,ro,nosuid,nodev "$root/usr"',
  'mount --bind "$target" "$root/t"',
  'for d in bin lib lib64 sbin; do [ -e "/usr/$d" ] && ln -s "usr/$d" "$root/$d"; done',
  'exec chroot "$root" rsync "$@"',
].join("\n");

export interface RsyncStreamOpts {
  features: readonly string[];
  bwlimit?: string;
  signal?: AbortSignal;
  /** Bytes moved so far (progress). */
  progress?: (bytes: number) => void;
}

/** Relay `from` to the peer as one stream. */
function pumpOut(from: Readable, ch: MigrationChannel, progress?: (n: number) => void): Promise<void> {
  return ch.sendStream(from, progress);
}

/** Copy the peer's stream (to its barrier) into `to`; keep reading to the barrier even if `to` is gone. */
async function pumpIn(ch: MigrationChannel, to: Writable): Promise<void> {
  let broken = false;
  to.on("error", () => (broken = true));
  for await (const chunk of ch.readStream()) {
    if (broken || to.destroyed) continue;
    if (!to.write(chunk)) await new Promise<void>((r) => (to.once("drain", r), to.once("close", r)));
  }
  to.end();
}

function waitExit(child: import("node:child_process").ChildProcess, stderr: () => string): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, sig) => resolve(code ?? (sig ? 128 : -1)));
  }).then((c) => {
    void stderr;
    return c as number;
  });
}

/** Send the tree at `path` as one rsync stream. */
export async function rsyncSend(name: string, path: string, ch: MigrationChannel, opts: RsyncStreamOpts): Promise<void> {
  const src = path.endsWith("/") ? path : `${path}/`;
  // --blocking-io: rsync hands the relay a blocking stdout; otherwise the relay's `cat` gets
  // EAGAIN (and dies, cutting the stream) whenever rsync is slower to read than the peer sends.
  const args = ["-ar", "--blocking-io", "--devices", "--numeric-ids", "--partial", "--sparse"];
  if (opts.bwlimit) args.push("--bwlimit", opts.bwlimit);
  args.push(...rsyncFeatureArgs(opts.features), "-e", RELAY, "--", src, "localhost:/tmp/foo");
  const child = spawn("rsync", args, { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (c: Buffer) => (err = (err + c.toString()).slice(-4096)));
  const kill = () => child.kill("SIGKILL");
  opts.signal?.addEventListener("abort", kill, { once: true });
  const toRsync = child.stdio[3] as Writable;
  const fromRsync = child.stdio[4] as Readable;
  try {
    const [code] = await Promise.all([waitExit(child, () => err), pumpOut(fromRsync, ch, opts.progress), pumpIn(ch, toRsync)]);
    if (code !== 0) throw new Error(`Rsync send failed: ${name}, ${path}: exit status ${code} (${err.trim()})`);
  } catch (e) {
    kill();
    throw e;
  } finally {
    opts.signal?.removeEventListener("abort", kill);
  }
}

/** Receive one rsync stream into `path` (an existing directory), confined to it. */
export async function rsyncRecv(path: string, jailRoot: string, ch: MigrationChannel, opts: RsyncStreamOpts): Promise<void> {
  const rsyncArgs = ["--server", "-vlogDtpre.iLsfx", "--numeric-ids", "--devices", "--partial", "--sparse", ...rsyncFeatureArgs(opts.features), ".", "/t/"];
  const child = spawn("unshare", ["--mount", "--propagation", "private", "--", "sh", "-c", JAIL, "sh", jailRoot, path, ...rsyncArgs], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
  });
  let err = "";
  child.stderr!.on("data", (c: Buffer) => (err = (err + c.toString()).slice(-4096)));
  const kill = () => child.kill("SIGKILL");
  opts.signal?.addEventListener("abort", kill, { once: true });
  try {
    const [code] = await Promise.all([waitExit(child, () => err), pumpOut(child.stdout!, ch), pumpIn(ch, child.stdin!)]);
    if (code !== 0) throw new Error(`Rsync receive failed: ${path}: exit status ${code} (${err.trim()})`);
  } catch (e) {
    kill();
    throw e;
  } finally {
    opts.signal?.removeEventListener("abort", kill);
  }
}

/**
 * After snapshot passes left their content in the volume, make regular files' mtimes stale so
 * the volume's own pass compares them: a file changed after the last snapshot within the same
 * second and at the same size would otherwise pass rsync's size-and-mtime quick check and keep
 * the snapshot's content. Works whatever the sending peer's rsync options are. With `sinceSec`
 * (the last snapshot's creation second, on the source's clock like the mtimes) only files
 * modified in or after that second can be such a file; older ones keep their mtime and are
 * skipped by the quick check (a full content compare of every file doubled big copies).
 */
export async function invalidateQuickCheck(dir: string, sinceSec?: number): Promise<void> {
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && (sinceSec === undefined || Math.floor((await lstat(p)).mtimeMs / 1000) >= sinceSec)) await utimes(p, 0, 0);
    }
  };
  await walk(dir);
}
