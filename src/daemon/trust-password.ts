// core.trust_password is kept as hex(salt ‖ scrypt(password, salt)), as upstream stores it;
// the clear text is never written anywhere.
import { randomBytes, scryptSync, timingSafeEqual } from "node:crypto";

const SALT_BYTES = 32;
const KEY_BYTES = 64;
const PARAMS = { N: 1 << 14, r: 8, p: 1 };

export function hashPassword(password: string): string {
  const salt = randomBytes(SALT_BYTES);
  return Buffer.concat([salt, scryptSync(password, salt, KEY_BYTES, PARAMS)]).toString("hex");
}

export function checkPassword(stored: string, password: string): boolean {
  const buf = Buffer.from(stored, "hex");
  if (buf.length !== SALT_BYTES + KEY_BYTES) return false;
  const salt = buf.subarray(0, SALT_BYTES);
  return timingSafeEqual(buf.subarray(SALT_BYTES), scryptSync(password, salt, KEY_BYTES, PARAMS));
}
