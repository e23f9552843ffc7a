// JSON request bodies: bounded reads and Go-compatible error messages (clients and scripts match on them).
import type { IncomingMessage } from "node:http";
import { z } from "zod";
import { ApiError, BadRequest } from "./errors.js";

export const MAX_JSON_BODY = 32 * 1024 * 1024;

export class PayloadTooLarge extends ApiError {
  constructor() {
    super(413, `Request body too large (limit ${MAX_JSON_BODY} bytes)`);
  }
}

export async function readBody(stream: IncomingMessage, limit = MAX_JSON_BODY): Promise<Buffer> {
  const declared = Number(stream.headers["content-length"] ?? NaN);
  if (declared > limit) throw new PayloadTooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new PayloadTooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export function parseJson(text: string): unknown {
  if (text.trim() === "") throw new BadRequest("EOF");
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequest(goSyntaxError(text));
  }
}

/** Validate with a zod schema; a type mismatch reads like Go's encoding/json error. */
export function decode<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, value: unknown, goType: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue.path.join(".");
  if (issue.code === "invalid_type" && issue.received !== "undefined") {
    const got = goKind(issue.received);
    return fail(`json: cannot unmarshal ${got} into Go struct field ${goType}${field ? "." + field : ""} of type ${goKind(issue.expected)}`);
  }
  return fail(field ? `${field}: ${issue.message}` : issue.message);
}

function fail(message: string): never {
  throw new BadRequest(message);
}

function goKind(t: string): string {
  switch (t) {
    case "integer":
    case "float":
      return "number";
    case "integer|float":
      return "number";
    case "map":
    case "record":
    case "object":
      return "object";
    case "boolean":
      return "bool";
    default:
      return t;
  }
}

/**
 * Reproduces the message Go's json scanner gives for the first syntax error,
 * e.g. "invalid character 'b' looking for beginning of object key string".
 */
export function goSyntaxError(text: string): string {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n && " \t\r\n".includes(text[i])) i++;
  };
  const bad = (context: string): never => {
    throw new Error(`invalid character ${quoteChar(text[i])} ${context}`);
  };
  const end = (): never => {
    throw new Error("unexpected end of JSON input");
  };
  const value = (): void => {
    ws();
    if (i >= n) end();
    const c = text[i];
    if (c === "{") return object();
    if (c === "[") return array();
    if (c === '"') return string();
    if (c === "-" || (c >= "0" && c <= "9")) return number();
    for (const word of ["true", "false", "null"]) {
      if (c === word[0]) {
        for (let k = 0; k < word.length; k++, i++) {
          if (i >= n) end();
          if (text[i] !== word[k]) bad(`in literal ${word} (expecting ${quoteChar(word[k])})`);
        }
        return;
      }
    }
    bad("looking for beginning of value");
  };
  const string = (): void => {
    i++;
    while (i < n) {
      const c = text[i];
      if (c === '"') {
        i++;
        return;
      }
      if (c === "\\") {
        i++;
        if (i >= n) end();
        if (!'"\\/bfnrtu'.includes(text[i])) bad("in string escape code");
      } else if (c < " ") bad("in string literal");
      i++;
    }
    end();
  };
  const number = (): void => {
    if (text[i] === "-") i++;
    if (i >= n) end();
    if (!(text[i] >= "0" && text[i] <= "9")) bad("in numeric literal");
    while (i < n && /[0-9.eE+-]/.test(text[i])) i++;
  };
  /** `{…}` or `[…]`: `member` read once per comma until `close`. */
  const sequence = (close: string, member: () => void, after: string): void => {
    i++;
    ws();
    if (i >= n) end();
    if (text[i] === close) {
      i++;
      return;
    }
    for (;;) {
      member();
      ws();
      if (i >= n) end();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === close) {
        i++;
        return;
      }
      bad(after);
    }
  };
  const keyValue = (): void => {
    ws();
    if (i >= n) end();
    if (text[i] !== '"') bad("looking for beginning of object key string");
    string();
    ws();
    if (i >= n) end();
    if (text[i] !== ":") bad("after object key");
    i++;
    value();
  };
  const object = (): void => sequence("}", keyValue, "after object key:value pair");
  const array = (): void => sequence("]", value, "after array element");
  try {
    value();
    ws();
    if (i < n) bad("after top-level value");
    return "invalid JSON";
  } catch (e) {
    return (e as Error).message;
  }
}

function quoteChar(c: string): string {
  if (c === "'") return "'\\''";
  if (c === '"') return `'"'`;
  return `'${c}'`;
}
