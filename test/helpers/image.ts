// The busybox test image, built once per machine from Debian's busybox-static.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
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

/** The busybox image split in two (metadata tarball and rootfs tarball), as image servers ship them. */
export function busyboxSplitImage(): { meta: string; rootfs: string } {
  const meta = join(CACHE_DIR, "busybox-split-meta.tar.xz");
  const rootfs = join(CACHE_DIR, "busybox-split-rootfs.tar.xz");
  if (!existsSync(meta) || !existsSync(rootfs)) {
    const unified = busyboxImage();
    const tmp = join(CACHE_DIR, `split-${process.pid}`);
    mkdirSync(tmp, { recursive: true });
    try {
      execFileSync("tar", ["-xJf", unified, "-C", tmp, "--numeric-owner"], { stdio: "pipe" });
      execFileSync("tar", ["-cJf", `${rootfs}.tmp`, "-C", join(tmp, "rootfs"), "--numeric-owner", "."], { stdio: "pipe" });
      const metaMembers = ["metadata.yaml", ...(existsSync(join(tmp, "templates")) ? ["templates"] : [])];
      execFileSync("tar", ["-cJf", `${meta}.tmp`, "-C", tmp, "--numeric-owner", ...metaMembers], { stdio: "pipe" });
      renameSync(`${rootfs}.tmp`, rootfs);
      renameSync(`${meta}.tmp`, meta);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return { meta, rootfs };
}
