// The server-side bakery of Candid authentication (src/daemon/candid): the third-party caveat as
// the discharger decodes it, and which macaroon slices the verifier accepts. The discharge here is
// made the way a discharger makes one (root key from the decrypted caveat, bound to the primary);
// test/host/candid-auth.test.ts runs the same against a real Go bakery discharger.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import macaroon, { type Macaroon } from "macaroon";
import nacl from "tweetnacl";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeDatabase, openDatabase, type Db } from "../../src/db/database.js";
import { ExternalAuth, relativePathToRoot, requestMacaroons, requestVersion } from "../../src/daemon/candid/external-auth.js";
import { RootKeyStore } from "../../src/daemon/candid/root-keys.js";
import { checkCondition, inferDeclared } from "../../src/daemon/candid/first-party.js";
import { parseKey } from "../../src/daemon/candid/caveat-codec.js";

const URL = "https://candid.invalid";
let dir: string;
let db: Db;
const third = nacl.box.keyPair();
const thirdKey = Buffer.from(third.publicKey).toString("base64");

beforeAll(() => {
  dir = mkdtempSync("/tmp/nodelxd-unit-candid-");
  db = openDatabase(join(dir, "db.bin"));
});
afterAll(() => {
  closeDatabase(db);
  rmSync(dir, { recursive: true, force: true });
});

function uvarint(buf: Uint8Array, at: number): [number, number] {
  let n = 0;
  let shift = 0;
  for (;;) {
    const b = buf[at++];
    n |= (b & 0x7f) << shift;
    if (b < 0x80) return [n, at];
    shift += 7;
  }
}

/** What a v2/v3 discharger reads from the caveat: the root key, the namespace, the condition. */
function openCaveat(data: Uint8Array): { version: number; rootKey: Uint8Array; ns: string; condition: string } {
  expect(Buffer.from(data.subarray(1, 5))).toEqual(Buffer.from(third.publicKey.subarray(0, 4)));
  const theirs = data.subarray(5, 37);
  const nonce = data.subarray(37, 61);
  const plain = nacl.box.open(data.subarray(61), nonce, theirs, third.secretKey);
  if (!plain) throw new Error("caveat does not open with the third party's key");
  expect(plain[0]).toBe(data[0]);
  let [len, at] = uvarint(plain, 1);
  const rootKey = plain.subarray(at, at + len);
  at += len;
  let ns = "";
  if (data[0] === 3) {
    [len, at] = uvarint(plain, at);
    ns = Buffer.from(plain.subarray(at, at + len)).toString();
    at += len;
  }
  return { version: data[0], rootKey, ns, condition: Buffer.from(plain.subarray(at)).toString() };
}

/** Mint through the 401 answer, discharge as the third party would (declaring `declared`), bind. */
async function login(auth: ExternalAuth, declared: string[], now = new Date()): Promise<Macaroon[]> {
  const answer = await auth.dischargeRequired("/1.0/instances", "3", now);
  const info = JSON.parse(answer.body).Info.Macaroon as { m: unknown; cdata: Record<string, string> };
  const [primary] = macaroon.importMacaroons(info.m);
  const [id64, cav64] = Object.entries(info.cdata)[0];
  const caveat = openCaveat(new Uint8Array(Buffer.from(cav64, "base64url")));
  expect(caveat).toMatchObject({ version: 3, ns: "http:http std:", condition: "need-declared username is-authenticated-user" });
  const discharge = macaroon.newMacaroon({ identifier: new Uint8Array(Buffer.from(id64, "base64url")), location: URL, rootKey: caveat.rootKey, version: 2 });
  for (const d of declared) discharge.addFirstPartyCaveat(d);
  discharge.bindToRoot(primary.signature);
  return [primary, discharge];
}

function header(ms: Macaroon[]): Record<string, string> {
  return { macaroons: Buffer.from(JSON.stringify(ms.map((m) => m.exportJSON()))).toString("base64") };
}

