// Who is calling: what the HTTP edge learns about a client, and what services may check.
export interface Requestor {
  trusted: boolean;
  protocol: "unix" | "tls";
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
}

/** The header of a member asking another for its own objects only (cluster listings fan out with it). */
export const LOCAL_ONLY_HEADER = "x-nodelxd-local-only";
