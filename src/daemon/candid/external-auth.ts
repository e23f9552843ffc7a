// Candid (external, macaroon) authentication as LXD 5.0.2 sets it up (lxd/daemon.go
// setupExternalAuthentication, Authenticate, writeMacaroonsRequiredResponse): a bakery whose
// login macaroons carry a third-party caveat addressed to candid.api.url ("is-authenticated-user",
// the user name declared by the discharge) and a time-before candid.expiry from minting.
// A client presenting such a macaroon with its bound discharge is a trusted user named by the
// discharge (a full admin, LXD 5.0.2 without RBAC); candid.domains limits the users' domains.
import { randomBytes } from "node:crypto";
import macaroon, { type Macaroon } from "macaroon";
import { checkCondition, inferDeclared } from "./first-party.js";
import { encodeThirdPartyCaveat, generateKeyPair, NAMESPACE, parseKey, shortCaveatId, type KeyPair } from "./caveat-codec.js";
import type { RootKeyStore } from "./root-keys.js";

export type CandidVerdict = { kind: "trusted"; username: string } | { kind: "discharge-required" } | { kind: "error"; message: string };

export interface ThirdPartyInfo {
  publicKey: Uint8Array;
  version: number;
}

/** What an HTTP response to a request needing a discharge looks like (httpbakery's WriteError). */
export interface BakeryResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

interface Settings {
  url: string;
  expiry: number;
  domains: string[];
}

const CONDITION = "need-declared username is-authenticated-user";
const ID_PREFIX = "nodelxd-login ";

/** How the third party's key is found when candid.api.key is empty: GET /discharge/info, else /publickey (bakery v1). */
export type InfoFetcher = (url: string) => Promise<ThirdPartyInfo>;

export async function fetchThirdPartyInfo(location: string): Promise<ThirdPartyInfo> {
  const base = location.replace(/\/+$/, "");
  const get = async (path: string) => {
    const res = await fetch(base + path, { signal: AbortSignal.timeout(15_000), headers: { "Bakery-Protocol-Version": "3" } });
    return { status: res.status, body: res.status === 200 ? ((await res.json()) as { PublicKey?: string; Version?: number }) : undefined };
  };
  let r = await get("/discharge/info");
  let fallback = false;
  if (r.status === 404) {
    r = await get("/publickey");
    fallback = true;
  }
  if (!r.body || typeof r.body.PublicKey !== "string") throw new Error(`GET ${base}${fallback ? "/publickey" : "/discharge/info"}: cannot unmarshal response: unexpected status ${r.status}`);
  return { publicKey: parseKey(r.body.PublicKey), version: fallback ? 1 : Number(r.body.Version ?? 1) };
}

/** httpbakery.RequestVersion: the Bakery-Protocol-Version header, 0 when absent or bad, at most 3. */
export function requestVersion(header: string | undefined): number {
  if (header === undefined || header === "") return 0;
  if (!/^[+-]?\d+$/.test(header)) return 0;
  const v = Number(header);
  if (v < 0) return 0;
  return Math.min(v, 3);
}

/** httpbakery's RelativeURLPath(base, "/"): the cookie path of the macaroon, relative to the request's path. */
export function relativePathToRoot(basePath: string): string {
  const base = basePath.split("/");
  const dotdot = base.length - 2;
  const parts: string[] = [];
  for (let i = 0; i < dotdot; i++) parts.push("..");
  parts.push("");
  const out = parts.join("/");
  return out === "" ? "." : out;
}

function decodeBase64Any(text: string): Buffer | undefined {
  const t = text.trim();
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(t)) return undefined;
  return Buffer.from(t.replace(/-/g, "+").replace(/_/g, "/"), "base64");
}

/** The macaroon slices a request carries: `macaroon-*` cookies and `Macaroons` headers (base64 JSON arrays). */
export function requestMacaroons(headers: Record<string, string | string[] | undefined>): Macaroon[][] {
  const values: string[] = [];
  const cookie = headers["cookie"];
  for (const line of Array.isArray(cookie) ? cookie : cookie ? [cookie] : []) {
    for (const part of line.split(";")) {
      const eq = part.indexOf("=");
      if (eq < 0) continue;
      const name = part.slice(0, eq).trim();
      let value = part.slice(eq + 1).trim();
      if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
      if (name.startsWith("macaroon-")) values.push(value);
    }
  }
  const header = headers["macaroons"];
  for (const h of Array.isArray(header) ? header : header ? [header] : []) values.push(h);
  const slices: Macaroon[][] = [];
  for (const v of values) {
    try {
      const data = decodeBase64Any(v);
      if (!data) continue;
      const parsed = JSON.parse(data.toString("utf8")) as unknown;
      if (!Array.isArray(parsed) || parsed.length === 0) continue;
      slices.push(macaroon.importMacaroons(parsed));
    } catch {
      // An undecodable slice is ignored, as httpbakery does.
    }
  }
  return slices;
}

export class ExternalAuth {
  private settings?: Settings;
  /** Third-party key of candid.api.url: given by candid.api.key, or found and cached at first use. */
  private thirdParty?: ThirdPartyInfo;
  /** Our NaCl key pair for third-party caveats: made at first use (Curve25519 in JS costs ~90 ms at start). */
  private ownKeyPair?: KeyPair;

  constructor(
    private readonly roots: RootKeyStore,
    private readonly fetchInfo: InfoFetcher = fetchThirdPartyInfo,
  ) {}

  get enabled(): boolean {
    return this.settings !== undefined;
  }

