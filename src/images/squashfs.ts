// Squashfs root filesystems (what image servers ship for containers): listed with the real
// `unsquashfs -lln`, every member checked by the same TarGate rules as a rootfs tarball
// (no "..", devices only under dev/, symlinks not traversed...), then unpacked with
// `unsquashfs` (the file is always an absolute path in our store: unsquashfs has no "--").
// Anything the listing parser does not understand exactly is refused.
import { open } from "node:fs/promises";
import { run } from "../os/exec.js";
import { TarGate, TarRefused, type MemberKind } from "./tar-gate.js";

const PREFIX = "squashfs-root";
const KIND: Record<string, MemberKind> = { "-": "file", d: "directory", l: "symlink", c: "chardev", b: "blockdev", p: "fifo" };
// "drwxr-xr-x 0/0   37 2020-01-01 00:00 squashfs-root/bin"; devices show "major, minor" as the size.
const LINE = /^([-dlcbps])([rwxsStT-]{9}) (\d+)\/(\d+) +(\d+|\d+, +\d+) (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) (squashfs-root(?:\/.*)?)$/;

export async function isSquashfs(file: string): Promise<boolean> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return bytesRead === 4 && buf.toString("latin1") === "hsqs";
  } finally {
    await fh.close();
  }
}

function permBits(p: string): number {
  let mode = 0;
  const bit = (i: number, on: boolean, v: number) => (on ? v : 0);
  mode |= bit(0, p[0] === "r", 0o400) | bit(1, p[1] === "w", 0o200) | bit(2, "xs".includes(p[2]), 0o100);
  mode |= bit(3, p[3] === "r", 0o40) | bit(4, p[4] === "w", 0o20) | bit(5, "xs".includes(p[5]), 0o10);
  mode |= bit(6, p[6] === "r", 0o4) | bit(7, p[7] === "w", 0o2) | bit(8, "xt".includes(p[8]), 0o1);
  if ("sS".includes(p[2])) mode |= 0o4000;
  if ("sS".includes(p[5])) mode |= 0o2000;
  if ("tT".includes(p[8])) mode |= 0o1000;
  return mode;
}

/** Check a squashfs listing (unsquashfs -lln output) as the rootfs/ of an image; returns the member count. */
export function checkSquashfsListing(listing: string): number {
  const gate = new TarGate({ root: "rootfs", forward: false });
  const lines = listing.split("\n").filter((l, i, all) => !(l === "" && i === all.length - 1));
  if (lines.length === 0 || !lines[0].endsWith(` ${PREFIX}`)) throw new TarRefused("Unreadable squashfs listing");
  for (const line of lines) {
    const m = LINE.exec(line);
    if (!m) throw new TarRefused(`Unexpected squashfs listing line ${JSON.stringify(line.slice(0, 200))}`);
    const kind = KIND[m[1]];
    if (!kind) throw new TarRefused(`Unsupported squashfs member type '${m[1]}'`);
    let name = m[7].slice(PREFIX.length).replace(/^\//, "");
    let target = "";
    if (kind === "symlink") {
      const parts = name.split(" -> ");
      // A symlink whose name or target holds " -> " cannot be read back unambiguously.
      if (parts.length !== 2) throw new TarRefused(`Ambiguous squashfs symbolic link ${JSON.stringify(name)}`);
      [name, target] = parts;
    }
    if (name === "" && kind !== "directory") throw new TarRefused("Squashfs root is not a directory");
    const size = kind === "file" ? Number(m[5]) : 0;
    gate.admit(name === "" ? "" : name, kind, target, size, permBits(m[2]));
  }
  return gate.count;
}

/** List and check `file` (a squashfs image) without unpacking it. */
export async function scanSquashfs(file: string, signal?: AbortSignal): Promise<void> {
  const { stdout, exitCode, stderr } = await run("unsquashfs", ["-lln", "-d", PREFIX, file], { signal, reject: false });
  if (signal?.aborted) throw new Error("Operation cancelled");
  if (exitCode !== 0) throw new TarRefused(`Invalid squashfs image: ${stderr.trim() || `unsquashfs exited with ${exitCode}`}`);
  try {
    checkSquashfsListing(stdout);
  } catch (e) {
    if (e instanceof TarRefused) throw new TarRefused(`Refusing unsafe squashfs image: ${e.message}`);
    throw e;
  }
}

/**
 * Check, then unpack `file` into `dest` (an existing, empty directory). `checked`: the caller
 * has already passed this very file through scanSquashfs (an image in the store).
 */
export async function extractSquashfs(file: string, dest: string, signal?: AbortSignal, opts: { checked?: boolean } = {}): Promise<void> {
  if (!opts.checked) await scanSquashfs(file, signal);
  const res = await run("unsquashfs", ["-n", "-f", "-d", dest, file], { signal, reject: false });
  if (signal?.aborted) throw new Error("Operation cancelled");
  if (res.exitCode !== 0) throw new Error(`Failed to unpack squashfs image: ${res.stderr.trim() || `exit ${res.exitCode}`}`);
}
