// dir: volumes are plain directories under the pool; a pool with a `source` elsewhere is
// bind-mounted onto $LXD_DIR/storage-pools/<pool>.
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { assertNoMountsUnder, bindMount, fsUsage, isMountPoint, unmountAll } from "../host.js";
import { commonPoolKeys, commonVolumeKeys } from "../config.js";
import { withRevert } from "../reverter.js";
import { POOL_DIRS, VOLUME_DIRS, type Driver, type DriverDefinition, type DriverEnv, type DriverInfo, type PoolSpec, type Volume } from "./types.js";

const info: DriverInfo = {
  name: "dir",
  remote: false,
  optimizedImages: false,
  poolKeys: commonPoolKeys,
  volumeKeys: commonVolumeKeys,
  mutablePoolKeys: [],
};

export const poolMountPath = (env: DriverEnv, pool: string) => join(env.lxdDir, "storage-pools", pool);

/** Directory modes as upstream: instance trees traversable, the rest private. */
export const POOL_DIR_MODES: Record<string, number> = {
  buckets: 0o711,
  containers: 0o711,
  "containers-snapshots": 0o711,
};

export async function createPoolDirs(mountPath: string): Promise<void> {
  for (const d of POOL_DIRS) await mkdir(join(mountPath, d), { mode: POOL_DIR_MODES[d] ?? 0o700 }).catch((e) => (e.code === "EEXIST" ? undefined : Promise.reject(e)));
}

/** Remove the (empty) pool directories; a non-empty one stays and fails the call. */
export async function removePoolDirs(mountPath: string): Promise<void> {
  for (const d of POOL_DIRS) await rmdir(join(mountPath, d)).catch((e) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
}

class DirDriver implements Driver {
  readonly info = info;
  readonly mountPath: string;
  private readonly source: string;

  constructor(pool: PoolSpec, env: DriverEnv) {
    this.mountPath = poolMountPath(env, pool.name);
    this.source = pool.config.source || this.mountPath;
  }

  private get bound(): boolean {
    return this.source !== this.mountPath;
  }

  async createPool(): Promise<void> {
    await withRevert(async (revert) => {
      if (this.bound) {
        if (!existsSync(this.source)) throw new Error(`Source path '${this.source}' doesn't exist`);
        if ((await readdir(this.source)).length > 0) throw new Error(`Source path '${this.source}' isn't empty`);
      }
      if (existsSync(this.mountPath) && (await readdir(this.mountPath)).length > 0) throw new Error(`Storage pool directory "${this.mountPath}" already exists`);
      await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
      revert.add(() => rm(this.mountPath, { recursive: true, force: true }));
      if (await this.mountPool()) revert.add(() => this.unmountPool());
      await createPoolDirs(this.mountPath);
      revert.add(() => removePoolDirs(this.mountPath));
    });
  }

  async deletePool(): Promise<void> {
    await this.mountPool();
    await removePoolDirs(this.mountPath);
    await this.unmountPool();
    assertNoMountsUnder(this.mountPath);
    await rm(this.mountPath, { recursive: true, force: true });
  }

  async mountPool(): Promise<boolean> {
    if (!this.bound || isMountPoint(this.mountPath)) return false;
    if (!existsSync(this.source)) throw new Error(`Source path '${this.source}' doesn't exist`);
    await mkdir(this.mountPath, { recursive: true, mode: 0o711 });
    await bindMount(this.source, this.mountPath);
    return true;
  }

  async unmountPool(): Promise<boolean> {
    if (!this.bound) return false;
    return unmountAll(this.mountPath);
  }

  usage() {
    return fsUsage(this.mountPath);
  }

  volumePath(vol: Volume): string {
    return join(this.mountPath, VOLUME_DIRS[vol.type], vol.name);
  }

  async hasVolume(vol: Volume): Promise<boolean> {
    return existsSync(this.volumePath(vol));
  }

  async createVolume(vol: Volume, fill?: (path: string) => Promise<void>): Promise<void> {
    const path = this.volumePath(vol);
    await withRevert(async (revert) => {
      await mkdir(path, { mode: 0o711 }).catch((e) => Promise.reject(e.code === "EEXIST" ? new Error(`Volume "${vol.name}" already exists on disk`) : e));
      revert.add(() => rm(path, { recursive: true, force: true }));
      await fill?.(path);
    });
  }

  async deleteVolume(vol: Volume): Promise<void> {
    assertNoMountsUnder(this.volumePath(vol));
    await rm(this.volumePath(vol), { recursive: true, force: true });
  }

  async renameVolume(vol: Volume, newName: string): Promise<void> {
    await rename(this.volumePath(vol), this.volumePath({ ...vol, name: newName }));
  }

  async mountVolume(vol: Volume): Promise<string> {
    return this.volumePath(vol);
  }

  async unmountVolume(): Promise<boolean> {
    return false;
  }
}

export const dirDriver: DriverDefinition = {
  info,
  probe: async () => "1",
  fillDefaults: (pool, env) => ({ ...pool.config, source: pool.config.source || poolMountPath(env, pool.name) }),
  load: (pool, env) => new DirDriver(pool, env),
};
