// StoragePort, what other features ask of storage, over the pool tier's parts: instance volumes
// for the instances feature, a pool lookup, custom-volume reads for disk devices, `lxd recover`.
import type { StoragePort } from "../ports.js";
import type { PoolService } from "./pool-service.js";

export function storagePort(pools: PoolService): StoragePort & { adoptPools(): Promise<Record<string, string>> } {
  const inst = pools.instanceVolumes;
  const volumes = pools.volumes;
  return {
    assertPool: (pool) => void pools.pool(pool),
    getPool: (name) => pools.getPool(name),
    // A member that joined a cluster brings up the cluster's pools (daemon.ts asks through the port).
    adoptPools: () => pools.adoptPools(),
    adoptVolume: (pool, project, type, name, vol, snapshots) => pools.recovery.adoptVolume(pool, project, type, name, vol, snapshots),
    mountCustomVolume: (pool, project, name) => volumes.mountCustomVolume(pool, project, name),
    customVolumeConfig: (pool, project, name) => volumes.customVolumeConfig(pool, project, name),
    customVolumeContentType: (pool, project, name) => volumes.customVolumeContentType(pool, project, name),
    createInstanceVolume: (project, pool, name, opts) => inst.createInstanceVolume(project, pool, name, opts),
    setInstanceVolumeQuota: (project, pool, name, size) => inst.setInstanceVolumeQuota(project, pool, name, size),
    mountInstanceVolume: (project, pool, name) => inst.mountInstanceVolume(project, pool, name),
    renameInstanceVolume: (project, pool, from, to) => inst.renameInstanceVolume(project, pool, from, to),
    deleteInstanceVolume: (project, pool, name) => inst.deleteInstanceVolume(project, pool, name),
    instanceVolumeUsage: (project, pool, name) => inst.instanceVolumeUsage(project, pool, name),
    deleteImageVolumes: (fingerprint) => inst.deleteImageVolumes(fingerprint),
    createInstanceSnapshot: (project, pool, name, snapshot, opts) => inst.createInstanceSnapshot(project, pool, name, snapshot, opts),
    deleteInstanceSnapshot: (project, pool, name, snapshot) => inst.deleteInstanceSnapshot(project, pool, name, snapshot),
    renameInstanceSnapshot: (project, pool, name, from, to) => inst.renameInstanceSnapshot(project, pool, name, from, to),
    restoreInstanceSnapshot: (project, pool, name, snapshot, opts) => inst.restoreInstanceSnapshot(project, pool, name, snapshot, opts),
    syncInstanceVolume: (project, pool, name, source, opts) => inst.syncInstanceVolume(project, pool, name, source, opts),
    exportInstanceVolume: (project, pool, name, snapshot, target, opts) => inst.exportInstanceVolume(project, pool, name, snapshot, target, opts),
    mountInstanceSnapshot: (project, pool, name, snapshot) => inst.mountInstanceSnapshot(project, pool, name, snapshot),
    instanceVolumeConfig: (project, pool, name, snapshot) => inst.instanceVolumeConfig(project, pool, name, snapshot),
    setInstanceVolumeConfig: (project, pool, name, snapshot, vol) => inst.setInstanceVolumeConfig(project, pool, name, snapshot, vol),
    instanceStreamType: (pool) => inst.instanceStreamType(pool),
    sendInstanceStreams: (project, pool, name, snapshots, out, opts) => inst.sendInstanceStreams(project, pool, name, snapshots, out, opts),
    receiveInstanceStreams: (project, pool, name, snapshots, next, opts) => inst.receiveInstanceStreams(project, pool, name, snapshots, next, opts),
  };
}
