// Daemon storage (LXD's daemon_storage.go): storage.backups_volume / storage.images_volume put
// $LXD_DIR/backups or $LXD_DIR/images on a custom volume "<pool>/<volume>" of the default project.
// The directory becomes a symlink to the volume's mount path; content moves across on every change.
import { chmod, chown, lstat, mkdir, readdir, readlink, rename, rm, symlink, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { InternalError, NotFound } from "../shared/errors.js";
import { DAEMON_STORAGE_KEYS, type DaemonStorageType } from "./daemon-storage-keys.js";
import { localCopy } from "./rsync.js";
import type { PoolService } from "./pool-service.js";

export interface DaemonStorageDeps {
  lxdDir: string;
  log: Logger;
  /** The current value of a server config key. */
  config: (key: string) => string | undefined;
}

/** "<pool>/<volume>" split as LXD's daemonStorageSplitVolume. */
export function splitDaemonVolume(target: string): { pool: string; volume: string } {
  const fields = target.split("/");
  if (fields.length !== 2) throw new Error("Invalid syntax for volume, must be <pool>/<volume>");
  return { pool: fields[0]!, volume: fields[1]! };
}

export class DaemonStorage {
  constructor(
    private readonly deps: DaemonStorageDeps,
    private readonly pools: PoolService,
  ) {}

  /** The volume's mount path, mounting it (and its pool) first. */
  private mount(target: string): Promise<string> {
    const { pool, volume } = splitDaemonVolume(target);
    return this.pools.volumes.mountCustomVolume(pool, "default", volume).catch((e: Error) => {
      throw new Error(`Failed to mount storage volume "${target}": ${e.message}`);
    });
  }

  private async unmount(target: string): Promise<void> {
    const { pool, volume } = splitDaemonVolume(target);
    const row = this.pools.getVolume(pool, "default", "custom", volume);
    await this.pools.driverFor(this.pools.pool(pool)).unmountVolume(this.pools.hostVolume(row));
  }

  /**
   * daemonStorageValidate for a key being set: the volume exists, is a filesystem, has no
   * snapshots and is empty. Errors as LXD answers them (404 when something is missing, else 500).
   */
  async validate(key: string, target: string): Promise<void> {
    try {
      await this.check(target);
    } catch (e) {
      const message = `Failed validation of "${key}": ${(e as Error).message}`;
      throw e instanceof NotFound ? new NotFound(message) : new InternalError(message);
    }
  }

  private async check(target: string): Promise<void> {
    if (target === "") return;
    const { pool, volume } = splitDaemonVolume(target);
    try {
      this.pools.pool(pool);
    } catch (e) {
      throw new NotFound(`Unable to load storage pool "${pool}": ${(e as Error).message}`);
    }
    let row;
    try {
      row = this.pools.getVolume(pool, "default", "custom", volume);
    } catch (e) {
      if (!(e instanceof NotFound)) throw e;
      // The text of LXD's GetStoragePoolVolume (the REST routes say "Storage pool volume not found").
      throw new NotFound(`Failed loading storage volume "${target}" in "default" project: Storage volume not found`);
    }
    if (row.contentType !== "filesystem") throw new Error(`Storage volume "${target}" in "default" project is not filesystem content type`);
    const snapshots = this.pools.repo.volumes({ pool, type: "custom" }).filter((v) => v.project === row.project && v.name.startsWith(`${volume}/`));
    if (snapshots.length > 0) throw new Error("Storage volumes for use by LXD itself cannot have snapshots");
    const mountpoint = await this.mount(target);
    const entries = await readdir(mountpoint);
    // A clean ext4 volume has lost+found; ZFS with snapdir=visible shows .zfs.
    if (entries.some((e) => e !== "lost+found" && e !== ".zfs")) throw new Error(`Storage volume "${target}" isn't empty`);
  }

  /** daemonStorageMove: make $LXD_DIR/<type> live on `target` ("" = a plain directory again). */
  async move(key: string, target: string, previous: string): Promise<void> {
    const type = DAEMON_STORAGE_KEYS[key];
    if (!type) return;
    const destPath = join(this.deps.lxdDir, type);
    const isLink = (await lstat(destPath).catch(() => undefined))?.isSymbolicLink() ?? false;
    const sourcePath = isLink ? await readlink(destPath) : destPath;
    if (target === "") {
      if (!isLink) return;
      await unlink(destPath);
      await mkdir(destPath, { recursive: true, mode: 0o700 });
      await moveContent(sourcePath, destPath);
      if (previous) await this.unmount(previous).catch((e) => this.deps.log.warn({ err: e, volume: previous }, "cannot unmount daemon storage volume"));
      return;
    }
    const mountpoint = await this.mount(target);
    // Already there (a start reconciling, see mountAll).
    if (isLink && sourcePath === mountpoint) return;
    await chmod(mountpoint, 0o700);
    await chown(mountpoint, 0, 0);
    if (isLink) {
      await unlink(destPath);
      await symlink(mountpoint, destPath);
      await moveContent(sourcePath, mountpoint);
      if (previous) await this.unmount(previous).catch((e) => this.deps.log.warn({ err: e, volume: previous }, "cannot unmount daemon storage volume"));
      return;
    }
    const temp = `${destPath}.temp`;
    await rename(destPath, temp);
    await symlink(mountpoint, destPath);
    await moveContent(temp, mountpoint);
    await rm(temp, { recursive: true, force: true });
  }

  /**
   * At start, before images or backups are used: mount the configured volumes (daemonStorageMount),
   * then finish a move a crash interrupted (a `<type>.temp` left behind, or the directory not
   * yet where the config says).
   */
  async mountAll(): Promise<void> {
    for (const [key, type] of Object.entries(DAEMON_STORAGE_KEYS)) {
      const target = this.deps.config(key) ?? "";
      try {
        if (target) await this.mount(target);
        await this.finishInterrupted(type);
        await this.move(key, target, "");
      } catch (e) {
        this.deps.log.error({ err: e }, `Failed to mount ${type} storage`);
      }
    }
  }

  private async finishInterrupted(type: DaemonStorageType): Promise<void> {
    const destPath = join(this.deps.lxdDir, type);
    const temp = `${destPath}.temp`;
    if (!(await lstat(temp).catch(() => undefined))) return;
    if (!(await lstat(destPath).catch(() => undefined))?.isSymbolicLink()) return;
    this.deps.log.warn({ dir: temp }, "finishing a daemon storage move interrupted by a crash");
    await moveContent(temp, await readlink(destPath));
    await rm(temp, { recursive: true, force: true });
  }

  /** At shutdown: unmount them again (daemonStorageVolumesUnmount). */
  async unmountAll(): Promise<void> {
    for (const [key, type] of Object.entries(DAEMON_STORAGE_KEYS)) {
      const target = this.deps.config(key);
      if (!target) continue;
      await this.unmount(target).catch((e: Error) => this.deps.log.warn({ err: e }, `Failed to unmount ${type} storage`));
    }
  }
}

/** Copy a tree's content across, then empty the source (LXD's moveContent). */
async function moveContent(source: string, target: string): Promise<void> {
  await localCopy(source, target);
  for (const entry of await readdir(source)) await rm(join(source, entry), { recursive: true, force: true });
}
