// The busybox test image, built once per machine from Debian's busybox-static.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./daemon.js";

export const CACHE_DIR = "/tmp/nodelxd-test-cache";

export function busyboxImage(): string {
  const out = join(CACHE_DIR, "busybox.tar.xz");
  if (!existsSync(out)) {
    mkdirSync(CACHE_DIR, { recursive: true });
    execFileSync(join(ROOT, "test/fixtures/busybox-image.sh"), [out], { stdio: "pipe" });
  }
  return out;
}
