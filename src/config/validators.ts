// Value validators shared by every config key table. Each throws Error(message) on a bad value;
// messages are LXD's, since users and scripts read them.
import { isIP } from "node:net";

import { parseCompressionAlgorithm } from "../images/compression.js";

export type Validator = (value: string) => void;

export const isAny: Validator = () => {};

export const isBool: Validator = (v) => {
  if (!["true", "false", "yes", "no", "on", "off", "1", "0"].includes(v.toLowerCase())) throw new Error("invalid boolean");
};

export const isInt64: Validator = (v) => {
  if (!/^-?[0-9]+$/.test(v)) throw new Error("invalid integer");
};

export const isUint32: Validator = (v) => {
  if (!/^[0-9]+$/.test(v) || Number(v) > 0xffffffff) throw new Error(`Invalid value for uint32 "${v}"`);
};

export const oneOf =
  (...choices: string[]): Validator =>
  (v) => {
    if (!choices.includes(v)) throw new Error(`Invalid value "${v}" (not one of [${choices.join(" ")}])`);
  };

/** An empty value always passes (unset). */
export const optional =
  (inner: Validator): Validator =>
  (v) => {
    if (v !== "") inner(v);
  };

export const parseBool = (v: string | undefined): boolean => ["true", "yes", "on", "1"].includes((v ?? "").toLowerCase());

/** host:port, [v6]:port, host, or :port — resolvable without DNS for literal addresses. */
export const isListenAddress: Validator = (v) => {
  const { host } = splitHostPort(v);
  if (host === "" || host === "::" || host === "0.0.0.0") return;
  if (isIP(host) || host === "localhost") return;
  throw new Error(`Couldn't resolve "${v}"`);
};

export function splitHostPort(v: string, defaultPort = 8443): { host: string; port: number } {
  let host = v;
  let port = defaultPort;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(v);
  if (bracket) {
    host = bracket[1];
    if (bracket[2]) port = Number(bracket[2]);
  } else if (v.split(":").length === 2) {
    const [h, p] = v.split(":");
    host = h;
    port = Number(p);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`Couldn't resolve "${v}"`);
  return { host, port };
}

export const isIPv4: Validator = (v) => {
  if (isIP(v) !== 4) throw new Error(`Not an IPv4 address "${v}"`);
};

/** A compressor we run (gzip, bzip2, xz, lzma, zstd, none), with only level/thread flags. */
export const isCompressionAlgorithm: Validator = (v) => {
  parseCompressionAlgorithm(v);
};

/** LXD expiry expressions such as "30d", "1H 2M". */
export const isExpiry: Validator = (v) => {
  if (!/^(\s*\d+(M|H|d|w|m|y|S)\s*)+$/.test(v)) throw new Error("Invalid expiry expression");
};

export const ARCHITECTURES = ["ppc64le", "s390x", "mips64", "i686", "armv7l", "ppc", "ppc64", "armv8l", "riscv64", "x86_64", "armv6l", "aarch64", "mips", "riscv32"];

