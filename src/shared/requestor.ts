// Who is calling: what the HTTP edge learns about a client, and what services may check.
export interface Requestor {
  trusted: boolean;
  /** "candid": a TLS client authenticated by a discharged macaroon (LXD's protocol name). */
  protocol: "unix" | "tls" | "candid";
  username: string;
  address: string;
  /** Fingerprint of the TLS client certificate, when one was presented. */
  fingerprint?: string;
  /** A trusted TLS client limited to its certificate's projects. */
  restricted?: boolean;
  /** A TLS client whose certificate is trusted for /1.0/metrics only (type "metrics"); untrusted elsewhere. */
  metrics?: boolean;
  /** The projects a restricted client may use. */
  projects?: string[];
  /** A client's request another cluster member forwarded here (the member checked and placed it). */
  viaMember?: boolean;
  /** Candid is on and the client speaks the bakery protocol without a valid macaroon: refusals are a discharge-required error. */
  dischargeRequired?: boolean;
  /** Candid authentication failed outright (a macaroon of a user LXD does not accept): every API request is this 500. */
  authError?: string;
}

/** The header of a member asking another for its own objects only (cluster listings fan out with it). */
export const LOCAL_ONLY_HEADER = "x-nodelxd-local-only";
