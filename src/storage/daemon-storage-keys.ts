// The server keys that put a daemon directory on a custom volume ("<pool>/<volume>"), and
// which directory of $LXD_DIR each one moves (see daemon-storage.ts).
export type DaemonStorageType = "backups" | "images";

export const DAEMON_STORAGE_KEYS: Record<string, DaemonStorageType> = {
  "storage.backups_volume": "backups",
  "storage.images_volume": "images",
};
