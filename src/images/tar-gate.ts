// A streaming tar reader that validates every member header BEFORE passing its bytes on.
// Put between a decompressor and `tar -x`: tar only ever sees members that were checked,
// in the order they were checked, so there is no window between validation and
// extraction (one pass, no re-read of the file). Also used alone to scan an upload.
//
// Leading `/` in member names (and hard link targets) are dropped, as GNU tar drops them on
// extract (LXD's own test images are written with `/rootfs/...` names). The gate rewrites those
// headers before forwarding, so tar downstream sees the same relative names that were checked
// (and a member selection such as `backup/container` matches them). Extended headers (pax, GNU
// long names) are held until the member they describe has been validated, then forwarded.
//
// Refused (TarRefused): `..` components, a member whose path goes
// through a symlink (or hard link to one) created earlier in the same archive, a member
// that replaces such a symlink, hard links whose target breaks those rules, symlinks /
// fifos outside rootfs/, device nodes outside rootfs/dev/, `rootfs` or `templates` that
// are not directories, and anything this reader does not understand exactly the way GNU
// tar does (bad checksums, unknown member types, sparse files, non-ustar headers, data on
// non-file members). Failing closed keeps our reading and GNU tar's from diverging.
import { Transform, type TransformCallback } from "node:stream";
import { BLOCK, cString, joinName, normalise, padded, parseNumber, parsePax, printable, relative, rewritePax, roundUp, setChecksum, verifyChecksum, writeOctal, TarRefused } from "./tar-format.js";

export { TarRefused };


export type MemberKind = "file" | "hardlink" | "symlink" | "chardev" | "blockdev" | "directory" | "fifo";

export interface TarMember {
  /** Normalised path relative to the unpack target ("" is the target itself). */
  path: string;
  kind: MemberKind;
  /** Normalised target for hard links, raw target for symlinks. */
  linkname: string;
  size: number;
  mode: number;
}

export interface TarGateOptions {
  /**
   * Where the archive's members land relative to the unpack target: "" for a unified image
   * or a metadata tarball, "rootfs" for a split image's rootfs tarball.
   */
  root?: string;
  /** Keep the content of this member (normalised path, e.g. "metadata.yaml"). */
  capture?: string;
  captureLimit?: number;
  /** Forward bytes downstream (gate mode). False: only scan. */
  forward?: boolean;
  /**
   * An instance backup (LXD's export format): every member is under backup/, and the
   * volume rules (rootfs/, templates/, devices, symlinks) apply inside backup/container/
   * and each backup/snapshots/<name>/.
   */
  backup?: boolean;
  /**
   * A custom volume backup: every member is under backup/; backup/volume/ and each
   * backup/volume-snapshots/<name>/ hold a volume's files (symbolic links and FIFOs allowed
   * anywhere inside it, device nodes nowhere).
   */
  volumeBackup?: boolean;
}

const META_LIMIT = 1024 * 1024;
const ZERO_END = Buffer.alloc(2 * BLOCK);

const KINDS: Record<string, MemberKind> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "chardev",
  "4": "blockdev",
  "5": "directory",
  "6": "fifo",
};

type Mode = { kind: "header" } | { kind: "meta"; type: string; size: number; need: number } | { kind: "data"; remaining: number; capture: boolean; size: number } | { kind: "end" };

export class TarGate extends Transform {
  /** Members accepted so far. */
  count = 0;
  /** Content of the `capture` member, when seen. */
  captured?: Buffer;
  /** A rootfs/ directory (container image) or a rootfs.img (VM image) was seen. */
  sawRootfs = false;
  sawRootfsImg = false;

  private readonly root: string;
  private readonly forward: boolean;
  private mode: Mode = { kind: "header" };
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private pax: Record<string, string> = {};
  private globalPax: Record<string, string> = {};
  private longName?: string;
  private longLink?: string;
  /** Extended headers (header block + content) waiting for the member they describe. */
  private held: { type: string; header: Buffer; content: Buffer }[] = [];
  private heldLen = 0;
  private heldHeader?: Buffer;
  private readonly kinds = new Map<string, MemberKind>();
  private readonly symlinks = new Set<string>();
  private captureChunks: Buffer[] = [];
  private captureLen = 0;

