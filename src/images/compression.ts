// Compression formats of image tarballs: detected by magic bytes, (de)compressed only by
// the fixed tools below. Nothing from a request ever becomes part of a command line
// except an algorithm name checked against this table.
import { open } from "node:fs/promises";

export interface Codec {
  /** Name as LXD spells it (images.compression_algorithm). */
  name: string;
  /** File extension `lxc image export` appends. */
  extension: string;
  decompress?: [string, string[]];
  compress?: [string, string[]];
}

export const CODECS = {
  none: { name: "none", extension: ".tar" },
  gzip: { name: "gzip", extension: ".tar.gz", decompress: ["gzip", ["-d", "-c"]], compress: ["gzip", ["-c", "-n"]] },
  bzip2: { name: "bzip2", extension: ".tar.bz2", decompress: ["bzip2", ["-d", "-c"]], compress: ["bzip2", ["-c"]] },
  xz: { name: "xz", extension: ".tar.xz", decompress: ["xz", ["-d", "-c"]], compress: ["xz", ["-c", "-T0"]] },
  lzma: { name: "lzma", extension: ".tar.lzma", decompress: ["xz", ["--format=lzma", "-d", "-c"]], compress: ["xz", ["--format=lzma", "-c"]] },
  zstd: { name: "zstd", extension: ".tar.zst", decompress: ["zstd", ["-d", "-c", "-q"]], compress: ["zstd", ["-c", "-q", "-T0"]] },
} satisfies Record<string, Codec>;

export type CodecName = keyof typeof CODECS;

/** Identify a tarball's compression from its first bytes; undefined when it is no tarball we know. */
export function detectCodec(head: Buffer): Codec | undefined {
  const starts = (...bytes: number[]) => bytes.every((b, i) => head[i] === b);
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return CODECS.xz;
  if (starts(0x1f, 0x8b)) return CODECS.gzip;
  if (starts(0x42, 0x5a, 0x68)) return CODECS.bzip2;
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return CODECS.zstd;
  if (starts(0x5d, 0x00, 0x00)) return CODECS.lzma;
  if (head.length >= 263 && head.toString("latin1", 257, 262) === "ustar") return CODECS.none;
  return undefined;
}

export async function detectFileCodec(file: string): Promise<Codec | undefined> {
  const fh = await open(file, "r");
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await fh.read(head, 0, 512, 0);
    return detectCodec(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/**
 * Flags a user may add after an algorithm name ("xz -9", "zstd -T0 -19", "gzip --rsyncable"):
 * levels, threads and rsync-friendly output only — none names a file or changes what is read.
 */
const ALLOWED_FLAGS: Record<CodecName, RegExp[]> = {
  none: [],
  gzip: [/^-[1-9]$/, /^--(fast|best|rsyncable)$/],
  bzip2: [/^-[1-9]$/, /^--(fast|best)$/],
  xz: [/^-[0-9]e?$/, /^-e$/, /^--extreme$/, /^-T[0-9]{1,3}$/, /^--threads=[0-9]{1,3}$/],
  lzma: [/^-[0-9]e?$/, /^-e$/, /^--extreme$/],
  zstd: [/^-([1-9]|1[0-9])$/, /^--fast(=[0-9]{1,2})?$/, /^-T[0-9]{1,3}$/, /^--threads=[0-9]{1,3}$/, /^--rsyncable$/],
};

export type CompressionAlgorithm = { codec: CodecName; flags: string[] };

export class CompressionAlgorithmError extends Error {}

/**
 * Parse a compression_algorithm value (per request, or backups./images.compression_algorithm):
 * one of our codecs, optionally followed by known level/thread flags. Anything else — another
 * program, an option that names a file or changes what the tool does — is refused, so nothing
 * but these fixed words ever reaches a command line.
 */
export function parseCompressionAlgorithm(value: string): CompressionAlgorithm {
  if (/[^\x20-\x7e]/.test(value)) throw new CompressionAlgorithmError(`Invalid compression algorithm ${JSON.stringify(value)}`);
  const words = value.trim().split(/ +/).filter((w) => w !== "");
  const name = words[0] ?? "";
  if (!Object.prototype.hasOwnProperty.call(CODECS, name)) throw new CompressionAlgorithmError(`Invalid compression algorithm "${name}"`);
  const codec = name as CodecName;
  const flags = words.slice(1);
  for (const f of flags) {
    if (!ALLOWED_FLAGS[codec].some((re) => re.test(f))) throw new CompressionAlgorithmError(`Invalid compression algorithm "${value.trim()}": flag "${f}" is not allowed for ${codec}`);
  }
  return { codec, flags };
}

/** The compressor's command line for a parsed algorithm (undefined for "none"). */
export function compressCommand(algo: CompressionAlgorithm): [string, string[]] | undefined {
  const c: Codec = CODECS[algo.codec];
  if (!c.compress) return undefined;
  return [c.compress[0], [...c.compress[1], ...algo.flags]];
}
