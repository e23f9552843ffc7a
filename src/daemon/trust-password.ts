// core.trust_password is kept as hex(salt ‖ scrypt(password, salt)), as upstream stores it;
// the clear text is never written anywhere.
import { randomBytes, scrypt, scryptSync, timingSafeEqual } from "node:crypto";

const SALT_BYTES = 32;
const KEY_BYTES = 64;
const PARAMS = { N: 1 << 14, r: 8, p: 1 };

export function hashPassword(password: string): string {
  const salt = randomBytes(SALT_BYTES);
  return Buffer.concat([salt, scryptSync(password, salt, KEY_BYTES, PARAMS)]).toString("hex");
}

/** Off the event loop: password guesses from the network must not stall the daemon. */
export async function checkPassword(stored: string, password: string): Promise<boolean> {
  const buf = Buffer.from(stored, "hex");
  if (buf.length !== SALT_BYTES + KEY_BYTES) return false;
  const salt = buf.subarray(0, SALT_BYTES);
  const key = await new Promise<Buffer>((resolve, reject) => scrypt(password, salt, KEY_BYTES, PARAMS, (err, k) => (err ? reject(err) : resolve(k))));
  return timingSafeEqual(buf.subarray(SALT_BYTES), key);
}
