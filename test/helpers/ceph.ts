// A real single-node Ceph cluster for tests (test/fixtures/ceph-cluster.sh: one mon on
// 127.0.0.20, one mgr, one OSD on a file-backed BlueStore device, one MDS serving CephFS "cephfs").
// Started on first use and shared by every test file of a vitest run: the global setup
// (test/global-ceph.ts) names its directory and stops it (by pid, files removed) when the run ends.
// Outside that setup a caller gets a cluster of its own, stopped by `release()`.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const SCRIPT = resolve(import.meta.dirname, "../fixtures/ceph-cluster.sh");
export const CEPH_IP = "127.0.0.20";

export interface CephCluster {
  dir: string;
  conf: string;
  /** Environment for anything that talks to the cluster (ceph, rbd, ceph-fuse, the daemon). */
  env: Record<string, string>;
  /** Run a ceph tool against the cluster. */
  tool(cmd: "ceph" | "rbd" | "ceph-fuse", ...args: string[]): { code: number; stdout: string; stderr: string };
  /** Stop the cluster if this caller owns it (a shared one is stopped by the global teardown). */
  release(): void;
}

/** Why no cluster can run here, or undefined when the Ceph daemons are installed. */
export function cephUnavailable(): string | undefined {
  for (const t of ["ceph-mon", "ceph-osd", "ceph-mgr", "ceph-mds", "ceph", "rbd", "ceph-fuse"]) {
    if (spawnSync("which", [t]).status !== 0) return `${t} is not installed (scripts/setup.sh installs it)`;
  }
  return undefined;
}

/** The kernel can map rbd images (has the rbd module). */
export const kernelHasRbd = (): boolean => existsSync("/sys/bus/rbd") || spawnSync("modprobe", ["-q", "rbd"]).status === 0;

function alive(dir: string): boolean {
  try {
    const pid = Number(readFileSync(join(dir, "run/mon.a.pid"), "utf8"));
    process.kill(pid, 0);
    return existsSync(join(dir, "ready"));
  } catch {
    return false;
  }
}

export function stopCluster(dir: string): void {
  if (existsSync(join(dir, "run"))) spawnSync("bash", [SCRIPT, "stop", dir], { stdio: "ignore" });
  // ceph-fuse mounts a test left behind go before the files.
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const m = line.split(" ")[1];
    if (m?.startsWith(dir + "/")) spawnSync("umount", ["-l", m]);
  }
  rmSync(dir, { recursive: true, force: true });
}

export function startCeph(): CephCluster {
  const shared = process.env.NODELXD_CEPH_DIR;
  const dir = shared ?? mkdtempSync("/tmp/nodelxd-ceph-own-");
  if (!alive(dir)) {
    if (existsSync(dir)) stopCluster(dir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const r = spawnSync("bash", [SCRIPT, "start", dir], { encoding: "utf8", env: { ...process.env, CEPH_IP }, timeout: 180_000 });
    if (r.status !== 0) {
      stopCluster(dir);
      throw new Error(`ceph cluster failed to start: ${r.stderr}`);
    }
    writeFileSync(join(dir, "ready"), "");
  }
  const conf = join(dir, "ceph.conf");
  const env = { CEPH_CONF: conf };
  return {
    dir,
    conf,
    env,
    tool(cmd, ...args) {
      const r = spawnSync(cmd, cmd === "ceph" ? ["--connect-timeout", "20", ...args] : args, { env: { ...process.env, ...env }, encoding: "utf8", timeout: 120_000 });
      return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    },
    release() {
      if (!shared) stopCluster(dir);
    },
  };
}

/** `rbd ls -l <pool>` as rows of NAME (with @snap) */
export function rbdList(ceph: CephCluster, pool: string): string[] {
  const out = execFileSync("rbd", ["ls", "-l", "--format", "json", pool], { env: { ...process.env, ...ceph.env }, encoding: "utf8" });
  return (JSON.parse(out || "[]") as { image: string; snapshot?: string }[]).map((i) => (i.snapshot ? `${i.image}@${i.snapshot}` : i.image)).sort();
}
