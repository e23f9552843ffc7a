// LXD's three response envelopes. Every field is always present, as upstream.

export interface SyncEnvelope {
  type: "sync";
  status: "Success";
  status_code: 200;
  operation: "";
  error_code: 0;
  error: "";
  metadata: unknown;
}

export function syncEnvelope(metadata: unknown): SyncEnvelope {
  return { type: "sync", status: "Success", status_code: 200, operation: "", error_code: 0, error: "", metadata };
}

/** The envelope of a created operation (`op` is its view, GET /1.0/operations/ID). */
export function asyncEnvelope<Op extends { id: string }>(op: Op) {
  return {
    type: "async",
    status: "Operation created",
    status_code: 100,
    operation: `/1.0/operations/${op.id}`,
    error_code: 0,
    error: "",
    metadata: op,
  };
}

export function errorEnvelope(code: number, message: string) {
  return { type: "error", status: "", status_code: 0, operation: "", error_code: code, error: message, metadata: null };
}

/** Go's json.Encoder ends every document with a newline; clients diffing bodies see the same bytes. */
export function encode(body: unknown): string {
  return JSON.stringify(body) + "\n";
}
