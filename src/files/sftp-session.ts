// An SFTP (version 3) server over one upgraded connection, for `lxc file mount`. Every path
// goes through InstanceRoot (openat2 RESOLVE_IN_ROOT), like the file API; ids cross the
// instance's idmap. The client is trusted (root in the instance), as upstream's sftp server.
import { closeSync, constants, fchmodSync, fstatSync, ftruncateSync, futimesSync, readdirSync, readSync, writeSync, type Stats } from "node:fs";
import { posix } from "node:path";
import type { Duplex } from "node:stream";
import type { IdMap, InstanceRuntime } from "../instances/runtime-port.js";
import { InstanceRoot, O_PATH } from "./in-root.js";

const T = { INIT: 1, VERSION: 2, OPEN: 3, CLOSE: 4, READ: 5, WRITE: 6, LSTAT: 7, FSTAT: 8, SETSTAT: 9, FSETSTAT: 10, OPENDIR: 11, READDIR: 12, REMOVE: 13, MKDIR: 14, RMDIR: 15, REALPATH: 16, STAT: 17, RENAME: 18, READLINK: 19, SYMLINK: 20, STATUS: 101, HANDLE: 102, DATA: 103, NAME: 104, ATTRS: 105, EXTENDED: 200 } as const;
const FX = { OK: 0, EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4, BAD_MESSAGE: 5, OP_UNSUPPORTED: 8 } as const;
const ATTR = { SIZE: 0x1, UIDGID: 0x2, PERMISSIONS: 0x4, ACMODTIME: 0x8, EXTENDED: 0x80000000 } as const;
const PF = { READ: 0x1, WRITE: 0x2, APPEND: 0x4, CREAT: 0x8, TRUNC: 0x10, EXCL: 0x20 } as const;
const MAX_PACKET = 256 * 1024;
const MAX_READ = 64 * 1024;

interface Attrs {
  size?: bigint;
  uid?: number;
  gid?: number;
  mode?: number;
  atime?: number;
  mtime?: number;
}

class Reader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}
  u8(): number {
    return this.buf.readUInt8(this.off++);
  }
  u32(): number {
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  u64(): bigint {
    const v = this.buf.readBigUInt64BE(this.off);
    this.off += 8;
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    if (this.off + n > this.buf.length) throw new RangeError("short packet");
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  str(): string {
    return this.bytes().toString("utf8");
  }
  attrs(): Attrs {
    const flags = this.u32();
    const a: Attrs = {};
    if (flags & ATTR.SIZE) a.size = this.u64();
    if (flags & ATTR.UIDGID) {
      a.uid = this.u32();
      a.gid = this.u32();
    }
    if (flags & ATTR.PERMISSIONS) a.mode = this.u32();
    if (flags & ATTR.ACMODTIME) {
      a.atime = this.u32();
      a.mtime = this.u32();
    }
    if (flags & ATTR.EXTENDED) for (let n = this.u32(); n > 0; n--) this.bytes(), this.bytes();
    return a;
  }
}

class Writer {
  private parts: Buffer[] = [];
  u8(v: number): this {
    this.parts.push(Buffer.from([v]));
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.parts.push(b);
    return this;
  }
  bytes(v: Buffer): this {
    this.u32(v.length);
    this.parts.push(v);
    return this;
  }
  str(v: string): this {
    return this.bytes(Buffer.from(v, "utf8"));
  }
  packet(): Buffer {
    const body = Buffer.concat(this.parts);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    return Buffer.concat([len, body]);
  }
}

type Handle = { kind: "file"; fd: number } | { kind: "dir"; entries: string[] | undefined; path: string };

class SftpStatus extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

function statusOf(err: unknown): SftpStatus {
  if (err instanceof SftpStatus) return err;
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case "ENOENT":
    case "ENOTDIR":
      return new SftpStatus(FX.NO_SUCH_FILE, "No such file");
    case "EACCES":
    case "EPERM":
      return new SftpStatus(FX.PERMISSION_DENIED, "Permission denied");
    default:
      return new SftpStatus(FX.FAILURE, e.message ?? "Failure");
  }
}

export class SftpSession {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly handles = new Map<string, Handle>();
  private nextHandle = 1;
  private readonly root: InstanceRoot;
  private readonly idmap: IdMap;

