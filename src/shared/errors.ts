// Errors carry their HTTP status where they arise; envelope.ts maps them to LXD's error envelope once.
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequest extends ApiError {
  constructor(message: string) {
    super(400, message);
  }
}
export class Forbidden extends ApiError {
  constructor(message = "not authorized") {
    super(403, message);
  }
}
export class NotFound extends ApiError {
  constructor(message = "not found") {
    super(404, message);
  }
}
export class Conflict extends ApiError {
  constructor(message: string) {
    super(409, message);
  }
}
export class PreconditionFailed extends ApiError {
  constructor(message: string) {
    super(412, message);
  }
}
export class InternalError extends ApiError {
  constructor(message: string) {
    super(500, message);
  }
}
export class NotImplemented extends ApiError {
  constructor(message = "not implemented") {
    super(501, message);
  }
}
export class Unavailable extends ApiError {
  constructor(message: string) {
    super(503, message);
  }
}

/** The status and message any thrown value turns into. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new InternalError(message);
}
