// The state directory layout, as upstream LXD keeps it.
import { join } from "node:path";

export interface Paths {
  dir: string;
  socket: string;
  database: string;
  /** The global database's directory (LXD: dqlite's data directory). */
  globalDatabaseDir: string;
  /** The global database (LXD: `database/global/db.bin`). */
  databaseFile: string;
  /** The node-local database (LXD: `database/local.db`). */
  localDatabaseFile: string;
  /** nodelxd's one database file before the split into LXD's two (moved at start). */
  legacyDatabaseFile: string;
  serverCert: string;
  /** The cluster's shared certificate and key (clustered members only). */
  clusterCert: string;
  clusterKey: string;
  serverKey: string;
  logs: string;
  containers: string;
  storagePools: string;
  images: string;
  /** Unpacked copies of images, copied into new instance volumes instead of unpacking each time. */
  imageTrees: string;
  networks: string;
  devices: string;
  shmounts: string;
  security: string;
}

export function resolveLxdDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.LXD_DIR && env.LXD_DIR !== "" ? env.LXD_DIR : "/var/lib/lxd";
}

export function pathsFor(dir: string): Paths {
  return {
    dir,
    socket: join(dir, "unix.socket"),
    database: join(dir, "database"),
    globalDatabaseDir: join(dir, "database", "global"),
    databaseFile: join(dir, "database", "global", "db.bin"),
    localDatabaseFile: join(dir, "database", "local.db"),
    legacyDatabaseFile: join(dir, "database", "nodelxd.db"),
    serverCert: join(dir, "server.crt"),
    clusterCert: join(dir, "cluster.crt"),
    clusterKey: join(dir, "cluster.key"),
    serverKey: join(dir, "server.key"),
    logs: join(dir, "logs"),
    containers: join(dir, "containers"),
    storagePools: join(dir, "storage-pools"),
    images: join(dir, "images"),
    imageTrees: join(dir, "cache", "image-trees"),
    networks: join(dir, "networks"),
    devices: join(dir, "devices"),
    shmounts: join(dir, "shmounts"),
    security: join(dir, "security"),
  };
}

/** Directories created at start with upstream's permissions. */
export function layout(p: Paths): [string, number][] {
  return [
    [p.dir, 0o711],
    [p.database, 0o700],
    [p.globalDatabaseDir, 0o700],
    [p.logs, 0o700],
    [p.containers, 0o711],
    [p.storagePools, 0o711],
    [p.images, 0o700],
    [join(p.dir, "cache"), 0o700],
    [p.imageTrees, 0o700],
    [p.networks, 0o711],
    [p.devices, 0o711],
    [p.shmounts, 0o711],
    [p.security, 0o700],
  ];
}
