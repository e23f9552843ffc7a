// TSIG (RFC 8945) for zone transfers: verify a signed query with the peer's shared secret and
// sign the answer with it, as miekg/dns does for LXD. HMAC from node:crypto; messages in wire form.
import { createHmac, timingSafeEqual } from "node:crypto";

const ALGORITHMS: Record<string, string> = {
  "hmac-md5.sig-alg.reg.int": "md5",
  "hmac-sha1": "sha1",
  "hmac-sha224": "sha224",
  "hmac-sha256": "sha256",
  "hmac-sha384": "sha384",
  "hmac-sha512": "sha512",
};
const TYPE_TSIG = 250;
const CLASS_ANY = 255;
const FUDGE = 300;

/** Read a (possibly compressed) name at `off`; returns the lowercase dotted name and the offset after it. */
function readName(msg: Buffer, off: number): { name: string; end: number } {
  const labels: string[] = [];
  let end = -1;
  for (let hops = 0; hops < 64; hops++) {
    if (off >= msg.length) throw new Error("truncated name");
    const len = msg[off];
    if (len === 0) {
      if (end < 0) end = off + 1;
      return { name: labels.join(".").toLowerCase(), end };
    }
    if ((len & 0xc0) === 0xc0) {
      if (end < 0) end = off + 2;
      off = ((len & 0x3f) << 8) | msg[off + 1];
      continue;
    }
    if (len > 63 || off + 1 + len > msg.length) throw new Error("bad label");
    labels.push(msg.subarray(off + 1, off + 1 + len).toString("latin1"));
    off += 1 + len;
  }
  throw new Error("name loop");
}

function skipQuestion(msg: Buffer, off: number): number {
  return readName(msg, off).end + 4;
}

function skipRR(msg: Buffer, off: number): number {
  const end = readName(msg, off).end;
  if (end + 10 > msg.length) throw new Error("truncated record");
  return end + 10 + msg.readUInt16BE(end + 8);
}

/** Canonical (uncompressed, lowercase) wire form of a name. */
function wireName(name: string): Buffer {
  const parts = name.replace(/\.$/, "").toLowerCase().split(".").filter(Boolean);
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, "latin1")])), Buffer.from([0])]);
}

export interface TsigRequest {
  keyName: string;
  algorithm: string;
  mac: Buffer;
  timeSigned: number;
  originalId: number;
  /** The message as signed: without the TSIG record, ARCOUNT less one, the original id. */
  unsigned: Buffer;
}

/** The TSIG record of a query, if it ends with one. Throws on a malformed message. */
export function parseTsig(msg: Buffer): TsigRequest | undefined {
  if (msg.length < 12) throw new Error("short message");
  const counts = [4, 6, 8, 10].map((o) => msg.readUInt16BE(o));
  if (counts[3] === 0) return undefined;
  let off = 12;
  for (let i = 0; i < counts[0]; i++) off = skipQuestion(msg, off);
  for (let i = 0; i < counts[1] + counts[2] + counts[3] - 1; i++) off = skipRR(msg, off);
  const start = off;
  const owner = readName(msg, off);
  off = owner.end;
  if (msg.readUInt16BE(off) !== TYPE_TSIG) return undefined;
  const rdlen = msg.readUInt16BE(off + 8);
  const rd = off + 10;
  if (rd + rdlen !== msg.length) throw new Error("TSIG is not the last record");
  const alg = readName(msg, rd);
  let p = alg.end;
  const timeSigned = msg.readUIntBE(p, 6);
  p += 8; // time signed + fudge
  const macLen = msg.readUInt16BE(p);
  const mac = msg.subarray(p + 2, p + 2 + macLen);
  p += 2 + macLen;
  const originalId = msg.readUInt16BE(p);
  const unsigned = Buffer.from(msg.subarray(0, start));
  unsigned.writeUInt16BE(originalId, 0);
  unsigned.writeUInt16BE(counts[3] - 1, 10);
  return { keyName: owner.name, algorithm: alg.name, mac: Buffer.from(mac), timeSigned, originalId, unsigned };
}

function variables(keyName: string, algorithm: string, timeSigned: number, error = 0): Buffer {
  const tail = Buffer.alloc(2 + 4 + 6 + 2 + 2 + 2);
  tail.writeUInt16BE(CLASS_ANY, 0);
  tail.writeUInt32BE(0, 2);
  tail.writeUIntBE(timeSigned, 6, 6);
  tail.writeUInt16BE(FUDGE, 12);
  tail.writeUInt16BE(error, 14);
  tail.writeUInt16BE(0, 16);
  return Buffer.concat([wireName(keyName), tail.subarray(0, 2 + 4), wireName(algorithm), tail.subarray(6)]);
}

/** Whether the query's MAC is right for `secret` (base64) and its time within the fudge. */
export function verifyTsig(req: TsigRequest, secret: string, now = Math.floor(Date.now() / 1000)): boolean {
  const hash = ALGORITHMS[req.algorithm];
  if (!hash) return false;
  if (Math.abs(now - req.timeSigned) > FUDGE) return false;
  const expected = createHmac(hash, Buffer.from(secret, "base64"))
    .update(Buffer.concat([req.unsigned, variables(req.keyName, req.algorithm, req.timeSigned)]))
    .digest();
  return expected.length === req.mac.length && timingSafeEqual(expected, req.mac);
}

/** Append a TSIG record signing `response` (answering `req`) with `secret`. */
export function signResponse(response: Buffer, req: TsigRequest, secret: string, now = Math.floor(Date.now() / 1000)): Buffer {
  const hash = ALGORITHMS[req.algorithm];
  const macLen = Buffer.alloc(2);
  macLen.writeUInt16BE(req.mac.length);
  const mac = createHmac(hash, Buffer.from(secret, "base64"))
    .update(Buffer.concat([macLen, req.mac, response, variables(req.keyName, req.algorithm, now)]))
    .digest();
  const rdata = Buffer.concat([
    wireName(req.algorithm),
    (() => {
      const b = Buffer.alloc(6 + 2 + 2);
      b.writeUIntBE(now, 0, 6);
      b.writeUInt16BE(FUDGE, 6);
      b.writeUInt16BE(mac.length, 8);
      return b;
    })(),
    mac,
    (() => {
      const b = Buffer.alloc(6);
      b.writeUInt16BE(req.originalId, 0);
      return b;
    })(),
  ]);
  const head = Buffer.alloc(10);
  head.writeUInt16BE(TYPE_TSIG, 0);
  head.writeUInt16BE(CLASS_ANY, 2);
  head.writeUInt32BE(0, 4);
  head.writeUInt16BE(rdata.length, 8);
  const out = Buffer.concat([response, wireName(req.keyName), head, rdata]);
  out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  return out;
}
