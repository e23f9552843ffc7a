// Reading image tarballs: decompress with a fixed tool chosen by magic bytes, pass the
// stream through the TarGate (validation), then either discard it (scan) or feed it to GNU
// tar (extract). The same gate runs at import and at every unpack.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Transform, Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { spawnStreaming, type StreamedProcess } from "../os/exec.js";
import { detectFileCodec } from "./compression.js";
import { TarGate, TarRefused, type TarGateOptions } from "./tar-gate.js";

export interface ArchiveOptions {
  signal?: AbortSignal;
  /** Compressed bytes read so far (for progress). */
  onRead?: (bytes: number) => void;
  /** Extract only this member (a directory, taken literally) with `strip` leading components removed. */
  select?: { member: string; strip: number };
}

/** GNU tar flags that keep ownership, modes, setuid bits and xattrs as the image has them. */
export const EXTRACT_FLAGS = [
  "--numeric-owner",
  "--xattrs",
  "--xattrs-include=*",
  "--same-permissions",
  "--same-owner",
  "--no-overwrite-dir",
  "--warning=no-unknown-keyword",
  "--warning=no-timestamp",
];

/** Validate every member of the tarball at `file`; returns the gate (captured member, what was seen). */
export async function scanTarball(file: string, gateOpts: Omit<TarGateOptions, "forward">, opts: ArchiveOptions = {}): Promise<TarGate> {
  const gate = new TarGate({ ...gateOpts, forward: false });
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  await run(file, gate, sink, undefined, opts);
  return gate;
}

/** Validate and extract the tarball at `file` into `dest` (an existing directory). */
export async function extractTarball(file: string, dest: string, gateOpts: Omit<TarGateOptions, "forward" | "capture">, opts: ArchiveOptions = {}): Promise<TarGate> {
  const gate = new TarGate({ ...gateOpts, forward: true });
  const select = opts.select ? [`--strip-components=${opts.select.strip}`, "--no-wildcards", "--", opts.select.member] : [];
  const tar = spawnStreaming("tar", ["-x", "-f", "-", "-C", dest, ...EXTRACT_FLAGS, ...select], { signal: opts.signal, stdin: "pipe", stdout: "ignore" });
  await run(file, gate, tar.stdin!, tar, opts);
  return gate;
}

async function run(file: string, gate: TarGate, sink: Writable, consumer: StreamedProcess | undefined, opts: ArchiveOptions): Promise<void> {
  const codec = await detectFileCodec(file);
  if (!codec) {
    consumer?.kill();
    throw new Error("Unsupported compression");
  }
  let read = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _e, cb) {
      read += chunk.length;
      opts.onRead?.(read);
      cb(null, chunk);
    },
  });
  const input = createReadStream(file);
  let decompressor: StreamedProcess | undefined;
  let source: Readable;
  let feed: Promise<void> = Promise.resolve();
  if (codec.decompress) {
    const [cmd, args] = codec.decompress;
    decompressor = spawnStreaming(cmd, args, { signal: opts.signal, stdin: "pipe", stdout: "pipe" });
    feed = pipeline(input, counter, decompressor.stdin!).catch(() => {});
    source = decompressor.stdout!;
  } else {
    source = input.pipe(counter);
  }

  let streamErr: unknown;
  try {
    await pipeline(source, gate, sink, { signal: opts.signal });
  } catch (err) {
    streamErr = err;
    decompressor?.kill();
    consumer?.kill();
  }
  await feed;
  const [dec, con] = await Promise.all([decompressor?.exited, consumer?.exited]);
  if (opts.signal?.aborted) throw new Error("Operation cancelled");
  // The gate refused what it read: the decompressor then fails writing to a closed pipe, which
  // is not the cause.
  if (streamErr instanceof TarRefused) throw new TarRefused(`Refusing unsafe image tarball: ${streamErr.message}`);
  // 128: killed by us after another stage failed; that stage's error is the one to report.
  if (dec && dec.exitCode !== 0 && dec.exitCode !== 128) throw new Error(`Failed to decompress image (${codec.name}): ${dec.stderr.trim() || `exit ${dec.exitCode}`}`);
  if (con && con.exitCode !== 0) throw new Error(`Failed to unpack image: tar exited with ${con.exitCode}: ${con.stderr.trim()}`);
  if (dec && dec.exitCode !== 0) throw new Error(`Failed to decompress image (${codec.name}): exit ${dec.exitCode}`);
  if (streamErr) throw streamErr;
}

export async function fileSize(file: string): Promise<number> {
  return (await stat(file)).size;
}
