// Tar's bytes and names as GNU tar reads them: header fields (octal numbers, C strings,
// checksums), pax records, and member names made relative and checked for `..`. The gate
// (tar-gate.ts) decides what to let through; this is how it reads and rewrites.

/** A tar block: headers and data are padded to it. */
export const BLOCK = 512;

export class TarRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TarRefused";
  }
}

/**
 * "./a//b/" → "a/b"; "/a/b" → "a/b" (GNU tar drops leading slashes on extract); refuses `..`.
 * "" is the archive root.
 */
export function normalise(name: string, what: string): string {
  if (name.includes("\0")) throw new TarRefused(`Tar ${what} contains a NUL byte`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new TarRefused(`Tar ${what} ${name} contains '..'`);
  return parts.join("/");
}

/** A name with its leading slashes dropped ("/" alone becomes "."), as GNU tar stores it. */
export function relative(name: string): string {
  const rest = name.replace(/^\/+/, "");
  return rest === "" ? "." : rest;
}

/** The pax records with `path` (and a hard link's `linkpath`) made relative; the same buffer if unchanged. */
export function rewritePax(content: Buffer, hardlink: boolean): Buffer {
  const records = parsePaxRecords(content);
  let changed = false;
  for (const r of records) {
    if ((r.key === "path" || (r.key === "linkpath" && hardlink)) && r.value.startsWith("/")) {
      r.value = relative(r.value);
      changed = true;
    }
  }
  if (!changed) return content;
  return Buffer.from(records.map((r) => paxRecord(r.key, r.value)).join(""), "latin1");
}

export function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  let len = rest.length + 1;
  while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
  return `${len}${rest}`;
}

export function padded(content: Buffer): Buffer {
  const pad = roundUp(content.length) - content.length;
  return pad ? Buffer.concat([content, Buffer.alloc(pad)]) : content;
}

export function writeOctal(block: Buffer, start: number, len: number, n: number): void {
  block.fill(0, start, start + len);
  block.write(n.toString(8).padStart(len - 1, "0"), start, len - 1, "latin1");
}

export function setChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i];
  block.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
}

/** "a" + "b" → "a/b", either side possibly the empty root. */
export function joinName(a: string, b: string): string {
  return a === "" ? b : b === "" ? a : `${a}/${b}`;
}

export function roundUp(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

/** Names are compared byte for byte (latin1 keeps every byte as one char), as tar sees them. */
export function cString(buf: Buffer, start: number, len: number): string {
  const field = buf.subarray(start, start + len);
  const nul = field.indexOf(0);
  return field.toString("latin1", 0, nul === -1 ? field.length : nul);
}

export function printable(c: string): string {
  return /^[\x20-\x7e]$/.test(c) ? c : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
}

/** Octal (NUL/space padded) or GNU base-256 numeric field. */
export function parseNumber(field: Buffer, what: string): number {
  if (field[0] & 0x80) {
    if (field[0] === 0xff) throw new TarRefused(`Negative ${what} in tar header`);
    let n = field[0] & 0x7f;
    for (let i = 1; i < field.length; i++) {
      n = n * 256 + field[i];
      if (n > Number.MAX_SAFE_INTEGER) throw new TarRefused(`Tar ${what} too large`);
    }
    return n;
  }
  const text = field.toString("latin1").replace(/[\0 ]+$/, "").replace(/^ +/, "");
  if (!/^[0-7]*$/.test(text)) throw new TarRefused(`Invalid ${what} in tar header`);
  return text === "" ? 0 : Number.parseInt(text, 8);
}

export function verifyChecksum(block: Buffer): void {
  const stored = parseNumber(block.subarray(148, 156), "checksum");
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) throw new TarRefused("Tar header checksum mismatch");
}

export function parsePax(content: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const r of parsePaxRecords(content)) out[r.key] = r.value;
  return out;
}

export function parsePaxRecords(content: Buffer): { key: string; value: string }[] {
  const out: { key: string; value: string }[] = [];
  let off = 0;
  while (off < content.length) {
    if (content[off] === 0) break;
    const space = content.indexOf(0x20, off);
    if (space === -1) throw new TarRefused("Malformed tar extended header");
    const lenText = content.toString("latin1", off, space);
    if (!/^[0-9]+$/.test(lenText)) throw new TarRefused("Malformed tar extended header");
    const len = Number(lenText);
    const end = off + len;
    if (len <= 0 || end > content.length || content[end - 1] !== 0x0a) throw new TarRefused("Malformed tar extended header");
    const record = content.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq === -1) throw new TarRefused("Malformed tar extended header");
    const key = record.toString("latin1", 0, eq);
    if (key.startsWith("GNU.sparse") || key === "GNU.dumpdir") throw new TarRefused("Sparse and incremental tar members are not supported");
    out.push({ key, value: record.toString("latin1", eq + 1) });
    off = end;
  }
  return out;
}