  constructor(private readonly opts: TarGateOptions = {}) {
    super();
    this.root = opts.root ? normalise(opts.root, "root") : "";
    this.forward = opts.forward ?? true;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.consume(chunk);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.mode.kind === "end" || (this.mode.kind === "header" && this.pendingLen === 0)) return cb();
    cb(new TarRefused("Unexpected end of archive"));
  }

  private emit_(buf: Buffer): void {
    if (this.forward) this.push(buf);
  }

  private consume(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const m = this.mode;
      if (m.kind === "end") return;
      if (m.kind === "data") {
        const n = Math.min(m.remaining, chunk.length - off);
        const slice = chunk.subarray(off, off + n);
        this.emit_(slice);
        if (m.capture) this.keep(slice, m);
        m.remaining -= n;
        off += n;
        if (m.remaining === 0) {
          if (m.capture) this.captured = Buffer.concat(this.captureChunks).subarray(0, m.size);
          this.mode = { kind: "header" };
        }
        continue;
      }
      const need = m.kind === "header" ? BLOCK : m.need;
      const take = Math.min(need - this.pendingLen, chunk.length - off);
      this.pending.push(chunk.subarray(off, off + take));
      this.pendingLen += take;
      off += take;
      if (this.pendingLen < need) continue;
      const block = Buffer.concat(this.pending);
      this.pending = [];
      this.pendingLen = 0;
      if (m.kind === "header") this.header(block);
      else this.meta(m.type, block.subarray(0, m.size), block);
    }
  }

  private keep(slice: Buffer, m: { size: number; remaining: number }): void {
    const limit = this.opts.captureLimit ?? 4 * 1024 * 1024;
    if (m.size > limit) throw new TarRefused(`${this.opts.capture} is too large`);
    if (this.captureLen < m.size) {
      this.captureChunks.push(Buffer.from(slice));
      this.captureLen += slice.length;
    }
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      // End of archive. tar stops here too; anything after is dropped.
      this.emit_(ZERO_END);
      this.mode = { kind: "end" };
      return;
    }
    verifyChecksum(block);
    const magic = block.toString("latin1", 257, 265);
    const posix = magic.startsWith("ustar\0");
    if (!posix && magic !== "ustar  \0") throw new TarRefused("Unsupported tar format (not ustar, pax or GNU)");
    const type = String.fromCharCode(block[156]);
    const size = parseNumber(block.subarray(124, 136), "size");

    if (type === "x" || type === "g" || type === "L" || type === "K") {
      if (size > META_LIMIT) throw new TarRefused("Tar extended header too large");
      this.heldLen += BLOCK + roundUp(size);
      if (this.heldLen > 4 * META_LIMIT) throw new TarRefused("Tar extended headers too large");
      if (size === 0) {
        this.held.push({ type, header: block, content: Buffer.alloc(0) });
        return;
      }
      this.heldHeader = block;
      this.mode = { kind: "meta", type, size, need: roundUp(size) };
      return;
    }
    const kind = KINDS[type];
    if (!kind) throw new TarRefused(`Unsupported tar member type '${printable(type)}'`);

    const pax = { ...this.globalPax, ...this.pax };
    let name = this.longName ?? cString(block, 0, 100);
    if (this.longName === undefined && posix && block[345] !== 0) name = cString(block, 345, 155) + "/" + name;
    if (pax.path !== undefined) name = pax.path;
    let linkname = this.longLink ?? cString(block, 157, 100);
    if (pax.linkpath !== undefined) linkname = pax.linkpath;
    let memberSize = size;
    if (pax.size !== undefined) {
      if (!/^[0-9]+$/.test(pax.size)) throw new TarRefused("Invalid size in tar extended header");
      memberSize = Number(pax.size);
    }
    this.pax = {};
    this.longName = undefined;
    this.longLink = undefined;

    const mode = parseNumber(block.subarray(100, 108), "mode");
    const member = this.validate(name, kind, linkname, memberSize, mode);
    this.count++;
    this.forwardMember(block, posix, kind === "hardlink");
    if (kind !== "file") {
      if (memberSize !== 0) throw new TarRefused(`Tar member ${name} of type ${kind} carries data`);
      return;
    }
    if (memberSize === 0) {
      if (member.path === this.opts.capture) this.captured = Buffer.alloc(0);
      return;
    }
    const capture = member.path === this.opts.capture;
    if (capture) {
      this.captureChunks = [];
      this.captureLen = 0;
    }
    this.mode = { kind: "data", remaining: roundUp(memberSize), capture, size: memberSize };
  }

  /**
   * Forwards the held extended headers and the member's header, with leading slashes dropped
   * from its name (and from a hard link's target; a symlink's target is its content, kept).
   * Unchanged archives are forwarded byte for byte.
   */
  private forwardMember(block: Buffer, posix: boolean, hardlink: boolean): void {
    for (const h of this.held) {
      let content = h.content;
      if (h.type === "L" || (h.type === "K" && hardlink)) {
        const text = cString(content, 0, content.length);
        if (text.startsWith("/")) content = Buffer.from(relative(text) + "\0", "latin1");
      } else if (h.type === "x") {
        content = rewritePax(content, hardlink);
      }
      if (content === h.content) {
        this.emit_(h.header);
        if (content.length) this.emit_(padded(content));
      } else {
        const header = Buffer.from(h.header);
        writeOctal(header, 124, 12, content.length);
        setChecksum(header);
        this.emit_(header);
        this.emit_(padded(content));
      }
    }
    this.held = [];
    this.heldLen = 0;
    let out = block;
    const prefixed = posix && block[345] !== 0;
    if (prefixed ? block[345] === 0x2f : block[0] === 0x2f) {
      out = Buffer.from(block);
      const [start, len] = prefixed ? [345, 155] : [0, 100];
      const text = relative(cString(out, start, len));
      out.fill(0, start, start + len);
      // "/" alone with an empty prefix left: GNU tar names the member "." too.
      out.write(prefixed && text === "." ? "" : text, start, len, "latin1");
    }
    if (hardlink && block[157] === 0x2f) {
      if (out === block) out = Buffer.from(block);
      const text = relative(cString(out, 157, 100));
      out.fill(0, 157, 257);
      out.write(text, 157, 100, "latin1");
    }
    if (out !== block) setChecksum(out);
    this.emit_(out);
  }

  private meta(type: string, content: Buffer, _whole: Buffer): void {
    this.held.push({ type, header: this.heldHeader!, content: Buffer.from(content) });
    this.heldHeader = undefined;
    this.mode = { kind: "header" };
    if (type === "L") this.longName = cString(content, 0, content.length);
    else if (type === "K") this.longLink = cString(content, 0, content.length);
    else {
      const records = parsePax(content);
      if (type === "g") {
        for (const k of Object.keys(records)) {
          if (k === "path" || k === "linkpath" || k === "size") throw new TarRefused(`Unsupported global tar header keyword ${k}`);
        }
        Object.assign(this.globalPax, records);
      } else Object.assign(this.pax, records);
    }
  }

  /**
   * Check one member of an archive that is not a tar stream (a squashfs rootfs listing),
   * in listing order, under the same rules as a tar member.
   */
  admit(name: string, kind: MemberKind, linkname: string, size: number, mode: number): TarMember {
    const member = this.validate(name, kind, linkname, size, mode);
    this.count++;
    return member;
  }

  private validate(rawName: string, kind: MemberKind, rawLink: string, size: number, mode: number): TarMember {
    // GNU tar extracts a "regular file" named "x/" as a directory (BSD convention): refuse the ambiguity.
    if (kind !== "directory" && rawName.endsWith("/")) throw new TarRefused(`Tar member ${rawName} of type ${kind} has a trailing slash`);
    const rel = normalise(rawName, "name");
    const path = joinName(this.root, rel);
    if (path === this.root && kind !== "directory") throw new TarRefused(`Tar member ${rawName} is not a directory`);
    this.checkNotThroughSymlink(path, rawName);
    if (this.symlinks.has(path)) throw new TarRefused(`Tar member ${rawName} replaces a symbolic link from the same archive`);

    const vol = this.opts.volumeBackup ? volumeBackupPath(path, kind, rawName) : this.opts.backup ? backupVolumePath(path, kind, rawName) : path;
    const top = vol.split("/")[0];
    if (vol === "rootfs" || vol === "templates") {
      if (kind !== "directory") throw new TarRefused(`Tar member ${rawName} must be a directory`);
    }
    if (vol === "metadata.yaml" && kind !== "file") throw new TarRefused("metadata.yaml must be a regular file");
    const inRootfs = top === "rootfs" && vol !== "rootfs";
    let linkname = "";

    switch (kind) {
      case "symlink":
        if (!inRootfs) throw new TarRefused(`Symbolic link ${rawName} outside rootfs/`);
        if (rawLink === "" || rawLink.includes("\0")) throw new TarRefused(`Symbolic link ${rawName} has an invalid target`);
        this.symlinks.add(path);
        linkname = rawLink;
        break;
      case "hardlink": {
        const target = joinName(this.root, normalise(rawLink, "hard link target"));
        this.checkNotThroughSymlink(target, rawLink);
        if (target === "" || target === this.root) throw new TarRefused(`Hard link ${rawName} points at the unpack directory`);
        const targetKind = this.kinds.get(target);
        if (targetKind === undefined) throw new TarRefused(`Hard link ${rawName} points at ${rawLink}, which is not an earlier member`);
        if (targetKind === "directory") throw new TarRefused(`Hard link ${rawName} points at a directory`);
        // In a backup, a hard link stays inside its own volume (container or one snapshot).
        if ((this.opts.backup || this.opts.volumeBackup) && backupVolumeOf(target) !== backupVolumeOf(path)) throw new TarRefused(`Hard link ${rawName} points outside its volume`);
        // A hard link to a symlink is a symlink: later members must not go through it either.
        if (this.symlinks.has(target)) {
          if (!inRootfs) throw new TarRefused(`Symbolic link ${rawName} outside rootfs/`);
          this.symlinks.add(path);
        }
        linkname = target;
        break;
      }
      case "chardev":
      case "blockdev":
        if (this.opts.volumeBackup) throw new TarRefused(`Device node ${rawName} in a volume backup`);
        if (!vol.startsWith("rootfs/dev/")) throw new TarRefused(`Device node ${rawName} outside rootfs/dev/`);
        break;
      case "fifo":
        if (!inRootfs) throw new TarRefused(`FIFO ${rawName} outside rootfs/`);
        break;
      default:
        break;
    }
    this.kinds.set(path, this.kinds.get(linkname) && kind === "hardlink" ? this.kinds.get(linkname)! : kind);
    if (top === "rootfs") this.sawRootfs = true;
    if (vol === "rootfs.img") this.sawRootfsImg = true;
    return { path, kind, linkname, size, mode };
  }

  private checkNotThroughSymlink(path: string, raw: string): void {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (this.symlinks.has(prefix)) throw new TarRefused(`Tar member ${raw} goes through the symbolic link ${prefix}`);
    }
  }
}

