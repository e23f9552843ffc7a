// Instance file transfer (GET/HEAD/POST/DELETE /1.0/instances/NAME/files?path=). Every path is
// resolved by the kernel inside the instance's root (see in-root.ts); ownership crosses the
// instance's idmap: requests and answers speak container ids, the disk holds host ids.
import { closeSync, constants, createReadStream, fchmodSync, fstatSync, readdirSync, type Stats } from "node:fs";
import type { Readable } from "node:stream";
import { BadRequest, InternalError, NotFound } from "../shared/errors.js";
import type { RuntimeOf } from "../instances/access.js";
import type { IdMap, InstanceRuntime } from "../instances/runtime-port.js";
import { InstanceRoot, O_PATH, withRoot } from "./in-root.js";
import { writeContent } from "./upload.js";

export type FileType = "file" | "directory" | "symlink";

export interface FileHeaders {
  uid: number;
  gid: number;
  mode: number;
  type: FileType;
  modified: Date;
}

export type FileContent =
  | { kind: "file"; headers: FileHeaders; size: number; open(): Readable }
  | { kind: "directory"; headers: FileHeaders; entries: string[] }
  | { kind: "symlink"; headers: FileHeaders; target: string };

export interface PushOptions {
  type: FileType;
  write: "overwrite" | "append";
  /** Container ids and mode; undefined = LXD's default for new entries (0, 0, 0644/0750). */
  uid?: number;
  gid?: number;
  mode?: number;
}

const OVERFLOW_ID = 65534;

/** Downloads read the file in chunks of this size (the default 64 KiB costs a syscall and a socket write per chunk). */
const READ_CHUNK = 1 << 20;

/** Errno → LXD's answers: a missing path is 404 "Not Found". */
function fileError(err: unknown, path: string): Error {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case "ENOENT":
    case "ENOTDIR":
      return new NotFound("Not Found");
    case "EISDIR":
      return new InternalError(`open ${path}: is a directory`);
    case "ENOTEMPTY":
      return new InternalError(`remove ${path}: directory not empty`);
    case "EEXIST":
      return new InternalError(`open ${path}: file exists`);
    case "ELOOP":
      return new BadRequest(`${path}: too many levels of symbolic links`);
    default:
      return e instanceof Error && "status" in e ? e : new InternalError(`${path}: ${e.message}`);
  }
}

function typeOf(st: Stats): FileType | undefined {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "directory";
  if (st.isSymbolicLink()) return "symlink";
  return undefined;
}

function headersOf(st: Stats, idmap: IdMap, type: FileType): FileHeaders {
  const uid = idmap.reverseUid(st.uid);
  const gid = idmap.reverseGid(st.gid);
  return { uid: uid < 0 ? OVERFLOW_ID : uid, gid: gid < 0 ? OVERFLOW_ID : gid, mode: st.mode & 0o7777, type, modified: st.mtime };
}

export class FileService {
  constructor(private readonly deps: { runtimeOf: RuntimeOf }) {}

  private runtime(project: string, name: string): InstanceRuntime {
    return this.deps.runtimeOf(project, name);
  }

  /** What GET/HEAD answer for `path`. The returned file stream owns its fd. */
  get(project: string, name: string, path: string): FileContent {
    const rt = this.runtime(project, name);
    return withRoot(rt, (root) => {
      let entry: ReturnType<InstanceRoot["lstat"]>;
      try {
        entry = root.lstat(path);
      } catch (e) {
        throw fileError(e, path);
      }
      try {
        const type = typeOf(entry.stat);
        if (!type) throw new BadRequest(`Bad file type: ${path} is not a regular file, directory or symlink`);
        const headers = headersOf(entry.stat, rt.idmap, type);
        if (type === "symlink") return { kind: "symlink", headers, target: root.readlink(entry.fd) };
        if (type === "directory") {
          const dirFd = root.open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
          try {
            return { kind: "directory", headers, entries: readdirSync(`/proc/self/fd/${dirFd}`) };
          } finally {
            closeSync(dirFd);
          }
        }
        const fd = root.open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
        const size = fstatSync(fd).size;
        return { kind: "file", headers, size, open: () => createReadStream("", { fd, autoClose: true, highWaterMark: READ_CHUNK }) };
      } catch (e) {
        throw fileError(e, path);
      } finally {
        closeSync(entry.fd);
      }
    });
  }

  async push(project: string, name: string, path: string, opts: PushOptions, body: Readable): Promise<void> {
    const rt = this.runtime(project, name);
    const uid = opts.uid === undefined ? undefined : rt.idmap.uid(opts.uid);
    const gid = opts.gid === undefined ? undefined : rt.idmap.gid(opts.gid);
    if (uid === -1 || gid === -1) throw new BadRequest("Requested uid/gid isn't mapped in the instance");
    const root = InstanceRoot.open(rt);
    try {
      const existing = root.tryLstat(path);
      if (existing) closeSync(existing.fd);
      const owner = (fd: number) => root.chown(fd, uid ?? rt.idmap.uid(0), gid ?? rt.idmap.gid(0));
      if (opts.type === "directory") {
        if (existing) {
          if (!existing.stat.isDirectory()) throw Object.assign(new Error("exists"), { code: "EEXIST" });
          return;
        }
        root.mkdir(path, opts.mode ?? 0o750);
        const fd = root.open(path, O_PATH | constants.O_NOFOLLOW | constants.O_DIRECTORY);
        try {
          owner(fd);
          // mkdir's mode went through the umask.
          const dirFd = root.open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
          fchmodSync(dirFd, opts.mode ?? 0o750);
          closeSync(dirFd);
        } finally {
          closeSync(fd);
        }
        return;
      }
      if (opts.type === "symlink") {
        const target = (await readAll(body, 4096)).toString("utf8");
        if (!target) throw new BadRequest("Symlink target is empty");
        if (existing) {
          if (!existing.stat.isSymbolicLink()) throw Object.assign(new Error("exists"), { code: "EEXIST" });
          root.remove(path, false);
        }
        root.symlink(target, path);
        const fd = root.open(path, O_PATH | constants.O_NOFOLLOW);
        try {
          owner(fd);
        } finally {
          closeSync(fd);
        }
        return;
      }
      if (existing?.stat.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
      // Overwrite rewrites in place and truncates once at the end (writeContent), where O_TRUNC
      // would free a large file's blocks only to allocate them again: tens of ms for 50 MiB,
      // and on ext4 a wait for the writeback its replace-by-truncate heuristic started.
      const flags = constants.O_WRONLY | constants.O_CREAT | (opts.write === "append" ? constants.O_APPEND : 0);
      const fd = root.open(path, flags, opts.mode ?? 0o644);
      try {
        // New files get the requested (or default) owner and mode; existing ones keep theirs, as LXD.
        if (!existing) {
          owner(fd);
          fchmodSync(fd, opts.mode ?? 0o644);
        }
        await writeContent(body, fd, opts.write === "overwrite");
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      throw fileError(e, path);
    } finally {
      root.close();
    }
  }

  delete(project: string, name: string, path: string): void {
    const rt = this.runtime(project, name);
    withRoot(rt, (root) => {
      try {
        const { fd, stat } = root.lstat(path);
        closeSync(fd);
        root.remove(path, stat.isDirectory());
      } catch (e) {
        throw fileError(e, path);
      }
    });
  }
}

async function readAll(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of body) {
    size += (c as Buffer).length;
    if (size > limit) throw new BadRequest("Symlink target is too long");
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}
