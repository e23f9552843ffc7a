// The symlinks LXD keeps for instance volumes: $LXD_DIR/containers/<name> → the volume, and
// $LXD_DIR/snapshots/<name> → the instance's snapshot directory while it has snapshots.
import { lstat, mkdir, readdir, readlink, symlink, unlink } from "node:fs/promises";
import { join } from "node:path";
import { snapshotsSubPath } from "./drivers/types.js";
import { storageName } from "./volume-names.js";

export class InstanceLinks {
  constructor(private readonly paths: { dir: string; containers: string }) {}

  private instanceLink(project: string, name: string): string {
    return join(this.paths.containers, storageName(project, "container", name));
  }

  /** $LXD_DIR/containers/<name> → the volume, as upstream keeps it. */
  async ensureInstance(project: string, name: string, target: string): Promise<void> {
    const link = this.instanceLink(project, name);
    const current = await readlink(link).catch(() => undefined);
    if (current === target) return;
    if (current !== undefined) await unlink(link);
    await mkdir(this.paths.containers, { recursive: true });
    await symlink(target, link);
  }

  async removeInstance(project: string, name: string): Promise<void> {
    const link = this.instanceLink(project, name);
    const st = await lstat(link).catch(() => undefined);
    if (st?.isSymbolicLink()) await unlink(link);
  }

  private snapshotsLink(project: string, name: string): string {
    return join(this.paths.dir, "snapshots", storageName(project, "container", name));
  }

  /** $LXD_DIR/snapshots/<name> → the instance's snapshot directory on the pool mounted at `poolPath`, while it has one (as upstream). */
  async ensureSnapshots(poolPath: string, project: string, name: string): Promise<void> {
    const target = join(poolPath, snapshotsSubPath({ type: "container", name: storageName(project, "container", name), config: {} }));
    const link = this.snapshotsLink(project, name);
    const hasSnapshots = (await readdir(target).catch(() => [])).length > 0;
    const current = await readlink(link).catch(() => undefined);
    if (!hasSnapshots) {
      if (current !== undefined) await unlink(link);
      return;
    }
    if (current === target) return;
    if (current !== undefined) await unlink(link);
    await mkdir(join(this.paths.dir, "snapshots"), { recursive: true, mode: 0o700 });
    await symlink(target, link);
  }

  async removeSnapshots(project: string, name: string): Promise<void> {
    const st = await lstat(this.snapshotsLink(project, name)).catch(() => undefined);
    if (st?.isSymbolicLink()) await unlink(this.snapshotsLink(project, name));
  }
}