/**
 * Where a backup member lands inside its volume: "backup/container/X" and
 * "backup/snapshots/S/X" → "X". The top-level entries map to themselves. Anything else is refused.
 */
function backupVolumePath(path: string, kind: MemberKind, raw: string): string {
  const parts = path.split("/");
  if (parts[0] !== "backup") throw new TarRefused(`Tar member ${raw} is not under backup/`);
  if (isOptimizedMember(parts, kind, "container", "snapshots")) return path;
  if (parts.length === 1 || (parts.length === 2 && (parts[1] === "container" || parts[1] === "snapshots")) || (parts.length === 3 && parts[1] === "snapshots")) {
    if (kind !== "directory") throw new TarRefused(`Tar member ${raw} must be a directory`);
    return path;
  }
  if (parts.length === 2 && parts[1] === "index.yaml") {
    if (kind !== "file") throw new TarRefused("backup/index.yaml must be a regular file");
    return path;
  }
  if (parts[1] === "container") return parts.slice(2).join("/");
  if (parts[1] === "snapshots" && parts.length > 3) return parts.slice(3).join("/");
  throw new TarRefused(`Unexpected member ${raw} in backup`);
}

/**
 * Where a custom volume backup member lands: "backup/volume/X" and
 * "backup/volume-snapshots/S/X" are a volume's files, checked as a rootfs ("rootfs/X").
 */