  constructor(
    rt: InstanceRuntime,
    private readonly socket: Duplex,
  ) {
    this.root = InstanceRoot.open(rt);
    this.idmap = rt.idmap;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => socket.end());
    socket.on("close", () => this.close());
    socket.on("error", () => this.close());
  }

  private closed = false;
  private close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.handles.values()) if (h.kind === "file") closeSync(h.fd);
    this.handles.clear();
    this.root.close();
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.buffer.length >= 4) {
      const len = this.buffer.readUInt32BE(0);
      if (len > MAX_PACKET || len < 1) return void this.socket.destroy();
      if (this.buffer.length < 4 + len) return;
      const packet = this.buffer.subarray(4, 4 + len);
      this.buffer = this.buffer.subarray(4 + len);
      this.handle(packet);
    }
  }

  private send(w: Writer): void {
    if (!this.closed) this.socket.write(w.packet());
  }

  private status(id: number, code: number, message = ""): void {
    this.send(new Writer().u8(T.STATUS).u32(id).u32(code).str(message).str(""));
  }

  private writeAttrs(w: Writer, st: Stats): Writer {
    const uid = this.idmap.reverseUid(st.uid);
    const gid = this.idmap.reverseGid(st.gid);
    return w
      .u32(ATTR.SIZE | ATTR.UIDGID | ATTR.PERMISSIONS | ATTR.ACMODTIME)
      .u64(BigInt(st.size))
      .u32(uid < 0 ? 65534 : uid)
      .u32(gid < 0 ? 65534 : gid)
      .u32(st.mode)
      .u32(Math.floor(st.atimeMs / 1000))
      .u32(Math.floor(st.mtimeMs / 1000));
  }

  private stat(path: string, follow: boolean): Stats {
    const fd = this.root.open(path, O_PATH | (follow ? 0 : constants.O_NOFOLLOW));
    try {
      return fstatSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** chown/chmod/utimes/truncate on an open fd (O_PATH fds only take the chown). */
  private applyAttrs(fd: number, a: Attrs, pathOnly: boolean): void {
    if (a.uid !== undefined && a.gid !== undefined) {
      const uid = this.idmap.uid(a.uid);
      const gid = this.idmap.gid(a.gid);
      if (uid < 0 || gid < 0) throw new SftpStatus(FX.FAILURE, "id not mapped in the instance");
      this.root.chown(fd, uid, gid);
    }
    if (pathOnly) return;
    if (a.mode !== undefined) fchmodSync(fd, a.mode & 0o7777);
    if (a.size !== undefined) ftruncateSync(fd, Number(a.size));
    if (a.atime !== undefined && a.mtime !== undefined) futimesSync(fd, a.atime, a.mtime);
  }

  private setAttrsByPath(path: string, a: Attrs): void {
    const st = this.stat(path, true);
    const needData = a.mode !== undefined || a.size !== undefined || a.mtime !== undefined;
    const flags = st.isDirectory() ? constants.O_RDONLY | constants.O_DIRECTORY : a.size !== undefined ? constants.O_WRONLY : constants.O_RDONLY;
    const fd = this.root.open(path, needData ? flags : O_PATH);
    try {
      this.applyAttrs(fd, a, !needData);
    } finally {
      closeSync(fd);
    }
  }

  private newHandle(h: Handle): string {
    const name = String(this.nextHandle++);
    this.handles.set(name, h);
    return name;
  }

  private handle(packet: Buffer): void {
    const r = new Reader(packet);
    const type = r.u8();
    if (type === T.INIT) {
      this.send(new Writer().u8(T.VERSION).u32(3));
      return;
    }
    const id = r.u32();
    try {
      this.dispatch(type, id, r);
    } catch (err) {
      if (err instanceof RangeError) return this.status(id, FX.BAD_MESSAGE, "Bad message");
      const s = statusOf(err);
      this.status(id, s.code, s.message);
    }
  }

  private dispatch(type: number, id: number, r: Reader): void {
    switch (type) {
      case T.REALPATH: {
        const p = posix.normalize("/" + r.str()).replace(/(.)\/+$/, "$1");
        const st = this.stat(p, true);
        return this.send(this.writeAttrs(new Writer().u8(T.NAME).u32(id).u32(1).str(p).str(p), st));
      }
      case T.STAT:
      case T.LSTAT: {
        const st = this.stat(r.str(), type === T.STAT);
        return this.send(this.writeAttrs(new Writer().u8(T.ATTRS).u32(id), st));
      }
      case T.FSTAT: {
        const h = this.handles.get(r.bytes().toString());
        if (h?.kind !== "file") throw new SftpStatus(FX.FAILURE, "Bad handle");
        return this.send(this.writeAttrs(new Writer().u8(T.ATTRS).u32(id), fstatSync(h.fd)));
      }
      case T.OPEN: {
        const path = r.str();
        const pflags = r.u32();
        const a = r.attrs();
        const rw = pflags & PF.READ && pflags & PF.WRITE ? constants.O_RDWR : pflags & PF.WRITE ? constants.O_WRONLY : constants.O_RDONLY;
        let flags = rw;
        if (pflags & PF.APPEND) flags |= constants.O_APPEND;
        if (pflags & PF.CREAT) flags |= constants.O_CREAT;
        if (pflags & PF.TRUNC) flags |= constants.O_TRUNC;
        if (pflags & PF.EXCL) flags |= constants.O_EXCL;
        const existed = pflags & PF.CREAT ? this.root.tryLstat(path) : undefined;
        if (existed) closeSync(existed.fd);
        // openat2 refuses file-type bits in the mode (clients send st_mode-style values).
        const fd = this.root.open(path, flags, (a.mode ?? 0o644) & 0o7777);
        if (pflags & PF.CREAT && !existed) this.root.chown(fd, this.idmap.uid(0), this.idmap.gid(0));
        return this.send(new Writer().u8(T.HANDLE).u32(id).str(this.newHandle({ kind: "file", fd })));
      }
      case T.OPENDIR: {
        const path = r.str();
        const fd = this.root.open(path, constants.O_RDONLY | constants.O_DIRECTORY);
        let entries: string[];
        try {
          entries = [".", "..", ...readdirSync(`/proc/self/fd/${fd}`)];
        } finally {
          closeSync(fd);
        }
        return this.send(new Writer().u8(T.HANDLE).u32(id).str(this.newHandle({ kind: "dir", entries, path })));
      }
      case T.READDIR: {
        const h = this.handles.get(r.bytes().toString());
        if (h?.kind !== "dir") throw new SftpStatus(FX.FAILURE, "Bad handle");
        const batch = h.entries?.splice(0, 100) ?? [];
        if (!batch.length) return this.status(id, FX.EOF, "EOF");
        const w = new Writer().u8(T.NAME).u32(id);
        const named: [string, Stats][] = [];
        for (const name of batch) {
          try {
            named.push([name, this.stat(posix.join(h.path, name), false)]);
          } catch {
            /* vanished meanwhile */
          }
        }
        w.u32(named.length);
        for (const [name, st] of named) this.writeAttrs(w.str(name).str(name), st);
        return this.send(w);
      }
      case T.READ: {
        const h = this.handles.get(r.bytes().toString());
        const offset = r.u64();
        const len = Math.min(r.u32(), MAX_READ);
        if (h?.kind !== "file") throw new SftpStatus(FX.FAILURE, "Bad handle");
        const buf = Buffer.alloc(len);
        const n = readSync(h.fd, buf, 0, len, offset);
        if (n === 0) return this.status(id, FX.EOF, "EOF");
        return this.send(new Writer().u8(T.DATA).u32(id).bytes(buf.subarray(0, n)));
      }
      case T.WRITE: {
        const h = this.handles.get(r.bytes().toString());
        const offset = r.u64();
        const data = r.bytes();
        if (h?.kind !== "file") throw new SftpStatus(FX.FAILURE, "Bad handle");
        for (let done = 0; done < data.length; ) done += writeSync(h.fd, data, done, data.length - done, Number(offset) + done);
        return this.status(id, FX.OK);
      }
      case T.CLOSE: {
        const name = r.bytes().toString();
        const h = this.handles.get(name);
        if (!h) throw new SftpStatus(FX.FAILURE, "Bad handle");
        this.handles.delete(name);
        if (h.kind === "file") closeSync(h.fd);
        return this.status(id, FX.OK);
      }
      case T.SETSTAT: {
        const path = r.str();
        this.setAttrsByPath(path, r.attrs());
        return this.status(id, FX.OK);
      }
      case T.FSETSTAT: {
        const h = this.handles.get(r.bytes().toString());
        if (h?.kind !== "file") throw new SftpStatus(FX.FAILURE, "Bad handle");
        this.applyAttrs(h.fd, r.attrs(), false);
        return this.status(id, FX.OK);
      }
      case T.REMOVE:
        this.root.remove(r.str(), false);
        return this.status(id, FX.OK);
      case T.RMDIR:
        this.root.remove(r.str(), true);
        return this.status(id, FX.OK);
      case T.MKDIR: {
        const path = r.str();
        const a = r.attrs();
        this.root.mkdir(path, (a.mode ?? 0o755) & 0o7777);
        const fd = this.root.open(path, O_PATH | constants.O_NOFOLLOW | constants.O_DIRECTORY);
        try {
          this.root.chown(fd, this.idmap.uid(0), this.idmap.gid(0));
        } finally {
          closeSync(fd);
        }
        return this.status(id, FX.OK);
      }
      case T.RENAME: {
        const from = r.str();
        const to = r.str();
        if (this.root.tryLstat(to)) throw new SftpStatus(FX.FAILURE, "Target exists");
        this.root.rename(from, to);
        return this.status(id, FX.OK);
      }
      case T.READLINK: {
        const fd = this.root.open(r.str(), O_PATH | constants.O_NOFOLLOW);
        try {
          const target = this.root.readlink(fd);
          return this.send(new Writer().u8(T.NAME).u32(id).u32(1).str(target).str(target).u32(0));
        } finally {
          closeSync(fd);
        }
      }
      case T.SYMLINK: {
        // OpenSSH's servers take (target, link) in this order despite the draft.
        const target = r.str();
        const link = r.str();
        this.root.symlink(target, link);
        const fd = this.root.open(link, O_PATH | constants.O_NOFOLLOW);
        try {
          this.root.chown(fd, this.idmap.uid(0), this.idmap.gid(0));
        } finally {
          closeSync(fd);
        }
        return this.status(id, FX.OK);
      }
      default:
        return this.status(id, FX.OP_UNSUPPORTED, "Unsupported");
    }
  }
}
