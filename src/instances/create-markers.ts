// Instances whose "Creating instance" operation has not finished, marked on disk: a crash (kill
// -9, power loss) in the middle of a create (an image unpack, a copy, a migration from another
// server) would otherwise leave a half instance behind. The marker is durable before the
// instance's row is written and removed (durably) only once the create has succeeded; at the
// next start every instance still marked is removed with its volume. One file per create under
// $LXD_DIR/creating, on the member doing the create.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

export interface CreatingInstance {
  project: string;
  name: string;
  /** The new instance's volatile.uuid (a row of that name with another uuid is not this create's). */
  uuid?: string;
}

export class CreateMarkers {
  constructor(private readonly dir: string) {}

  private file(project: string, name: string): string {
    return join(this.dir, Buffer.from(`${project}/${name}`).toString("hex"));
  }

  /** Mark `project/name` as being created (on disk before this returns). */
  add(project: string, name: string, uuid: string): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const fd = openSync(this.file(project, name), "w", 0o600);
    try {
      writeSync(fd, JSON.stringify({ project, name, uuid }));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.syncDir();
  }

  /** The create is over (succeeded, or undone): forget the mark (on disk before this returns). */
  remove(project: string, name: string): void {
    rmSync(this.file(project, name), { force: true });
    this.syncDir();
  }

  /** Creates a crash interrupted. */
  list(): CreatingInstance[] {
    let files: string[];
    try {
      files = readdirSync(this.dir);
    } catch {
      return [];
    }
    const out: CreatingInstance[] = [];
    for (const f of files) {
      try {
        const m = JSON.parse(readFileSync(join(this.dir, f), "utf8")) as Partial<CreatingInstance>;
        if (typeof m.project === "string" && typeof m.name === "string") out.push({ project: m.project, name: m.name, uuid: typeof m.uuid === "string" ? m.uuid : undefined });
        else rmSync(join(this.dir, f), { force: true });
      } catch {
        // Cut off while being written: its row was never written either.
        rmSync(join(this.dir, f), { force: true });
      }
    }
    return out;
  }

  private syncDir(): void {
    const fd = openSync(this.dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