function volumeBackupPath(path: string, kind: MemberKind, raw: string): string {
  const parts = path.split("/");
  if (parts[0] !== "backup") throw new TarRefused(`Tar member ${raw} is not under backup/`);
  if (isOptimizedMember(parts, kind, "volume", "volume-snapshots")) return path;
  if (isBlockDiskMember(parts, kind)) return path;
  if (parts.length === 1 || (parts.length === 2 && (parts[1] === "volume" || parts[1] === "volume-snapshots")) || (parts.length === 3 && parts[1] === "volume-snapshots")) {
    if (kind !== "directory") throw new TarRefused(`Tar member ${raw} must be a directory`);
    return path;
  }
  if (parts.length === 2 && parts[1] === "index.yaml") {
    if (kind !== "file") throw new TarRefused("backup/index.yaml must be a regular file");
    return path;
  }
  if (parts[1] === "volume") return ["rootfs", ...parts.slice(2)].join("/");
  if (parts[1] === "volume-snapshots" && parts.length > 3) return ["rootfs", ...parts.slice(3)].join("/");
  throw new TarRefused(`Unexpected member ${raw} in backup`);
}

/**
 * The members of an optimized (btrfs) backup, regular files outside any volume:
 * backup/optimized_header.yaml, backup/MAIN.bin and backup/SNAPDIR/NAME.bin.
 */
function isOptimizedMember(parts: string[], kind: MemberKind, main: string, snapDir: string): boolean {
  if (kind !== "file") return false;
  if (parts.length === 2) return parts[1] === "optimized_header.yaml" || parts[1] === `${main}.bin`;
  return parts.length === 3 && parts[1] === snapDir && parts[2].endsWith(".bin") && parts[2].length > 4;
}

/**
 * A custom block volume's disks, regular files outside any volume tree (LXD's layout):
 * backup/volume.img and backup/volume-snapshots/NAME.img.
 */
function isBlockDiskMember(parts: string[], kind: MemberKind): boolean {
  if (kind !== "file") return false;
  if (parts.length === 2) return parts[1] === "volume.img";
  return parts.length === 3 && parts[1] === "volume-snapshots" && parts[2].endsWith(".img") && parts[2].length > 4;
}

function backupVolumeOf(path: string): string {
  const parts = path.split("/");
  return parts[1] === "snapshots" || parts[1] === "volume-snapshots" ? parts.slice(0, 3).join("/") : parts.slice(0, 2).join("/");
}