describe("candid bakery", () => {
  it("reads the request's bakery version and cookie path as httpbakery does", () => {
    expect([undefined, "", "x", "-1", "0", "1", "2", "3", "7"].map(requestVersion)).toEqual([0, 0, 0, 0, 0, 1, 2, 3, 3]);
    expect(relativePathToRoot("/1.0")).toBe(".");
    expect(relativePathToRoot("/1.0/instances")).toBe("../");
    expect(relativePathToRoot("/1.0/instances/c1/state")).toBe("../../../");
  });

  it("refuses a public key that is not 32 bytes of base64", () => {
    expect(() => parseKey("abc")).toThrow(/wrong length for key/);
    expect(() => parseKey('"' + thirdKey + '"')).toThrow(/cannot decode base64 key/);
    expect(Buffer.from(parseKey(thirdKey))).toEqual(Buffer.from(third.publicKey));
  });

  it("trusts a bound discharge declaring a user, until the time-before", async () => {
    const auth = new ExternalAuth(new RootKeyStore(db));
    auth.configure(URL, thirdKey, 60, "");
    const ms = await login(auth, ["declared username alice"]);
    expect(auth.authenticate(header(ms), "127.0.0.1")).toEqual({ kind: "trusted", username: "alice" });
    // As a cookie too.
    const cookie = { cookie: `other=1; macaroon-auth=${header(ms).macaroons}` };
    expect(auth.authenticate(cookie, "127.0.0.1")).toEqual({ kind: "trusted", username: "alice" });
    expect(auth.authenticate(header(ms), "127.0.0.1", new Date(Date.now() + 61_000))).toEqual({ kind: "discharge-required" });
  });

  it("refuses unbound, foreign, conflicting and caveat-failing discharges", async () => {
    const auth = new ExternalAuth(new RootKeyStore(db));
    auth.configure(URL, thirdKey, 3600, "");
    const [primary, discharge] = await login(auth, ["declared username alice"]);
    // Unbound: the discharge as the third party issued it, not bound to this primary.
    const [, raw] = await login(auth, ["declared username alice"]);
    const unbound = macaroon.newMacaroon({ identifier: raw.identifier, location: URL, rootKey: new Uint8Array(24), version: 2 });
    expect(auth.authenticate(header([primary, unbound]), "127.0.0.1").kind).toBe("discharge-required");
    expect(auth.authenticate(header([primary]), "127.0.0.1").kind).toBe("discharge-required");
    expect(auth.authenticate(header([primary, discharge, discharge]), "127.0.0.1").kind).toBe("discharge-required");
    // Two declarations of the user: the name is dropped, so "declared" fails.
    expect(auth.authenticate(header(await login(auth, ["declared username alice", "declared username root"])), "127.0.0.1").kind).toBe("discharge-required");
    // Unknown conditions and the third party's own expiry are enforced.
    expect(auth.authenticate(header(await login(auth, ["declared username alice", "frobnicate x"])), "127.0.0.1").kind).toBe("discharge-required");
    expect(auth.authenticate(header(await login(auth, ["declared username alice", "time-before 2000-01-01T00:00:00Z"])), "127.0.0.1").kind).toBe("discharge-required");
    expect(auth.authenticate(header(await login(auth, ["declared username alice", "http:client-ip-addr 10.1.1.1"])), "127.0.0.1").kind).toBe("discharge-required");
    expect(auth.authenticate(header(await login(auth, ["declared username alice", "http:client-ip-addr 127.0.0.1"])), "127.0.0.1").kind).toBe("trusted");
    // A macaroon of another server's root keys (an empty store).
    const other = new ExternalAuth(new RootKeyStore(openDatabase(join(dir, "other.bin"))));
    other.configure(URL, thirdKey, 3600, "");
    expect(other.authenticate(header([primary, discharge]), "127.0.0.1").kind).toBe("discharge-required");
  });

  it("applies candid.domains to the declared user name", async () => {
    const auth = new ExternalAuth(new RootKeyStore(db));
    auth.configure(URL, thirdKey, 3600, "example.com, corp");
    const as = async (user: string) => auth.authenticate(header(await login(auth, [`declared username ${user}`])), "127.0.0.1");
    expect(await as("bob@corp")).toEqual({ kind: "trusted", username: "bob@corp" });
    expect(await as("bob@example.com")).toEqual({ kind: "trusted", username: "bob@example.com" });
    expect(await as("bob")).toEqual({ kind: "error", message: "could not determine identity: Missing domain in candid reply" });
    expect(await as("bob@evil")).toEqual({ kind: "error", message: "could not determine identity: Untrusted candid domain" });
  });

  it("encodes the caveat for the version the client speaks", async () => {
    const auth = new ExternalAuth(new RootKeyStore(db));
    auth.configure(URL, thirdKey, 3600, "");
    const v2 = JSON.parse((await auth.dischargeRequired("/1.0", "2")).body).Info.Macaroon;
    const [m2] = macaroon.importMacaroons(v2);
    const cav2 = m2.caveats.find((c) => c.vid)!;
    expect(openCaveat(cav2.identifier)).toMatchObject({ version: 2, ns: "", condition: "need-declared username is-authenticated-user" });
    const v1 = JSON.parse((await auth.dischargeRequired("/1.0", "1")).body).Info.Macaroon;
    const cav1 = JSON.parse(Buffer.from(Buffer.from(v1.caveats.find((c: { vid?: string }) => c.vid).cid, "utf8").toString(), "base64").toString());
    expect(cav1.ThirdPartyPublicKey).toBe(thirdKey);
    const sealed = nacl.box.open(Buffer.from(cav1.Id, "base64"), Buffer.from(cav1.Nonce, "base64"), Buffer.from(cav1.FirstPartyPublicKey, "base64"), third.secretKey);
    expect(JSON.parse(Buffer.from(sealed!).toString()).Condition).toBe("need-declared username is-authenticated-user");
  });

  it("ignores undecodable macaroon headers and cookies", () => {
    expect(requestMacaroons({ macaroons: "%%%", cookie: "macaroon-x=bm90IGpzb24" })).toEqual([]);
  });

  it("checks standard first-party conditions", () => {
    const ctx = { now: new Date("2030-01-01T00:00:00Z"), declared: inferDeclared(["declared username a", "declared group x y"]), clientIp: "::ffff:10.0.0.1" };
    expect(checkCondition("time-before 2030-01-01T00:00:01Z", ctx)).toBeNull();
    expect(checkCondition("time-before 2030-01-01T00:00:00Z", ctx)).toContain("macaroon has expired");
    expect(checkCondition("declared group x y", ctx)).toBeNull();
    expect(checkCondition("declared username b", ctx)).toContain('got username="a"');
    expect(checkCondition("http:client-ip-addr 10.0.0.1", ctx)).toBeNull();
    expect(checkCondition("error nope", ctx)).toContain("nope");
  });
});
