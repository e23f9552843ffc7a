// rsync over a migration websocket, as LXD runs it (lxd/rsync/rsync.go). The sending side
// runs `rsync -ar ... PATH localhost:/tmp/foo -e CMD` whose remote shell CMD (`nodelxd-rsync
// relay`, native/rsync.c) relays through a socket the daemon holds; the receiving side runs
// `rsync --server` on the stream. The receiver runs chrooted into a private mount namespace
// that holds only the target directory (at /t) and a read-only /usr (`nodelxd-rsync jail`):
// whatever the peer's file list says, links it makes and follows can reach nothing of the host.
// Both are started with posix_spawn (HelperProcess), not by forking the daemon.
import type { Readable, Writable } from "node:stream";
import { lstat, readdir, utimes } from "node:fs/promises";
import { join } from "node:path";
import { whichOnPath } from "../os/exec.js";
import { HelperProcess } from "../os/helper-process.js";
import { helperPath } from "../os/native.js";
import { rsyncFeatureArgs } from "../storage/rsync.js";
import type { MigrationChannel } from "./ws-io.js";

const ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };

export interface RsyncStreamOpts {
  features: readonly string[];
  bwlimit?: string;
  /** Receiver: let the sender's rsync negotiate checksum and compression (a nodelxd peer, rsync 3.2+ on both ends). */
  negotiate?: boolean;
  signal?: AbortSignal;
  /** Bytes moved so far (progress). */
  progress?: (bytes: number) => void;
}

/** Run `child` with its byte streams joined to the peer's; throws `failure` (exit code, 128 + n for signal n) if it fails. */
async function relayed(child: HelperProcess, ch: MigrationChannel, fromChild: Readable, toChild: Writable, opts: RsyncStreamOpts, failure: (code: number, stderr: string) => Error): Promise<void> {
  let err = "";
  child.stderr!.on("data", (c: Buffer) => (err = (err + c.toString()).slice(-4096)));
  const stderrDone = new Promise<void>((r) => (child.stderr!.once("close", () => r()), child.stderr!.once("error", () => r())));
  const kill = () => child.kill("SIGKILL");
  opts.signal?.addEventListener("abort", kill, { once: true });
  // A failed rsync fails the stream at once (its peer may never end its side), with all it said.
  const exited = child.exited.then(async ({ code, signal }) => {
    const c = code ?? (signal !== null ? 128 + signal : -1);
    await Promise.race([stderrDone, new Promise((r) => setTimeout(r, 1000).unref())]);
    if (c !== 0) throw failure(c, err.trim());
  });
  try {
    await Promise.all([exited, ch.sendStream(fromChild, opts.progress), ch.pipeStreamTo(toChild)]);
  } catch (e) {
    kill();
    throw e;
  } finally {
    opts.signal?.removeEventListener("abort", kill);
    for (const s of child.stdio) s?.destroy();
  }
}

function rsyncBinary(): string {
  const path = whichOnPath("rsync");
  if (!path) throw new Error("rsync isn't installed");
  return path;
}

/** Send the tree at `path` as one rsync stream. */
export async function rsyncSend(name: string, path: string, ch: MigrationChannel, opts: RsyncStreamOpts): Promise<void> {
  const src = path.endsWith("/") ? path : `${path}/`;
  const relay = helperPath("nodelxd-rsync");
  // rsync splits -e on blanks itself (no shell): the helper's path is one word.
  if (/[\s'"\\]/.test(relay)) throw new Error(`Unusable rsync relay path "${relay}"`);
  // --blocking-io: rsync hands the relay blocking descriptors, as to a remote shell.
  const args = ["-ar", "--blocking-io", "--devices", "--numeric-ids", "--partial", "--sparse"];
  if (opts.bwlimit) args.push("--bwlimit", opts.bwlimit);
  args.push(...rsyncFeatureArgs(opts.features), "-e", `${relay} relay`, "--", src, "localhost:/tmp/foo");
  // fd 3: the relay's socket to us (rsync passes it on to its remote shell).
  const child = new HelperProcess(rsyncBinary(), "rsync", args, ["ignore", "ignore", "pipe", "pipe"], { env: ENV });
  const peer = child.stdio[3]!;
  await relayed(child, ch, peer, peer, opts, (code, err) => new Error(`Rsync send failed: ${name}, ${path}: exit status ${code} (${err})`));
}

/** Receive one rsync stream into `path` (an existing directory), confined to it. */
export async function rsyncRecv(path: string, jailRoot: string, ch: MigrationChannel, opts: RsyncStreamOpts): Promise<void> {
  // LXD's receiver tells rsync the client has protocol 30's capabilities only (`.iLsfx`: md5 and
  // zlib); a nodelxd sender's rsync also has checksum seed fix, inplace-partial, negotiated
  // strings and id-0 names (`CIvu`, what rsync 3.2+ clients send).
  const rsyncArgs = ["--server", opts.negotiate ? "-vlogDtpre.iLsfxCIvu" : "-vlogDtpre.iLsfx", "--numeric-ids", "--devices", "--partial", "--sparse", ...rsyncFeatureArgs(opts.features), ".", "/t/"];
  const child = new HelperProcess(helperPath("nodelxd-rsync"), "nodelxd-rsync", ["jail", jailRoot, path, ...rsyncArgs], ["pipe", "pipe", "pipe"], { env: ENV });
  await relayed(child, ch, child.stdout!, child.stdin!, opts, (code, err) => new Error(`Rsync receive failed: ${path}: exit status ${code} (${err})`));
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