  /** setupExternalAuthentication: "" as the URL turns it off; a bad key throws (the config change is refused). */
  configure(url: string, key: string, expiry: number, domains: string): void {
    const list = domains
      .split(",")
      .filter((d) => d !== "")
      .map((d) => d.trim());
    if (url === "") {
      this.settings = undefined;
      this.thirdParty = undefined;
      return;
    }
    const thirdParty = key !== "" ? { publicKey: parseKey(key), version: 3 } : undefined;
    this.ownKeyPair = undefined; // a fresh pair, as LXD makes one at each setup
    this.settings = { url, expiry, domains: list };
    this.thirdParty = thirdParty;
  }

  /** LXD's Authenticate for a TLS request with a Bakery-Protocol-Version header. */
  authenticate(headers: Record<string, string | string[] | undefined>, clientIp: string, now = new Date()): CandidVerdict {
    const s = this.settings;
    if (!s) return { kind: "discharge-required" };
    for (const ms of requestMacaroons(headers)) {
      const declared = this.verifySlice(ms, clientIp, now);
      if (!declared) continue;
      return this.identity(declared, s);
    }
    return { kind: "discharge-required" };
  }

  /** The declared attributes of a valid login macaroon slice of ours, or undefined. */
  private verifySlice(ms: Macaroon[], clientIp: string, now: Date): Map<string, string> | undefined {
    const [primary, ...discharges] = ms;
    const id = Buffer.from(primary.identifier).toString("latin1");
    const m = /^nodelxd-login ([0-9a-f]{24}) [0-9a-f]{32}$/.exec(id);
    if (!m) return undefined;
    const rootKey = this.roots.get(m[1], now.getTime());
    if (!rootKey) return undefined;
    const conditions: string[] = [];
    for (const mac of ms) for (const c of mac.caveats) if (!c.vid) conditions.push(Buffer.from(c.identifier).toString("utf8"));
    const declared = inferDeclared(conditions);
    try {
      primary.verify(rootKey, (cond) => checkCondition(cond, { now, declared, clientIp }), discharges);
    } catch {
      return undefined;
    }
    return declared;
  }

  /** The candid identity client behind LXD's domain check (IdentityClientWrapper.DeclaredIdentity). */
  private identity(declared: Map<string, string>, s: Settings): CandidVerdict {
    const username = declared.get("username") ?? "";
    if (s.domains.length > 0) {
      const at = username.indexOf("@");
      if (at < 0) return { kind: "error", message: "could not determine identity: Missing domain in candid reply" };
      if (!s.domains.includes(username.slice(at + 1))) return { kind: "error", message: "could not determine identity: Untrusted candid domain" };
    }
    if (username === "") return { kind: "error", message: "could not determine identity: no declared user" };
    return { kind: "trusted", username };
  }

  private async thirdPartyInfo(url: string): Promise<ThirdPartyInfo> {
    if (this.thirdParty) return this.thirdParty;
    // Without a configured key, bakery only asks a discharger it reaches over https.
    if (!url.startsWith("https:")) throw new Error(`cannot find public key for location "${url}": untrusted discharge URL "${url}"`);
    let info: ThirdPartyInfo;
    try {
      info = await this.fetchInfo(url);
    } catch (e) {
      throw new Error(`cannot find public key for location "${url}": ${(e as Error).message}`);
    }
    if (this.settings?.url === url) this.thirdParty = info;
    return info;
  }

  /** writeMacaroonsRequiredResponse: a new login macaroon to be discharged, in httpbakery's error body. */
  async dischargeRequired(path: string, versionHeader: string | undefined, now = new Date()): Promise<BakeryResponse> {
    const s = this.settings;
    if (!s) throw new Error("external authentication is not configured");
    const version = requestVersion(versionHeader);
    const expiresAt = now.getTime() + s.expiry * 1000;
    const info = await this.thirdPartyInfo(s.url);
    const root = this.roots.forMinting(expiresAt, now.getTime());
    const id = `${ID_PREFIX}${root.id} ${randomBytes(16).toString("hex")}`;
    const m = macaroon.newMacaroon({ identifier: Buffer.from(id), location: s.url, rootKey: root.key, version: version <= 1 ? 1 : 2 });
    const caveatVersion = Math.min(info.version, version);
    const caveatKey = new Uint8Array(randomBytes(24));
    const caveat = encodeThirdPartyCaveat(caveatVersion, CONDITION, caveatKey, info.publicKey, (this.ownKeyPair ??= generateKeyPair()));
    const cdata: Record<string, string> = {};
    if (caveatVersion < 3) {
      m.addThirdPartyCaveat(caveatKey, caveat, s.url);
    } else {
      const short = shortCaveatId(0);
      m.addThirdPartyCaveat(caveatKey, short, s.url);
      cdata[Buffer.from(short).toString("base64url")] = Buffer.from(caveat).toString("base64url");
    }
    m.addFirstPartyCaveat(`time-before ${new Date(expiresAt).toISOString()}`);
    const exported = version >= 3 ? { m: m.exportJSON(), v: 3, cdata, ns: NAMESPACE } : m.exportJSON();
    const body = {
      Code: "macaroon discharge required",
      Message: "authentication required",
      Info: { Macaroon: exported, MacaroonPath: relativePathToRoot(path), CookieNameSuffix: "auth" },
    };
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (version >= 1) headers["www-authenticate"] = "Macaroon";
    return { status: version >= 1 ? 401 : 407, headers, body: JSON.stringify(body) + "\n" };
  }
}
