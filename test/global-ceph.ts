// Vitest global setup: names the directory of the Ceph cluster the ceph test files share
// (test/helpers/ceph.ts starts it on first use) and stops it when the run ends.
import { stopCluster } from "./helpers/ceph.js";

export function setup(): () => void {
  const dir = `/tmp/nodelxd-ceph-${process.pid}`;
  process.env.NODELXD_CEPH_DIR = dir;
  return () => stopCluster(dir);
}
