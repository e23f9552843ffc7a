// Third-party caveat ids as macaroon-bakery encodes them: the caveat's root key and condition,
// sealed with a NaCl box from our key pair to the discharger's public key, in the layout of
// the bakery version the macaroon is made for.
//   v1:    base64(JSON {ThirdPartyPublicKey, FirstPartyPublicKey, Nonce, Id: base64(box(JSON {RootKey, Condition}))})
//   v2/v3: version | their key[0:4] | our public key (32) | nonce (24) | box(version | uvarint len | root key
//          | (v3: uvarint len | namespace) | condition)
import { randomBytes } from "node:crypto";
import nacl from "tweetnacl";

export interface KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

/** The namespace our checker understands (httpbakery's checker: the standard conditions and "http:"), as bakery marshals it. */
export const NAMESPACE = "http:http std:";

export function generateKeyPair(): KeyPair {
  return nacl.box.keyPair();
}

function uvarint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

export function encodeThirdPartyCaveat(version: number, condition: string, rootKey: Uint8Array, theirs: Uint8Array, ours: KeyPair): Uint8Array {
  const nonce = new Uint8Array(randomBytes(nacl.box.nonceLength));
  if (version <= 1) {
    const plain = Buffer.from(JSON.stringify({ RootKey: b64(rootKey), Condition: condition }));
    const sealed = nacl.box(plain, nonce, theirs, ours.secretKey);
    const wrapper = JSON.stringify({ ThirdPartyPublicKey: b64(theirs), FirstPartyPublicKey: b64(ours.publicKey), Nonce: b64(nonce), Id: b64(sealed) });
    return new Uint8Array(Buffer.from(Buffer.from(wrapper).toString("base64")));
  }
  const v = version >= 3 ? 3 : 2;
  const ns = v >= 3 ? Buffer.from(NAMESPACE) : Buffer.alloc(0);
  const secret = Buffer.concat([
    Buffer.from([v, ...uvarint(rootKey.length)]),
    Buffer.from(rootKey),
    v >= 3 ? Buffer.from(uvarint(ns.length)) : Buffer.alloc(0),
    ns,
    Buffer.from(condition),
  ]);
  const sealed = nacl.box(new Uint8Array(secret), nonce, theirs, ours.secretKey);
  return new Uint8Array(Buffer.concat([Buffer.from([v]), Buffer.from(theirs.subarray(0, 4)), Buffer.from(ours.publicKey), Buffer.from(nonce), Buffer.from(sealed)]));
}

/** A bakery key as text (base64, any of the alphabets and paddings Go's macaroon.Base64Decode takes); throws as bakery does. */
export function parseKey(text: string): Uint8Array {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) throw new Error("cannot decode base64 key: illegal base64 data");
  const data = Buffer.from(text.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (data.length !== 32) throw new Error(`wrong length for key, got ${data.length} want 32`);
  return new Uint8Array(data);
}

/** The uvarint bakery appends to a v3 third-party caveat's short id. */
export function shortCaveatId(index: number): Uint8Array {
  return new Uint8Array([3, ...uvarint(index)]);
}
