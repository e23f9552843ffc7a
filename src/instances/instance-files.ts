// The files the API serves around an instance: its log directory (lxc.log, exec output,
// console.log) from the driver's log directory, and metadata.yaml and templates/ inside its
// volume. Routes call these; no route touches the filesystem.
import { createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync, type ReadStream } from "node:fs";
import { join } from "node:path";
import { BadRequest, InternalError, NotFound } from "../shared/errors.js";
import type { InstanceRow } from "../db/instance-repo.js";
import type { InstanceDriver } from "./drivers/types.js";

/** The files LXD serves from an instance's log directory (upstream's validLogFileName). */
export function validLogFileName(file: string): boolean {
  if (file.includes("/") || file.includes("\0")) return false;
  return ["lxc.log", "lxc.conf"].includes(file) || ["exec_", "migration_", "snapshot_"].some((p) => file.startsWith(p));
}

export function templatePath(dir: string, name: string): string {
  if (!name || name.includes("/") || name === "." || name === "..") throw new BadRequest("Invalid template name");
  return join(dir, "templates", name);
}

export class InstanceFiles {
  constructor(
    private readonly driver: InstanceDriver,
    /** The instance's mounted volume directory. */
    private readonly volumeDir: (row: InstanceRow) => Promise<string>,
  ) {}

  private logDir(row: InstanceRow): string {
    return this.driver.logDir({ project: row.project, name: row.name });
  }

  logNames(row: InstanceRow): string[] {
    const dir = this.logDir(row);
    return existsSync(dir) ? readdirSync(dir).filter(validLogFileName).sort() : [];
  }

  private logFile(row: InstanceRow, file: string): string {
    if (!validLogFileName(file)) throw new BadRequest(`log file name ${file} not valid`);
    return join(this.logDir(row), file);
  }

  /** A log file to stream, with its size and mtime (LXD's errors when missing). */
  openLog(row: InstanceRow, file: string): { size: number; mtime: Date; stream(): ReadStream } {
    const path = this.logFile(row, file);
    let st;
    try {
      st = statSync(path);
    } catch {
      throw new InternalError(`open ${path}: no such file or directory`);
    }
    if (!st.isFile()) throw new InternalError(`open ${path}: not a regular file`);
    return { size: st.size, mtime: st.mtime, stream: () => createReadStream(path) };
  }

  deleteLog(row: InstanceRow, file: string): void {
    const path = this.logFile(row, file);
    if (file === "lxc.log" || file === "lxc.conf") throw new BadRequest("lxc.log and lxc.conf may not be deleted");
    try {
      unlinkSync(path);
    } catch {
      throw new NotFound(`remove ${path}: no such file or directory`);
    }
  }

  consoleLog(row: InstanceRow): Buffer {
    const path = join(this.logDir(row), "console.log");
    return existsSync(path) ? readFileSync(path) : Buffer.alloc(0);
  }

  clearConsoleLog(row: InstanceRow): void {
    const path = join(this.logDir(row), "console.log");
    if (existsSync(path)) truncateSync(path, 0);
  }

  async readMetadata(row: InstanceRow): Promise<string> {
    const f = join(await this.volumeDir(row), "metadata.yaml");
    return existsSync(f) ? readFileSync(f, "utf8") : "";
  }

  async writeMetadata(row: InstanceRow, text: string): Promise<void> {
    writeFileSync(join(await this.volumeDir(row), "metadata.yaml"), text, { mode: 0o644 });
  }

  async templateNames(row: InstanceRow): Promise<string[]> {
    const t = join(await this.volumeDir(row), "templates");
    return existsSync(t) ? readdirSync(t).sort() : [];
  }

  async readTemplate(row: InstanceRow, name: string): Promise<Buffer> {
    const file = templatePath(await this.volumeDir(row), name);
    if (!existsSync(file)) throw new NotFound("Template not found");
    return readFileSync(file);
  }

  async writeTemplate(row: InstanceRow, name: string, data: Buffer): Promise<void> {
    const dir = await this.volumeDir(row);
    const file = templatePath(dir, name);
    mkdirSync(join(dir, "templates"), { recursive: true });
    writeFileSync(file, data, { mode: 0o644 });
  }

  async deleteTemplate(row: InstanceRow, name: string): Promise<void> {
    const file = templatePath(await this.volumeDir(row), name);
    if (!existsSync(file)) throw new NotFound("Template not found");
    rmSync(file);
  }
}
